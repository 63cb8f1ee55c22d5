"""Whether a RuntimeObserver's agents can back "not observed": its ObservationNodes folded into one condition.

An agent that cannot know its node's containers (``ContainersKnown`` False:
``NoRuntimeSocket``, ``LifecycleDisabled``) caps every container window at
ActiveTracing or leaves a silent container uncounted, and one that cannot
record its export position (``ExportPositionRecorded`` False) holds what it
read and stores nothing (agent/observation_status.py). Argo CD and Flux judge
an Application by the objects in git, and ObservationNodes are not in git: so
the RuntimeObserver's status carries :data:`BACKING_CONDITION`, and its overall
state (Ready/Progressing/Degraded) follows it once the agents are ready.

Pure (no I/O): the operator reads the ObservationNodes from kopf's index.
``RegistryNotInSync`` alone (an agent's start, the runtime away: the agent
retries by itself) is Progressing, never Degraded, as the ObservationNode's
own health script reads it (manifests/gitops/argocd/health/observationnode.lua).
A condition a node does not write (an older agent, another source) is no fault.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

BACKING_CONDITION = "NotObservedBacked"
CONTAINERS = "ContainersKnown"
EXPORT = "ExportPositionRecorded"
TRANSIENT = "RegistryNotInSync"
NAMED = 3  # node names shown per reason
GROUPS = 4  # reasons spelled out in the message (agents write the reasons: a hostile one may vary them)

# (condition type, reason) -> what it means for "not observed" and what to do. Order = severity.
_REMEDIES: tuple[tuple[str, str, str], ...] = (
    (
        EXPORT,
        "WatchRecordUnwritable",
        "the agent cannot write its node's watch record, so what it read is held, not stored "
        "(the ObservationNode's message names the file)",
    ),
    (
        CONTAINERS,
        "NoRuntimeSocket",
        "the agent found no container runtime socket, so no window of a container's image reads above "
        "ActiveTracing; set spec.containerRuntime (kind, socketPath) to the nodes' runtime socket",
    ),
    (
        CONTAINERS,
        "LifecycleDisabled",
        "the agent runs with lifecycle.enabled: false, so a container that sent no event is not counted",
    ),
    (
        CONTAINERS,
        TRANSIENT,
        "the agent's container registry is not in sync yet (its first sample, or the runtime away); "
        "it retries by itself",
    ),
)


@dataclass(frozen=True, slots=True)
class Backing:
    """The fold: the condition to write, and the overall state it asks for (None: no objection).

    ``held``: the worst problem is an export one. Such an agent also answers ``/readyz`` 503
    (agent/runner.py, readiness), so its DaemonSet never reads every agent ready: the observer
    cannot wait for that before saying Degraded.
    """

    condition: dict[str, Any]
    state: Literal["Degraded", "Progressing"] | None
    reason: str
    summary: str
    held: bool = False


def node_problem(status: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """``(condition type, reason)`` of what keeps this node's agent from backing "not observed", or None.

    Export first (nothing stored at all), then containers. A condition that is there but not True
    (False, Unknown, malformed) is a problem; its reason is kept as written (``Unknown`` if none).
    """
    conditions = (status or {}).get("conditions")
    if not isinstance(conditions, list):
        return None
    found: dict[str, Mapping[str, Any]] = {}
    for c in conditions:
        if isinstance(c, Mapping) and c.get("type") in (EXPORT, CONTAINERS) and c["type"] not in found:
            found[str(c["type"])] = c
    for kind in (EXPORT, CONTAINERS):
        c = found.get(kind)
        if c is not None and c.get("status") != "True":
            reason = c.get("reason")
            return kind, reason if isinstance(reason, str) and reason else "Unknown"
    return None


def _rank(problem: tuple[str, str]) -> int:
    for i, (kind, reason, _) in enumerate(_REMEDIES):
        if (kind, reason) == problem:
            return i
    return 0 if problem[0] == EXPORT else 2  # an unknown reason ranks with its condition's worst


def _remedy(problem: tuple[str, str]) -> str:
    for kind, reason, text in _REMEDIES:
        if (kind, reason) == problem:
            return text
    return f"{problem[0]} is not True on these nodes; see their ObservationNodes' conditions"


def fold_backing(nodes: Iterable[tuple[str, Mapping[str, Any] | None]], *, generation: Any) -> Backing:
    """Fold ``(node name, ObservationNode status)`` of the fresh nodes into :class:`Backing`.

    The message counts the nodes, names a few per reason (sorted, so an unchanged fleet gives the
    same text and no write), and says what to do.
    """
    total = 0
    by_problem: dict[tuple[str, str], list[str]] = {}
    for name, status in nodes:
        total += 1
        problem = node_problem(status)
        if problem is not None:
            by_problem.setdefault(problem, []).append(name)
    gen = generation if isinstance(generation, int) else None
    if total == 0:
        message = "no fresh ObservationNode: no agent reports its node yet"
        return Backing(_condition("Unknown", "NoNodeReports", message, gen), None, "NoNodeReports", message)
    if not by_problem:
        message = (
            f"{total} of {total} fresh node(s): every agent knows its node's containers and "
            "records its export position (or keeps none)"
        )
        return Backing(_condition("True", "AgentsBackNotObserved", message, gen), None, "", message)
    ordered = sorted(by_problem.items(), key=lambda kv: (_rank(kv[0]), kv[0]))
    affected = sum(len(names) for _, names in ordered)
    parts = []
    for (kind, reason), names in ordered[:GROUPS]:
        names.sort()
        shown = ", ".join(names[:NAMED]) + (f" and {len(names) - NAMED} more" if len(names) > NAMED else "")
        parts.append(f"{kind} {reason[:64]} on {len(names)} ({shown}): {_remedy((kind, reason))}")
    if len(ordered) > GROUPS:
        parts.append(f"and {len(ordered) - GROUPS} other reason(s) on the ObservationNodes")
    message = f"{affected} of {total} fresh node(s) cannot back 'not observed': " + "; ".join(parts)
    kind, reason = ordered[0][0]
    known = any((kind, reason) == (k, r) for k, r, _ in _REMEDIES)
    reason = reason if known else f"{kind}NotTrue"  # the agent's own text stays in the message
    transient = all(p == (CONTAINERS, TRANSIENT) for p in by_problem)
    state: Literal["Degraded", "Progressing"] = "Progressing" if transient else "Degraded"
    held = kind == EXPORT
    return Backing(_condition("False", reason, message, gen), state, reason, message, held)


def _condition(status: str, reason: str, message: str, generation: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": BACKING_CONDITION, "status": status, "reason": reason, "message": message}
    if generation is not None:
        out["observedGeneration"] = generation
    return out
