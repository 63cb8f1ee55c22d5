"""Functions named by PURL over the node's running containers: the probes' targets and their report.

``PurlProbePlan`` (purl_targets.py) resolves one function in one container;
this module runs it for every function of the probe ConfigMap
(``policy_config.PurlFunction``) in every running container the lifecycle
registry knows (its pid gives ``/proc/<pid>/root``), adds the targets to the
node-wide probes (within the 64-target bound, the rest reported), and sums the
per-container reports into one entry per policy function for the agent's
ObservationNode (``contracts/purl_status.py``):

- ``attached`` when the probe is attached for at least one container
  (``containers``: how many);
- otherwise the first of ``error``, ``not_in_package``, ``not_found``,
  ``unsupported`` any container gave (``containers``: how many gave it), with
  that container's reason; ``not_found`` with no container when none runs.

A container is summed once per function, whatever the number of its files.

With a pod view (agent/native_selection.py) a policy's functions are resolved
only in the containers of pods that policy selects at EbpfDeep (``selects``);
``selection`` records which, so a change of pod labels re-wires the probes.
``owners`` tells the pipeline's pod selection which policies each probed file
and symbol belongs to (a probe on a shared file fires in every container
mapping it; the pipeline drops the calls of pods the policy does not select).
``probed`` gives the installed package's PURL of each file probed, per image
digest, for the pipeline's package attribution (agent/purls.py); ``unprobed``
the split tails left unprobed beside them (agent/unprobed.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from stellaops_runtime.contracts import purl_status as ps
from stellaops_runtime.native import purl_targets as pt
from stellaops_runtime.native.config import MAX_UPROBE_TARGETS, NativeConfig
from stellaops_runtime.native.policy_config import PurlFunction

_PRECEDENCE = (ps.ERROR, ps.NOT_IN_PACKAGE, ps.NOT_FOUND, ps.UNSUPPORTED)
_STATE_OF = {
    pt.ATTACHED: ps.ATTACHED,
    pt.ATTACH_FAILED: ps.ERROR,
    pt.RESOLVED: ps.ERROR,  # resolved but never marked: the probes did not load
    pt.NOT_FOUND: ps.NOT_FOUND,
    pt.NOT_IN_PACKAGE: ps.NOT_IN_PACKAGE,
    pt.UNSUPPORTED: ps.UNSUPPORTED,
    pt.ERROR: ps.ERROR,
}


class ContainerLike(Protocol):
    """What is read of a lifecycle registry record (lifecycle/registry.ContainerRecord)."""

    container_id: str
    status: str
    pid: int

    @property
    def is_sandbox(self) -> bool: ...


def running(records: Iterable[ContainerLike]) -> list[tuple[str, int]]:
    """(container id, pid) of every running container with a pid (pod sandboxes left out), sorted."""
    return sorted(
        {(r.container_id, r.pid) for r in records if r.status == "running" and r.pid > 0 and not r.is_sandbox}
    )


@dataclass(slots=True)
class PurlWiring:
    """One resolution of the PURL functions over a set of containers (see the module docstring)."""

    functions: tuple[PurlFunction, ...]
    containers: tuple[tuple[str, int], ...]
    plan: pt.PurlProbePlan
    config: NativeConfig  # the base configuration with the targets added
    over: list[tuple[str, str]] = field(default_factory=list)  # targets past the bound, and why
    _reports: dict[tuple[str, str, str], list[pt.FunctionReport]] = field(default_factory=dict)
    # With a pod view: (policy, container ids of the pods it selects at EbpfDeep), sorted; else None.
    selection: tuple[tuple[str, tuple[str, ...]], ...] | None = None

    def mark(self, attached: Sequence[str], failed: Sequence[tuple[str, str]]) -> None:
        """The loader's results (``ProbeSet.attached``, ``.failed``) into the per-container reports."""
        self.plan.mark(attached, [*failed, *self.over])

    def entries(self) -> tuple[list[dict[str, Any]], int]:
        """The ObservationNode's ``purlFunctions`` (sorted, bounded) and how many were left out."""
        out = []
        for (policy, purl, symbol), reports in sorted(self._reports.items()):
            out.append(_entry(policy, purl, symbol, reports, selected=self.selection is not None))
        return out[: ps.MAX_NODE_ENTRIES], max(0, len(out) - ps.MAX_NODE_ENTRIES)

    def probed(self, digests: Mapping[str, str]) -> dict[tuple[str, str], str]:
        """(image digest, path in the image) -> installed package PURL of every file probed.

        ``digests`` maps container id to image digest. A function matching
        several installed packages names none of them (the caller's attribution decides), and so
        does a file the image's containers disagree on: each container reads its own package
        database, which it can rewrite, and the row counts all of them; the last one read must
        not decide (a forged status claiming a fixed version would).
        """
        out: dict[tuple[str, str], str] = {}
        disputed: set[tuple[str, str]] = set()
        for reports in self._reports.values():
            for r in reports:
                digest = digests.get(r.container, "")
                if not digest:
                    continue
                for f in r.files:
                    key = (digest, f.path)
                    purl = r.packages[0] if len(r.packages) == 1 else ""
                    if not purl or out.get(key, purl) != purl:
                        disputed.add(key)
                    else:
                        out[key] = purl
        for key in disputed:
            out.pop(key, None)
        return out

    def probed_jars(self, digests: Mapping[str, str]) -> dict[tuple[str, str], str]:
        """(image digest, path in the image) -> the JAR its package lists, of every file :meth:`probed`
        names a PURL of: read now, while the container runs, so a container that stops before the
        agent's drain still tells its package's Java code (agent/purls.py)."""
        purls = self.probed(digests)
        out: dict[tuple[str, str], str] = {}
        for reports in self._reports.values():
            for r in reports:
                digest = digests.get(r.container, "")
                for f in r.files if r.jar and digest else ():
                    if (digest, f.path) in purls:
                        out[(digest, f.path)] = r.jar
        return out

    def unprobed(self, digests: Mapping[str, str]) -> dict[tuple[str, str, str], tuple[str, str]]:
        """(image digest, path in the image, split tail) -> (build-id, installed PURL or "") of every
        tail left unprobed (``FunctionReport.unprobed``), beside the function's probe or alone (its
        head inlined into every caller): the facts agent/unprobed.py stores. The PURL is the probed
        file's as :meth:`probed` decides it, else "" (package attribution may fill it; a fact of no
        package counts for every package's question: store/queries.py ``unprobed``)."""
        purls = self.probed(digests)
        out: dict[tuple[str, str, str], tuple[str, str]] = {}
        for reports in self._reports.values():
            for r in reports:
                if digest := digests.get(r.container, ""):
                    for t in r.unprobed:
                        out[(digest, t.path, t.symbol)] = (t.build_id, purls.get((digest, t.path), ""))
        return out

    def owners(self) -> dict[tuple[str, str], frozenset[str]]:
        """(path in the image, symbol) of every file probed -> the policies whose functions it serves."""
        out: dict[tuple[str, str], set[str]] = {}
        for (policy, _purl, symbol), reports in self._reports.items():
            for r in reports:
                for f in r.files:  # a clone probed for the function: its events name the clone
                    out.setdefault((f.path, f.symbol or symbol), set()).add(policy)
        return {k: frozenset(v) for k, v in out.items()}

    def close(self) -> None:
        self.plan.close()


def _entry(
    policy: str, purl: str, symbol: str, reports: Sequence[pt.FunctionReport], *, selected: bool = False
) -> dict[str, Any]:
    by_state: dict[str, list[pt.FunctionReport]] = {}
    for r in reports:
        by_state.setdefault(_STATE_OF.get(r.status, ps.ERROR), []).append(r)
    if ps.ATTACHED in by_state:
        state, why = ps.ATTACHED, ""
    elif not reports:
        state, why = (
            ps.NOT_FOUND,
            (
                "no running container of a pod this policy selects at EbpfDeep on this node"
                if selected
                else "no running container on this node"
            ),
        )
    else:
        state = next(s for s in _PRECEDENCE if s in by_state)
        why = by_state[state][0].detail or state
    n = len({r.container for r in by_state.get(state, ())})
    return {
        "policy": policy, "purl": purl, "symbol": symbol, "source": ps.SOURCE_NATIVE,
        "state": state, "reason": why[: ps.MAX_REASON_CHARS], "containers": n,
    }  # fmt: skip


Selects = Callable[[str, str], bool]  # (policy key, container id) -> whether the policy selects its pod


def selection_of(
    functions: Sequence[PurlFunction], containers: Sequence[tuple[str, int]], selects: Selects | None
) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
    """Per policy naming PURL functions, the running containers it selects (None: every container)."""
    if selects is None:
        return None
    policies = sorted({fn.policy for fn in functions})
    return tuple((p, tuple(cid for cid, _ in containers if selects(p, cid))) for p in policies)


def wire(
    functions: Sequence[PurlFunction],
    containers: Sequence[tuple[str, int]],
    base: NativeConfig,
    *,
    proc_root: str = "/proc",
    selects: Selects | None = None,
    debug_files: bool = True,
) -> PurlWiring:
    """Resolve every function in every container (with ``selects``: in those of the pods its policy
    selects); ``config`` is ``base`` plus their uprobe targets. ``debug_files``: a stripped file's
    split tails are read from its separate debug file (the agent's ``symbols.debugFiles``)."""
    plan = pt.PurlProbePlan(proc_root=proc_root, debug_files=debug_files)
    reports: dict[tuple[str, str, str], list[pt.FunctionReport]] = {}
    selection = selection_of(functions, containers, selects)
    chosen = dict(selection) if selection is not None else None
    for fn in functions:
        for sym in fn.symbols:
            reports.setdefault((fn.policy, fn.purl, sym), [])
        for cid, pid in containers:
            if chosen is not None and cid not in chosen.get(fn.policy, ()):
                continue
            for r in plan.add(cid, pid, fn.purl, fn.symbols):
                reports[(fn.policy, fn.purl, r.symbol)].append(r)
    targets = plan.targets()
    room = max(0, MAX_UPROBE_TARGETS - len(base.uprobes))
    over = [
        (t.label(), f"more than {MAX_UPROBE_TARGETS} uprobe targets on this node: not probed")
        for t in targets[room:]
    ]
    cfg = dataclasses.replace(base, uprobes=base.uprobes + targets[:room]) if targets else base
    return PurlWiring(tuple(functions), tuple(containers), plan, cfg, over, reports, selection)
