"""The operator's probe ConfigMap turned into native probe configuration.

The operator renders every ObservationPolicy twice: into Tetragon
TracingPolicies and into one entry of the probe ConfigMap
(``controller/render_policy.py``, key ``probes.json``), which the agent pod
mounts as a file. This module reads that file so one policy means the same
thing on a node without Tetragon: its syscalls, its ``binaryPath`` functions
(uprobes on the node's file, reached through the host's root since the agent
runs with the host's PID namespace), its TCP state request, its stack traces
(kernel and user on its syscalls and TCP state events, user on its functions)
and its ``rateLimit`` (as Tetragon applies it: per thread and probe,
one event per period) are merged into the agent's own ``NativeConfig``.

What the native probes cannot do as Tetragon would is never dropped in
silence: each such feature becomes a sentence in ``ProbePolicy.not_covered``
(and a warning in the log from ``load_probe_config``). Functions named by
package URL are returned apart (``purl_functions``): they are resolved per
container, through each container's root (``native/purl_targets.py``).

The same payload lists the pods opted out by their annotation (``optedOut``);
``parse_opted_out`` reads it for the pipeline's opt-out stage
(agent/optout_watch.py, privacy/optout.py), not for the probes.

Pure apart from reading the one file: a bad file is a ``NativeConfigError``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from stellaops_runtime.contracts.syscalls import TABLE_RELEASE, X86_64
from stellaops_runtime.native.config import (
    MAX_PERIOD_SECONDS,
    MAX_UPROBE_TARGETS,
    NativeConfig,
    NativeConfigError,
    UprobeTarget,
)
from stellaops_runtime.native.host_file import host_file
from stellaops_runtime.regular_file import read_regular

log = logging.getLogger(__name__)

API_VERSION = "stellaops.io/v1alpha1"  # contracts.crds.API_VERSION (a test checks they agree)
KIND = "ProbeConfig"  # controller.render_policy.PROBE_CONFIG_KIND (a test checks)
CONFIGMAP_KEY = "probes.json"  # controller.render_policy.PROBE_CONFIG_KEY (a test checks)
MAX_FILE_BYTES = 4 << 20  # a ConfigMap holds at most 1 MiB; anything far larger is not one
# The operator's list of opted-out pods (``optedOut``): at most this many entries are read.
MAX_OPTED_OUT = 5_000  # controller.opted_out.MAX_OPTED_OUT (a test checks)
MAX_OPTED_IN = 5_000  # controller.opted_out.MAX_OPTED_IN: uids of pods at a level (``optedIn``)
MAX_POD_FIELD = 253  # a namespace, pod name or uid is a DNS subdomain or shorter
DEFAULT_HOST_ROOT = "/proc/1/root"  # the node's root as seen from the agent pod (hostPID)

# Entry fields and what the native side does with them.
_USED = frozenset({"syscalls", "functions", "stackTraces", "tcpState", "tetragonHostRoot"})
MAX_TETRAGON_ROOTS = 16  # distinct tetragonHostRoot values kept (more: their cached calls may count twice)
_INFORMATIONAL = frozenset({"kind", "namespace", "name", "maxLevel", "tetragonPolicies"})
_REPORTED = frozenset({"podSelector", "namespaceSelector", "rateLimit", "rateLimitSeconds"})


@dataclass(frozen=True, slots=True)
class PurlFunction:
    """A function a policy names by package URL; resolved per container, not node-wide."""

    policy: str  # the ConfigMap key of the policy (``<kind>/<namespace>/<name>``)
    purl: str
    symbols: tuple[str, ...]


@dataclass(slots=True)
class ProbePolicy:
    config: NativeConfig
    policies: list[str] = field(default_factory=list)  # keys of the policies merged in
    purl_functions: list[PurlFunction] = field(default_factory=list)
    not_covered: list[str] = field(default_factory=list)  # what native probes do not do as asked


def _err(where: str, what: str) -> NativeConfigError:
    return NativeConfigError(f"probe config {where}: {what}")


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str) or not v or "\x00" in v or len(v) > 4096:
        raise _err(where, f"expected a non-empty string without NUL, got {type(v).__name__}")
    return v


def _list(v: Any, where: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise _err(where, f"expected a list, got {type(v).__name__}")
    return v


def _document(raw: bytes, source: str) -> dict[str, Any]:
    """The ProbeConfig payload object (of a payload, or of a whole ConfigMap object saved as JSON)."""
    if len(raw) > MAX_FILE_BYTES:
        raise _err(source, f"{len(raw)} bytes, more than a ConfigMap can hold ({MAX_FILE_BYTES})")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _err(source, f"not JSON: {e}") from None
    if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":  # `kubectl get cm -o json` saved
        data = doc.get("data")
        if not isinstance(data, dict) or not isinstance(data.get(CONFIGMAP_KEY), str):
            raise _err(source, f"a ConfigMap without data[{CONFIGMAP_KEY!r}]")
        return _document(data[CONFIGMAP_KEY].encode("utf-8"), f"{source} data[{CONFIGMAP_KEY}]")
    if not isinstance(doc, dict):
        raise _err(source, f"expected a JSON object, got {type(doc).__name__}")
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        raise _err(
            source,
            f"expected apiVersion {API_VERSION} kind {KIND}, "
            f"got {str(doc.get('apiVersion'))[:80]!r} {str(doc.get('kind'))[:80]!r}",
        )
    return doc


def parse_payload(raw: bytes, *, source: str = "payload") -> dict[str, dict[str, Any]]:
    """The ``policies`` mapping of a probe ConfigMap payload (or of a whole ConfigMap object)."""
    doc = _document(raw, source)
    policies = doc.get("policies", {})
    if not isinstance(policies, dict) or not all(isinstance(v, dict) for v in policies.values()):
        raise _err(source, "policies: expected a mapping of policy key to entry")
    return policies


def _pod_field(entry: dict[str, Any], key: str) -> str | None:
    """A pod identity field: a string without NUL of at most MAX_POD_FIELD characters ("" if absent)."""
    v = entry.get(key, "")
    if not isinstance(v, str) or "\x00" in v or len(v) > MAX_POD_FIELD:
        return None
    return v


def parse_opted_out(raw: bytes, *, source: str = "payload") -> tuple[list[tuple[str, str, str]], int]:
    """The operator's ``optedOut`` pods, (namespace, name, uid) each, and how many entries were unusable.

    An unusable entry (not an object, a field of the wrong type or size, no
    uid and no namespace/name) is skipped and counted: it must not cost the
    other pods their opt-out. A file that is no ProbeConfig at all, or an
    ``optedOut`` that is not a list, raises NativeConfigError.
    """
    doc = _document(raw, source)
    entries = doc.get("optedOut", [])
    if not isinstance(entries, list):
        raise _err(source, f"optedOut: expected a list, got {type(entries).__name__}")
    pods: list[tuple[str, str, str]] = []
    bad = 0
    for entry in entries[:MAX_OPTED_OUT]:
        if not isinstance(entry, dict):
            bad += 1
            continue
        ns, name, uid = (_pod_field(entry, k) for k in ("namespace", "name", "uid"))
        if ns is None or name is None or uid is None or not (uid or (ns and name)):
            bad += 1
            continue
        pods.append((ns, name, uid))
    return pods, bad + max(0, len(entries) - MAX_OPTED_OUT)


def parse_opted_in(raw: bytes, *, source: str = "payload") -> tuple[list[str], int]:
    """The operator's ``optedIn`` uids (pods whose annotation names a level) and how many were unusable.

    An entry that is not a usable uid (not a string, empty, NUL, too long) is
    skipped and counted; it only ever leaves a pod as the runtime's record says.
    An ``optedIn`` that is not a list is one unusable entry, never an error:
    it must not keep the file's ``optedOut`` from being read.
    """
    entries = _document(raw, source).get("optedIn", [])
    if not isinstance(entries, list):
        return [], 1
    uids = [u for e in entries[:MAX_OPTED_IN] if (u := _pod_field({"uid": e}, "uid"))]
    return uids, len(entries) - len(uids)


def _period(key: str, entry: dict[str, Any], notes: list[str]) -> int:
    """The entry's rateLimit in seconds (0: none): Tetragon's one event per thread and probe per period."""
    seconds = entry.get("rateLimitSeconds")
    if entry.get("rateLimit") is None and seconds is None:
        return 0
    if type(seconds) is not int or seconds <= 0:
        raise _err(f"{key}.rateLimitSeconds", f"expected a positive integer with rateLimit, got {seconds!r}")
    if seconds > MAX_PERIOD_SECONDS:
        notes.append(
            f"{key}: rateLimit of {seconds} s is longer than the native maximum; {MAX_PERIOD_SECONDS} s used"
        )
        return MAX_PERIOD_SECONDS
    return seconds


def _periods(wanted: dict[str, list[int]]) -> tuple[tuple[str, int], ...]:
    """Per probe, the loosest limit the policies naming it ask for: none if any asks for none."""
    return tuple((name, min(v)) for name, v in sorted(wanted.items()) if v and 0 not in v)


def _syscalls(key: str, entry: dict[str, Any], out: list[str], notes: list[str]) -> None:
    for i, sc in enumerate(_list(entry.get("syscalls"), f"{key}.syscalls")):
        where = f"{key}.syscalls[{i}]"
        if not isinstance(sc, dict):
            raise _err(where, f"expected {{name, x86_64, arm64}}, got {type(sc).__name__}")
        name = _str(sc.get("name"), f"{where}.name")
        if name not in X86_64:  # another architecture's, or a newer kernel's (a newer operator's table)
            notes.append(
                f"{key}: syscall {name} is not in this agent's x86_64 syscall table (Linux "
                f"{TABLE_RELEASE} and earlier), the native probes' architecture: not probed (never by "
                "number: its calls would be stored under another function than Tetragon's)"
            )
        elif name not in out:
            out.append(name)


def _functions(
    key: str, entry: dict[str, Any], host_root: str, targets: list[UprobeTarget], res: ProbePolicy
) -> None:
    for i, fn in enumerate(_list(entry.get("functions"), f"{key}.functions")):
        where = f"{key}.functions[{i}]"
        if not isinstance(fn, dict):
            raise _err(where, f"expected {{binaryPath|purl, symbols}}, got {type(fn).__name__}")
        symbols = tuple(_str(s, f"{where}.symbols") for s in _list(fn.get("symbols"), f"{where}.symbols"))
        if not symbols:
            raise _err(where, "no symbols")
        if ("binaryPath" in fn) == ("purl" in fn):
            raise _err(where, "expected exactly one of binaryPath and purl")
        if "purl" in fn:
            res.purl_functions.append(PurlFunction(key, _str(fn["purl"], f"{where}.purl"), symbols))
            continue
        path = _str(fn["binaryPath"], f"{where}.binaryPath")
        if not path.startswith("/"):
            raise _err(f"{where}.binaryPath", f"{path!r} is not an absolute path")
        try:
            binary = host_file(host_root, path)
        except NativeConfigError as e:
            res.not_covered.append(f"{key}: function {path} ({', '.join(symbols)}) not probed: {e}")
            continue
        module = host_root + path if binary != host_root + path else ""  # events name the path given
        for sym in symbols:
            t = UprobeTarget(binary, sym, module)
            if t in targets:
                continue
            if len(targets) >= MAX_UPROBE_TARGETS:
                res.not_covered.append(
                    f"{key}: function {path}:{sym} not probed: more than {MAX_UPROBE_TARGETS} uprobe targets"
                )
                continue
            targets.append(t)


def _named_targets(entry: dict[str, Any], host_root: str, known: list[UprobeTarget]) -> list[UprobeTarget]:
    """Of the targets already merged, those this entry names too (after _functions validated it)."""
    named = {
        (host_root + fn["binaryPath"], sym)
        for fn in entry.get("functions") or ()
        if "binaryPath" in fn
        for sym in fn["symbols"]
    }
    return [t for t in known if (t.module or t.binary, t.symbol) in named]


def _stacks(key: str, entry: dict[str, Any], notes: list[str]) -> tuple[bool, bool]:
    """(kernel, user): the stacks the entry asks for; notes what the native probes cannot take.

    Syscall and TCP state events take both; uprobes the user stack only (a
    uprobe fires in user space: no kernel path is under way).
    """
    st = entry.get("stackTraces") or {}
    if not isinstance(st, dict) or not all(type(st.get(k, False)) is bool for k in ("kernel", "user")):
        raise _err(f"{key}.stackTraces", "expected {kernel: bool, user: bool}")
    kernel, user = bool(st.get("kernel")), bool(st.get("user"))
    if kernel and entry.get("functions"):
        notes.append(
            f"{key}: kernel stack traces on functions: a uprobe fires in user space, with no kernel "
            "path under way, so function events carry the user stack only"
        )
    return kernel, user


def _reported(key: str, entry: dict[str, Any], notes: list[str]) -> None:
    sel = entry.get("podSelector")
    if sel or entry.get("namespaceSelector"):
        shown = json.dumps({"podSelector": sel, "namespaceSelector": entry.get("namespaceSelector")})
        notes.append(
            f"{key}: pod selection {shown[:300]} is not applied by the native probes: they select by "
            "cgroup id (cgroupAllow), so pods outside the selector are traced too; the agent drops "
            "those events itself while it lists its node's pods (agent/native_selection.py)"
        )
    for k in sorted(set(entry) - _USED - _INFORMATIONAL - _REPORTED):
        notes.append(f"{key}: field {k[:80]!r} is not understood by the native probes and was not applied")


def _tetragon_root(key: str, entry: dict[str, Any], roots: list[str], notes: list[str]) -> None:
    """The node's root as this policy's Tetragon sees it, when not the default (the switch back's
    overlap filter matches ``<root><binaryPath>`` as the probes' file); a value it cannot use is
    noted and left out (Tetragon's cached calls of those files may then count twice)."""
    root = entry.get("tetragonHostRoot")
    if root is None:
        return
    ok = isinstance(root, str) and root.startswith("/") and not root.endswith("/") and "\x00" not in root
    if not ok or len(root) > 4096:
        notes.append(f"{key}: tetragonHostRoot {str(root)[:80]!r} is not an absolute path: not applied")
    elif root not in roots and len(roots) < MAX_TETRAGON_ROOTS:
        roots.append(root)


def merge_entries(
    policies: dict[str, dict[str, Any]], base: NativeConfig, *, host_root: str = DEFAULT_HOST_ROOT
) -> ProbePolicy:
    """``base`` with every policy entry merged in (lists united, requests switched on)."""
    res = ProbePolicy(config=base)
    syscalls = list(base.syscalls)
    targets = list(base.uprobes)
    # per probe, the period each asker wants (0: every event); the agent's own probes want every event
    given_sys, given_up = dict(base.syscall_periods), dict(base.uprobe_periods)
    sys_periods = {n: [given_sys.get(n, 0)] for n in syscalls}
    up_periods = {t.label(): [given_up.get(t.label(), 0)] for t in targets}
    user_stacks = False
    tcp_state = base.tcp_state
    kernel_sys, user_sys = list(base.kernel_stack_syscalls), list(base.user_stack_syscalls)
    tcp_kernel, tcp_user = base.tcp_kernel_stacks, base.tcp_user_stacks
    roots = list(base.tetragon_roots)
    for key in sorted(policies):
        entry = policies[key]
        if not isinstance(entry, dict):
            raise _err(key, f"expected an entry object, got {type(entry).__name__}")
        period = _period(key, entry, res.not_covered)
        mine: list[str] = []
        _syscalls(key, entry, mine, res.not_covered)
        for name in mine:
            sys_periods.setdefault(name, []).append(period)
            if name not in syscalls:
                syscalls.append(name)
        before = len(targets)
        _functions(key, entry, host_root, targets, res)
        for t in _named_targets(entry, host_root, targets[:before]) + targets[before:]:
            up_periods.setdefault(t.label(), []).append(period)
        kernel, user = _stacks(key, entry, res.not_covered)
        user_stacks |= user and bool(entry.get("functions"))
        for wanted, into in ((kernel, kernel_sys), (user, user_sys)):
            into += [n for n in mine if wanted and n not in into]
        tcp = entry.get("tcpState", False)
        if type(tcp) is not bool:
            raise _err(f"{key}.tcpState", f"expected true or false, got {type(tcp).__name__}")
        tcp_state |= tcp
        tcp_kernel |= tcp and kernel
        tcp_user |= tcp and user
        _tetragon_root(key, entry, roots, res.not_covered)
        _reported(key, entry, res.not_covered)
        res.policies.append(key)
    changes: dict[str, Any] = {
        "syscalls": tuple(syscalls),
        "uprobes": tuple(targets),
        "tcp_state": tcp_state,
        "syscall_periods": _periods(sys_periods),
        "uprobe_periods": _periods(up_periods),
        "kernel_stack_syscalls": tuple(kernel_sys),
        "user_stack_syscalls": tuple(user_sys),
        "tcp_kernel_stacks": tcp_kernel,
        "tcp_user_stacks": tcp_user,
        "tetragon_roots": tuple(roots),
    }
    if policies:
        # The policies decide about stacks: Tetragon nodes deliver none on uprobes, so they are
        # only taken where a policy asks for user stacks and names functions.
        changes["user_stacks"] = user_stacks
    res.config = dataclasses.replace(base, **changes)
    return res


def read_probe_config(path: str, base: NativeConfig, *, host_root: str = DEFAULT_HOST_ROOT) -> ProbePolicy:
    """Read the mounted payload file and merge it into ``base``; raises NativeConfigError."""
    try:
        raw = read_regular(path, MAX_FILE_BYTES)  # a FIFO or device: an error, never a wait
    except OSError as e:
        raise _err(path, f"cannot read: {e.strerror or e}") from None
    return merge_entries(parse_payload(raw, source=path), base, host_root=host_root)


def load_probe_config(path: str, base: NativeConfig) -> NativeConfig:
    """``base`` with the policies of the probe ConfigMap file at ``path``; what is not covered is logged."""
    res = read_probe_config(path, base)
    for note in res.not_covered:
        log.warning("not covered by native probes: %s", note)
    for fn in res.purl_functions:
        log.warning(
            "not covered by the node-wide native probes: %s: function %s (%s) named by purl is "
            "resolved per container",
            fn.policy,
            fn.purl,
            ", ".join(fn.symbols),
        )
    return res.config
