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
retries by itself) is Progressing, as the ObservationNode's own health script
reads it (manifests/gitops/argocd/health/observationnode.lua), until it has
lasted the operator's grace period (``late``: the runtime's socket is there but
the runtime hangs, or the agent's stream of it keeps failing): then Degraded,
so GitOps tools stop waiting for a registry that will not come in sync.
A condition a node does not write (an older agent, another source) is no fault.

After a rollout of the agents, a node's ObservationNode holds the old agent's
report until the new agent writes its own: read as the new agent's, it turned
the RuntimeObserver Degraded (the old agent's NoRuntimeSocket, fixed by that
very rollout) or NotObservedBacked True too early. Each report names the
rollout of the pod template its agent runs (``agentTemplate``): one of another
rollout is that node's rollout in progress (``outdated``), Progressing
(``AgentsRollingOut``) and said apart, not Degraded; once it has outlasted the
operator's bound after the DaemonSet said every agent updated and ready, it is
a real problem (``AgentReportOutdated``, Degraded).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from stellaops_runtime.controller.rollout import parse_time

BACKING_CONDITION = "NotObservedBacked"
CONTAINERS = "ContainersKnown"
EXPORT = "ExportPositionRecorded"
LOSSES = "TetragonLossesKnown"  # agent/tetragon_losses_status.py: Tetragon's metrics unreadable
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
        LOSSES,
        "MetricsUnreadable",
        "the agent cannot read Tetragon's metrics (spec.tetragon.metricsUrl), so what Tetragon loses is "
        "unknown and the node's time is a gap: every answer there is unknown; make the endpoint "
        "reachable from the agent pods (Tetragon's metrics on, port 2112 open to the node's address) or "
        'set spec.tetragon.metricsUrl to ""',
    ),
    (
        CONTAINERS,
        TRANSIENT,
        "the agent's container registry is not in sync yet (its first sample, or the runtime away); "
        "it retries by itself",
    ),
)


_LATE = (
    "the agent's container registry has stayed out of sync past the operator's grace period "
    "(--registry-not-in-sync-seconds): the runtime's socket may be there while the runtime does not "
    "answer, or the agent's stream of its events keeps failing; the node's ObservationNode says which "
    "runtime, why and since when (its ContainersKnown message); check the node's container runtime "
    "and the agent's log (lifecycle_state)"
)


ROLLING = "AgentsRollingOut"  # a node's report is still an older agent's: its rollout goes on
ROLLING_LATE = "AgentReportOutdated"  # ... long after the DaemonSet said every agent updated and ready
_ROLLING = (
    "report an older agent configuration (status.agentTemplate): their new agent has not written its "
    "ObservationNode yet"
)
_ROLLING_LATE = (
    "still report an older agent configuration (status.agentTemplate) {after} or more after the "
    "DaemonSet said every agent updated and ready: the new agent cannot write its ObservationNode "
    "(see its log and its RBAC on observationnodes/status), or another agent writes it"
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

    Export first (nothing stored at all), then containers, then Tetragon's losses. A condition that
    is there but not True (False, Unknown, malformed) is a problem; its reason is kept as written
    (``Unknown`` if none).
    """
    conditions = (status or {}).get("conditions")
    if not isinstance(conditions, list):
        return None
    found: dict[str, Mapping[str, Any]] = {}
    for c in conditions:
        if (
            isinstance(c, Mapping)
            and c.get("type") in (EXPORT, CONTAINERS, LOSSES)
            and c["type"] not in found
        ):
            found[str(c["type"])] = c
    for kind in (EXPORT, CONTAINERS, LOSSES):
        c = found.get(kind)
        if c is not None and c.get("status") != "True":
            reason = c.get("reason")
            return kind, reason if isinstance(reason, str) and reason else "Unknown"
    return None


def registry_transition(status: Mapping[str, Any] | None) -> tuple[str, float | None]:
    """Of a node whose ``ContainersKnown`` is ``RegistryNotInSync``: its ``lastTransitionTime`` as
    written (it names the transition), and for how long the agent says so by its own clock alone
    (its ``heartbeatTime`` minus that time, at least 0; None: either is unreadable). Both times come
    from the node's clock, so a node clock ahead or behind cancels out."""
    st = status if isinstance(status, Mapping) else {}
    conditions = st.get("conditions")
    found = (
        next(
            (c for c in conditions if isinstance(c, Mapping) and c.get("type") == CONTAINERS),
            None,
        )
        if isinstance(conditions, list)
        else None
    )
    text = found.get("lastTransitionTime") if found is not None else None
    since, beat = parse_time(text), parse_time(st.get("heartbeatTime"))
    elapsed = None if since is None or beat is None else max(0.0, (beat - since).total_seconds())
    return (text if isinstance(text, str) else ""), elapsed


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


def outdated(status: Mapping[str, Any] | None, template: str | None) -> bool:
    """The report is an agent's of another rollout of the pod template than ``template`` (None: the
    operator does not know it). A report that names none (an older agent) cannot tell: not outdated."""
    have = (status or {}).get("agentTemplate")
    return bool(template) and isinstance(have, str) and bool(have) and have != template


SILENT = "AgentReportsStale"  # an agent pod runs on the node, but its report is stale or missing
_SILENT = (
    "an agent pod runs there but its ObservationNode report is stale or missing (no heartbeat for "
    "--stale-after-seconds, or no ObservationNode): nothing it observes is known, its node's pods are "
    "at posture None; see the agent's log (its ObservationNode writes) and its RBAC on "
    "observationnodes and observationnodes/status"
)


def fold_backing(
    nodes: Iterable[tuple[str, Mapping[str, Any] | None]],
    *,
    generation: Any,
    late: Collection[str] = (),
    grace_seconds: float | None = None,
    rolling: Collection[str] = (),
    rolling_late: Collection[str] = (),
    report_seconds: float | None = None,
    silent: Collection[str] = (),
    silent_late: Collection[str] = (),
) -> Backing:
    """:func:`fold_fresh` of the fresh nodes, and the nodes where an agent pod of the observer runs
    but whose report is stale (``silent``): a Ready observer would outlive its agents' reports.
    False ``AgentReportsStale``, Progressing, or Degraded for those in ``silent_late`` (timed by the
    operator past ``report_seconds`` after the DaemonSet said every agent updated and ready); a
    problem of the fresh nodes that is worse (Degraded while no silent node is late) keeps its
    reason, the message says both."""
    base = fold_fresh(
        nodes,
        generation=generation,
        late=late,
        grace_seconds=grace_seconds,
        rolling=rolling,
        rolling_late=rolling_late,
        report_seconds=report_seconds,
    )
    if not silent:
        return base
    names = sorted(silent)
    shown = ", ".join(names[:NAMED]) + (f" and {len(names) - NAMED} more" if len(names) > NAMED else "")
    after = f"{report_seconds:g}s" if report_seconds is not None else "a while"
    when = f" (Degraded after {after})" if not silent_late else ""
    part = f"{len(names)} node(s) ({shown}): {_SILENT}{when}"
    message = part if base.reason in ("", "NoNodeReports") else f"{part}; {base.summary}"
    state: Literal["Degraded", "Progressing"] = "Degraded" if silent_late else "Progressing"
    reason, why = SILENT, SILENT
    if base.state == "Degraded" and not silent_late:  # the fresh nodes' problem is worse
        reason, state, why = str(base.condition["reason"]), "Degraded", base.reason
    gen = generation if isinstance(generation, int) else None
    return Backing(_condition("False", reason, message, gen), state, why, message, base.held)


def fold_fresh(
    nodes: Iterable[tuple[str, Mapping[str, Any] | None]],
    *,
    generation: Any,
    late: Collection[str] = (),
    grace_seconds: float | None = None,
    rolling: Collection[str] = (),
    rolling_late: Collection[str] = (),
    report_seconds: float | None = None,
) -> Backing:
    """Fold ``(node name, ObservationNode status)`` of the fresh nodes into :class:`Backing`.

    The message counts the nodes, names a few per reason (sorted, so an unchanged fleet gives the
    same text and no write), and says what to do. ``late``: the nodes whose ``RegistryNotInSync``
    has lasted ``grace_seconds`` or more (the operator times it): Degraded, said apart from the
    others; the text names the grace period, never a running time, so it changes only when a node
    crosses it.

    ``rolling``: nodes whose report is an older agent's (``outdated``): what it says is not the
    new agent's, so it is no problem of theirs; said apart, Progressing (the rollout goes on)
    but, for those in ``rolling_late`` (timed by the operator past ``report_seconds``), Degraded.
    """
    total = 0
    by_problem: dict[tuple[str, str, bool], list[str]] = {}
    for name, status in nodes:
        total += 1
        if name in rolling:
            continue
        problem = node_problem(status)
        if problem is not None:
            overdue = problem == (CONTAINERS, TRANSIENT) and name in late
            by_problem.setdefault((*problem, overdue), []).append(name)
    gen = generation if isinstance(generation, int) else None
    if total == 0:
        message = "no fresh ObservationNode: no agent reports its node yet"
        return Backing(_condition("Unknown", "NoNodeReports", message, gen), None, "NoNodeReports", message)
    waiting = _rolling_parts(rolling, rolling_late, total, report_seconds)
    if not by_problem and waiting:
        reason = ROLLING_LATE if rolling_late else ROLLING
        message = "; ".join(waiting)
        state: Literal["Degraded", "Progressing"] = "Degraded" if rolling_late else "Progressing"
        return Backing(_condition("Unknown", reason, message, gen), state, reason, message)
    if not by_problem:
        message = (
            f"{total} of {total} fresh node(s): every agent knows its node's containers and "
            "records its export position (or keeps none)"
        )
        return Backing(_condition("True", "AgentsBackNotObserved", message, gen), None, "", message)
    # a late RegistryNotInSync ranks between LifecycleDisabled and one still in its grace period
    ordered = sorted(by_problem.items(), key=lambda kv: (_rank(kv[0][:2]) - (0.5 if kv[0][2] else 0), kv[0]))
    affected = sum(len(names) for _, names in ordered)
    grace = f"{grace_seconds:g}s" if grace_seconds is not None else "its grace period"
    parts = []
    for (kind, reason, overdue), names in ordered[:GROUPS]:
        names.sort()
        shown = ", ".join(names[:NAMED]) + (f" and {len(names) - NAMED} more" if len(names) > NAMED else "")
        if overdue:
            parts.append(f"{kind} {reason} for {grace} or more on {len(names)} ({shown}): {_LATE}")
            continue
        remedy = _remedy((kind, reason))
        if (kind, reason) == (CONTAINERS, TRANSIENT) and grace_seconds is not None:
            remedy += f" (Degraded after {grace})"
        parts.append(f"{kind} {reason[:64]} on {len(names)} ({shown}): {remedy}")
    if len(ordered) > GROUPS:
        parts.append(f"and {len(ordered) - GROUPS} other reason(s) on the ObservationNodes")
    message = f"{affected} of {total} fresh node(s) cannot back 'not observed': " + "; ".join(
        [*parts, *waiting]
    )
    kind, reason, _ = ordered[0][0]
    known = any((kind, reason) == (k, r) for k, r, _ in _REMEDIES)
    reason = reason if known else f"{kind}NotTrue"  # the agent's own text stays in the message
    transient = all(p == (CONTAINERS, TRANSIENT, False) for p in by_problem)
    state = "Progressing" if transient and not rolling_late else "Degraded"
    why = ROLLING_LATE if transient and rolling_late else reason
    held = kind == EXPORT
    return Backing(_condition("False", reason, message, gen), state, why, message, held)


def _rolling_parts(
    rolling: Collection[str], late: Collection[str], total: int, report_seconds: float | None
) -> list[str]:
    """What the message says of the nodes whose report is an older agent's: late ones first."""
    out = []
    after = f"{report_seconds:g}s" if report_seconds is not None else "a while"
    for names, late_ones in ((sorted(late), True), (sorted(set(rolling) - set(late)), False)):
        if not names:
            continue
        shown = ", ".join(names[:NAMED]) + (f" and {len(names) - NAMED} more" if len(names) > NAMED else "")
        head = f"{len(names)} of {total} fresh node(s) ({shown})"
        out.append(f"{head} {_ROLLING_LATE.format(after=after)}" if late_ones else f"{head} {_ROLLING}")
    return out


def _condition(status: str, reason: str, message: str, generation: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": BACKING_CONDITION, "status": status, "reason": reason, "message": message}
    if generation is not None:
        out["observedGeneration"] = generation
    return out
