"""Per-node rollout of a policy, folded from the ObservationNodes the agents write.

Tetragon's TracingPolicy objects have no status; whether a policy loaded on a
node is known only to that node's Tetragon (``ListTracingPolicies``). Each
agent copies that list into its ObservationNode's ``status.policies``; this
module folds those into one policy's ``status.rollout``:

- a node without a heartbeat newer than ``stale_after_seconds`` is **stale**
  (its report cannot be trusted, whatever it says; measured from when the
  operator saw it arrive, ``controller.heartbeats``);
- a node whose source is ``native`` runs policies through the native probes
  (no Tetragon to load them): counted in ``nodesNative``;
- otherwise a node is **failed** when any of the policy's Tetragon objects is
  in LOAD_ERROR, ERROR or DISABLED there; **partial** when none failed but one
  is PARTIALLY_ENABLED (loaded, but some of its hooks were not: a kprobe call
  not found, a uprobe binary whose digest was rejected); **running** when all
  are ENABLED; **pending** otherwise (not listed yet, LOADING, UNLOADING,
  UNKNOWN). A partial node is not running: what its missing hooks would have
  seen is not observed there.
- A node's report of an object counts only when it is about the current
  version of that object. When the report names the version Tetragon loaded
  (``objectUid``/``objectGeneration``, from Tetragon's ``info``;
  ``controller.loaded_version``), it counts only when that is the uid and
  generation of the object now (``versions``), and no clock is compared.
  Otherwise Tetragon lists the policy by name only: after a spec change the
  node lists the old version as ENABLED (or LOAD_ERROR) until its agent polls
  again, so the report counts only when it was made **after** the current
  version was written (``written``; the report's time is the
  ObservationNode's ``heartbeatTime``, which the agent writes with every
  change of its list, in whole seconds: a report stamped in the second of
  the write counts). A report of another version, or an older one, counts
  as pending. The write's time is the latest of the
  operator's spec patch (kept on the object, annotation
  ``stellaops.io/spec-written-at``, so a restarted operator knows it) and the
  object's ``creationTimestamp`` (a name deleted and created again, as a
  GitOps prune and re-apply does, is listed under the old object until the
  node polls again).
- An entry Tetragon loaded from no Kubernetes object (``fromObject: false``,
  ``controller.loaded_version.not_from_api``) is never ours; a node listing
  only such an entry under the name is **failed** (state ``NOT_FROM_API``):
  that policy holds the name, so Tetragon cannot load ours there.
- A node that lists one (namespace, name) more than once (Tetragon main's
  policy domains, a policy of our name loaded from a file or over gRPC, a
  garbled answer) is judged by the worst of its entries that are about the
  current version (failed, then partial, then pending, then running), never
  by the one listed last: an ENABLED entry must not hide our object's
  LOAD_ERROR.
- An object Tetragon SKIPPED (its nodeSelector did not match the node) is not
  meant to run there and is ignored; a node where every object is SKIPPED
  runs nothing of the policy and is counted in ``nodesSkipped``, outside the
  total.

- A fresh node whose agent reports Tetragon unreachable
  (``capabilities.tetragon.reachable: false``, explicitly) lists no policies: it counts
  as **pending**, and ``failures`` gets one ``TetragonUnreachable`` entry for
  it (with the agent's message). ``rollout_overdue.unreachable_nodes`` says
  since when (the ``lastTransitionTime`` of the ObservationNode's
  ``Ready=False``), so the policy can turn Degraded after a bounded time
  instead of waiting forever.
- A fresh node whose Tetragon answers but whose agent gets no events from it
  (``source: none``: its event stream is not connected) and that would count
  as **running** counts as **pending**, with one ``NoEventSource`` entry in
  ``failures`` (the agent's ``maxPostureReason``): Tetragon loaded the policy
  there, but nothing it traces reaches the store and the node's pods are at
  posture None, so the policy must not read Ready on that node. Since when:
  the ``lastTransitionTime`` of the ObservationNode's ``EventSource=False``
  (``no_source_since``); ``rollout_overdue.no_source_nodes`` turns the policy
  Degraded after the same bound.

``nodesTotal`` = running + partial + failed + pending + stale + native.
``failures`` lists the first ``max_messages`` failed, partial or unreachable
(node, policy) pairs in name order; a partial one names the hooks that did
not load (``hooks``, from the ``failedHooks`` the agent copied from
Tetragon's ``hook_statuses``).

A node's ``feature.stellaops.io/*`` labels are derived in ``controller.node_labels``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stellaops_runtime.controller.loaded_version import Version, not_from_api, reported_version, speaks_of
from stellaops_runtime.controller.rollout_partial import (
    MAX_MESSAGE_CHARS,
    no_source_entry,
    partial_entry,
    unreachable_entry,
)

# NOT_FROM_API: Tetragon lists only a policy of the name it loaded from no Kubernetes object.
FAILED_STATES = frozenset({"LOAD_ERROR", "ERROR", "DISABLED", "NOT_FROM_API"})
HELD_BY_ANOTHER = (
    "Tetragon lists a policy of this name not from the Kubernetes object (read from a file or taken "
    "over gRPC), which holds the name: ours is not loaded"
)
PARTIAL_STATES = frozenset({"PARTIALLY_ENABLED"})
RUNNING_STATES = frozenset({"ENABLED"})
SKIPPED_STATES = frozenset({"SKIPPED"})
# Of one key listed more than once, the lowest rank decides: failed, partial, pending, running, skipped.
_STATE_RANK = {
    **dict.fromkeys(FAILED_STATES, 0),
    **dict.fromkeys(PARTIAL_STATES, 1),
    **dict.fromkeys(RUNNING_STATES, 3),
    **dict.fromkeys(SKIPPED_STATES, 4),
}
_PENDING_RANK = 2


# RFC 3339 only (no offset: UTC); fromisoformat also reads a NUL before the zone, week dates...
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)?", re.ASCII)


def parse_time(text: Any) -> datetime | None:
    """An RFC 3339 timestamp (``Z`` or an offset; fractions allowed) in UTC, else None (or out of range)."""
    if not isinstance(text, str) or _RFC3339.fullmatch(text) is None:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        return t.astimezone(UTC) if t.tzinfo is not None else t.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


def _policy_ref(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def entry_state(entry: Mapping[str, Any]) -> str:
    return str(entry.get("state") or "UNKNOWN").upper().removeprefix("TP_STATE_")


@dataclass(frozen=True, slots=True)
class NodeReport:
    """One ObservationNode as rollout folding needs it (see ``index_nodes``)."""

    name: str
    kind: str  # "stale" | "native" | "tetragon"
    loaded: Mapping[tuple[str, str], Mapping[str, Any]]  # (namespace or "", name) -> status.policies entry
    unreachable: bool = False  # a fresh Tetragon node whose agent cannot reach Tetragon
    unreachable_since: datetime | None = None  # Ready=False's lastTransitionTime (None: not said)
    unreachable_message: str = ""
    no_source: str | None = None  # source none, Tetragon reachable: why the agent gets no events
    no_source_since: datetime | None = None  # EventSource=False's lastTransitionTime (None: not said)
    beat: datetime | None = None  # heartbeatTime: when the agent made this report
    # every entry of a key the node listed more than once, in its order (``loaded`` holds the first)
    repeated: Mapping[tuple[str, str], tuple[Mapping[str, Any], ...]] = field(default_factory=dict)

    def entries(self, key: tuple[str, str]) -> tuple[Mapping[str, Any], ...]:
        """Every entry the node listed for ``key`` (none, one, or the repeats)."""
        if key in self.repeated:
            return self.repeated[key]
        entry = self.loaded.get(key)
        return () if entry is None else (entry,)


def _unreachable(status: Mapping[str, Any]) -> tuple[bool, datetime | None, str]:
    caps = status.get("capabilities")
    tetragon = caps.get("tetragon") if isinstance(caps, Mapping) else None
    if not isinstance(tetragon, Mapping) or tetragon.get("reachable") is not False:
        return False, None, ""  # reachable, or not said: only an agent's explicit false counts
    down = _false(status, "Ready")
    if down is None:
        return True, None, ""
    return (
        True,
        parse_time(down.get("lastTransitionTime")),
        str(down.get("message") or "")[:MAX_MESSAGE_CHARS],
    )


def _false(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    """The agent's condition ``type_`` when it is False, else None."""
    conditions = status.get("conditions")
    for c in conditions if isinstance(conditions, list) else ():
        if isinstance(c, Mapping) and c.get("type") == type_ and c.get("status") == "False":
            return c
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def index_nodes(
    nodes: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
    stale_after_seconds: float,
    beats: Mapping[str, datetime] | None = None,
) -> tuple[NodeReport, ...]:
    """Every ObservationNode read once, sorted by name: fold many policies over one index.

    ``fold_rollout`` builds this itself; a caller folding many policies over
    the same nodes builds it once and passes it as ``reports`` (with 1,000
    nodes reporting 200 policies each that is the difference between reading
    200,000 entries per policy and two dictionary lookups per node).
    ``beats``: node name -> when the operator saw its heartbeat arrive (``controller.heartbeats``);
    staleness is then measured from that, on the operator's clock, not from the agent's stamp.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    out = []
    for node in nodes:
        meta = _mapping(node.get("metadata"))
        name = str(meta.get("name") or _mapping(node.get("spec")).get("nodeName"))
        status = _mapping(node.get("status"))  # a hand-edited status of the wrong type says nothing
        beat = parse_time(status.get("heartbeatTime"))
        arrived = beat if beats is None or beat is None else beats.get(name)
        if arrived is None or (now - arrived).total_seconds() > stale_after_seconds:
            out.append(NodeReport(name=name, kind="stale", loaded={}))
            continue
        if str(status.get("source") or "") == "native":
            out.append(NodeReport(name=name, kind="native", loaded={}))
            continue
        loaded: dict[tuple[str, str], Mapping[str, Any]] = {}
        repeated: dict[tuple[str, str], tuple[Mapping[str, Any], ...]] = {}
        policies = status.get("policies")
        for entry in policies if isinstance(policies, list) else ():
            if isinstance(entry, Mapping) and entry.get("name"):
                key = (str(entry.get("namespace") or ""), str(entry["name"]))
                if key in loaded:  # listed again: every entry is kept (the worst decides, _node_outcome)
                    repeated[key] = (*repeated.get(key, (loaded[key],)), entry)
                else:
                    loaded[key] = entry
        down, since, message = _unreachable(status)
        deaf = str(status.get("source") or "") == "none" and not down  # loaded there, but not observed
        deaf_since = _false(status, "EventSource") if deaf else None  # the agent's EVENT_SOURCE_CONDITION
        out.append(
            NodeReport(
                name=name,
                kind="tetragon",
                loaded=loaded,
                unreachable=down,
                unreachable_since=since,
                unreachable_message=message,
                no_source=str(status.get("maxPostureReason") or "")[:MAX_MESSAGE_CHARS] if deaf else None,
                no_source_since=parse_time(deaf_since.get("lastTransitionTime")) if deaf_since else None,
                beat=beat,
                repeated=repeated,
            )
        )
    out.sort(key=lambda r: r.name)
    return tuple(out)


def fold_rollout(
    *,
    tetragon_policies: Sequence[tuple[str | None, str]],
    nodes: Sequence[Mapping[str, Any]],
    now: datetime,
    stale_after_seconds: float,
    max_messages: int = 5,
    reports: Sequence[NodeReport] | None = None,
    written: Mapping[tuple[str, str], datetime] | None = None,
    versions: Mapping[tuple[str, str], Version] | None = None,
    deaf: list[NodeReport] | None = None,
) -> dict:
    """``status.rollout`` of one policy from every ObservationNode (see the module docstring).

    With ``reports`` (from ``index_nodes``) the nodes are not read again and
    ``nodes``, ``now`` and ``stale_after_seconds`` are not used. ``written``:
    (namespace or "", name) of a Tetragon object -> when its spec was last
    written; ``versions``: the same key -> its (uid, generation) now. A
    node's report of another version, or (without a version in the report)
    one made before the write, counts as pending. ``deaf``: given, the nodes counted pending for
    ``NoEventSource`` are appended to it (``rollout_overdue.no_source_nodes`` times them).
    """
    if reports is None:
        reports = index_nodes(nodes, now=now, stale_after_seconds=stale_after_seconds)
    wanted = sorted({(ns or "", name) for ns, name in tetragon_policies})
    counts = {"running": 0, "partial": 0, "failed": 0, "pending": 0, "stale": 0, "native": 0, "skipped": 0}
    failures: list[dict[str, Any]] = []
    for report in reports:
        if report.kind != "tetragon":
            counts[report.kind] += 1
            continue
        kind, problems = _node_outcome(report, wanted, written or {}, versions or {})
        if kind == "pending" and report.unreachable:
            problems = [
                unreachable_entry(report.name, wanted, report.unreachable_since, report.unreachable_message)
            ]
        elif kind == "running" and report.no_source is not None:  # nothing it traces reaches us there
            kind, problems = "pending", [no_source_entry(report.name, wanted, report.no_source)]
            if deaf is not None:
                deaf.append(report)
        counts[kind] += 1
        if problems and len(failures) < max_messages:
            failures.extend(problems)
    total = sum(n for k, n in counts.items() if k != "skipped")
    return {
        "nodesTotal": total,
        "nodesRunning": counts["running"],
        "nodesPartial": counts["partial"],
        "nodesFailed": counts["failed"],
        "nodesPending": counts["pending"],
        "nodesStale": counts["stale"],
        "nodesNative": counts["native"],
        "nodesSkipped": counts["skipped"],
        "failures": failures[: max(0, max_messages)],
    }


def reported_before(report: NodeReport, written: datetime | None) -> bool:
    """Whether ``report`` predates a write at ``written`` (so says nothing of what was written).

    ``heartbeatTime`` has whole seconds: a report stamped in the second of the write is taken
    as after it (waiting for the next report would hold a policy for a heartbeat period).
    """
    if written is None:
        return False
    return report.beat is None or report.beat < written.replace(microsecond=0)


def current_entry(
    report: NodeReport, key: tuple[str, str], written: datetime | None, version: Version | None
) -> Mapping[str, Any] | None:
    """The node's entry for ``key`` when it is about the current version, else None (pending).

    Of a key listed more than once, the worst entry about the current version (see the module).
    """
    current = [e for e in report.entries(key) if _is_current(report, e, written, version)]
    return min(current, key=lambda e: _STATE_RANK.get(entry_state(e), _PENDING_RANK), default=None)


def _is_current(
    report: NodeReport, entry: Mapping[str, Any], written: datetime | None, version: Version | None
) -> bool:
    if not_from_api(entry):  # a file's or gRPC's policy of the name: never our object
        return False
    same = speaks_of(entry, version)
    if same is not None:  # the report names the version Tetragon loaded: no clock is compared
        return same
    return not reported_before(report, written)


def awaiting_since(
    reports: Sequence[NodeReport], written: Mapping[tuple[str, str], datetime]
) -> datetime | None:
    """The last write that some fresh, reachable Tetragon node has not reported since; else None.

    Only nodes whose entries name no version wait on the time rule: a node that
    names the loaded version changes its list when Tetragon reloads, which
    refolds every policy anyway.
    """
    last = max(written.values(), default=None)
    if last is not None and any(
        r.kind == "tetragon"
        and not r.unreachable
        and reported_before(r, last)
        and any(
            not r.entries(key) or any(reported_version(e) is None for e in r.entries(key)) for key in written
        )
        for r in reports
    ):
        return last
    return None


def _node_outcome(
    report: NodeReport,
    wanted: Sequence[tuple[str, str]],
    written: Mapping[tuple[str, str], datetime],
    versions: Mapping[tuple[str, str], Version],
) -> tuple[str, list[dict[str, Any]]]:
    """running | partial | failed | pending | skipped for one fresh Tetragon node, and its failure entries."""
    failed: list[dict[str, Any]] = []
    partial: list[dict[str, Any]] = []
    pending = False
    considered = 0
    for key in wanted:
        entry = current_entry(report, key, written.get(key), versions.get(key))
        state = entry_state(entry) if entry is not None else "NOT_LOADED"
        if state in SKIPPED_STATES:
            continue
        considered += 1
        policy = _policy_ref(key[0], key[1])
        others = report.entries(key)
        if entry is None and others and all(not_from_api(e) for e in others):  # ours listed at no version
            state, entry = "NOT_FROM_API", {"error": HELD_BY_ANOTHER}
        if state in FAILED_STATES:
            message = str((entry or {}).get("error") or "") or f"policy is {state} on this node"
            message = message[:MAX_MESSAGE_CHARS]
            failed.append({"node": report.name, "policy": policy, "state": state, "message": message})
        elif state in PARTIAL_STATES:
            partial.append(partial_entry(report.name, policy, entry or {}))
        elif state not in RUNNING_STATES:
            pending = True
    if wanted and not considered:
        return "skipped", []
    if failed:
        return "failed", failed
    if partial:
        return "partial", partial
    return ("pending" if pending else "running"), []
