"""The hook entries of a rendered Tetragon policy: syscall kprobes, uprobes, and their Post actions.

Built from the templates in ``controller/templates/`` (``policy_templates``).
Syscalls become one kprobe each; a syscall that only one architecture has
gets ``ignore.callNotFound`` so the policy still loads on the other.
Functions with a ``binaryPath`` become uprobes on the node's path as
Tetragon sees it (prefixed with ``tetragonHostRoot``). ``rateLimit`` goes on
every Post action; stack traces only where the caller asks (the syscall
kprobes at EbpfDeep: ``controller/render_policy.py`` says why).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stellaops_runtime.contracts.crd_specs import FunctionSpec, PolicySpec
from stellaops_runtime.contracts.syscalls import ARM64, X86_64
from stellaops_runtime.controller.policy_templates import load_template


def post_action(template_hook: Mapping[str, Any], options: Mapping[str, Any]) -> list[dict]:
    """The template hook's selectors with ``options`` on each Post action (a bare Post when it has none)."""
    selectors = [dict(s) for s in template_hook.get("selectors") or [{"matchActions": [{"action": "Post"}]}]]
    for sel in selectors:
        actions = []
        for action in sel.get("matchActions") or [{"action": "Post"}]:
            action = dict(action)
            if action.get("action") == "Post":
                action.update(options)
            actions.append(action)
        sel["matchActions"] = actions
    return selectors


def syscall_kprobes(
    syscalls: list[str], spec: PolicySpec, *, stacks: Mapping[str, bool], notes: list[str] | None
) -> list[dict]:
    """One kprobe per syscall; ``notes`` (when given) learns of syscalls one architecture lacks."""
    template = load_template("syscalls.yaml")["spec"]["kprobes"][0]
    post: dict[str, Any] = {}
    if spec.rate_limit:
        post["rateLimit"] = spec.rate_limit
    if stacks["kernel"]:
        post["kernelStackTrace"] = True
    if stacks["user"]:
        post["userStackTrace"] = True
    kprobes = []
    one_arch = []
    for sc in syscalls:
        hook = {k: v for k, v in template.items() if k != "selectors"}
        hook["call"] = f"sys_{sc}"
        hook["syscall"] = True
        if (sc in X86_64) != (sc in ARM64):
            hook["ignore"] = {"callNotFound": True}
            one_arch.append(f"{sc} ({'x86_64' if sc in X86_64 else 'arm64'} only)")
        hook["selectors"] = post_action(template, post)
        kprobes.append(hook)
    if one_arch and notes is not None:
        notes.append(
            "syscalls that exist on one architecture only are skipped on the other: " + ", ".join(one_arch)
        )
    return kprobes


def uprobes(path_functions: list[FunctionSpec], spec: PolicySpec) -> list[dict]:
    """One uprobe per ``binaryPath`` function entry (sorted by path), its symbols sorted."""
    template = load_template("uprobes.yaml")["spec"]["uprobes"][0]
    post = {"rateLimit": spec.rate_limit} if spec.rate_limit else {}
    hooks = []
    for fn in sorted(path_functions, key=lambda f: f.binary_path or ""):
        hook = {k: v for k, v in template.items() if k not in ("selectors", "path", "symbols")}
        hook["path"] = f"{spec.tetragon_host_root}{fn.binary_path}"
        hook["symbols"] = sorted(fn.symbols)
        hook["selectors"] = post_action(template, post)
        hooks.append(hook)
    return hooks
