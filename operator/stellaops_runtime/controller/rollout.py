"""Per-node rollout of a policy, folded from the ObservationNodes the agents write.

Tetragon's TracingPolicy objects have no status; whether a policy loaded on a
node is known only to that node's Tetragon (``ListTracingPolicies``). Each
agent copies that list into its ObservationNode's ``status.policies``; this
module folds those into one policy's ``status.rollout``:

- a node without a heartbeat newer than ``stale_after_seconds`` is **stale**
  (its report cannot be trusted, whatever it says);
- a node whose source is ``native`` runs policies through the native probes
  (no Tetragon to load them): counted in ``nodesNative``;
- otherwise a node is **failed** when any of the policy's Tetragon objects is
  in LOAD_ERROR, ERROR, DISABLED or PARTIALLY_ENABLED there; **running** when
  all are ENABLED; **pending** otherwise (not listed yet, LOADING, UNLOADING,
  UNKNOWN). A Tetragon that SKIPPED a policy (its nodeSelector did not match)
  counts as running nothing there: the node is left out of the total.

``nodesTotal`` = running + failed + pending + stale + native. ``failures``
lists the first ``max_messages`` failed (node, policy) pairs in name order.

It also derives a node's ``feature.stellaops.io/*`` labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stellaops_runtime.contracts.crds import FEATURE_LABEL_PREFIX
from stellaops_runtime.controller.naming import label_value
from stellaops_runtime.controller.posture import node_capabilities

FAILED_STATES = frozenset({"LOAD_ERROR", "ERROR", "DISABLED", "PARTIALLY_ENABLED"})
RUNNING_STATES = frozenset({"ENABLED"})
SKIPPED_STATES = frozenset({"SKIPPED"})
MAX_MESSAGE_CHARS = 512


def parse_time(text: Any) -> datetime | None:
    """An RFC 3339 timestamp (``Z`` or an offset; fractions allowed) as an aware datetime, else None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _policy_ref(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _state(entry: Mapping[str, Any]) -> str:
    return str(entry.get("state") or "UNKNOWN").upper().removeprefix("TP_STATE_")


@dataclass(frozen=True, slots=True)
class NodeReport:
    """One ObservationNode as rollout folding needs it (see ``index_nodes``)."""

    name: str
    kind: str  # "stale" | "native" | "tetragon"
    loaded: Mapping[tuple[str, str], Mapping[str, Any]]  # (namespace or "", name) -> status.policies entry


def index_nodes(
    nodes: Sequence[Mapping[str, Any]], *, now: datetime, stale_after_seconds: float
) -> tuple[NodeReport, ...]:
    """Every ObservationNode read once, sorted by name: fold many policies over one index.

    ``fold_rollout`` builds this itself; a caller folding many policies over
    the same nodes builds it once and passes it as ``reports`` (with 1,000
    nodes reporting 200 policies each that is the difference between reading
    200,000 entries per policy and two dictionary lookups per node).
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    out = []
    for node in nodes:
        meta = node.get("metadata") or {}
        name = str(meta.get("name") or (node.get("spec") or {}).get("nodeName"))
        status = node.get("status") or {}
        beat = parse_time(status.get("heartbeatTime"))
        if beat is None or (now - beat).total_seconds() > stale_after_seconds:
            out.append(NodeReport(name=name, kind="stale", loaded={}))
            continue
        if str(status.get("source") or "") == "native":
            out.append(NodeReport(name=name, kind="native", loaded={}))
            continue
        loaded: dict[tuple[str, str], Mapping[str, Any]] = {}
        for entry in status.get("policies") or ():
            if isinstance(entry, Mapping) and entry.get("name"):
                loaded[(str(entry.get("namespace") or ""), str(entry["name"]))] = entry
        out.append(NodeReport(name=name, kind="tetragon", loaded=loaded))
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
) -> dict:
    """``status.rollout`` of one policy from every ObservationNode (see the module docstring).

    With ``reports`` (from ``index_nodes``) the nodes are not read again and
    ``nodes``, ``now`` and ``stale_after_seconds`` are not used.
    """
    if reports is None:
        reports = index_nodes(nodes, now=now, stale_after_seconds=stale_after_seconds)
    wanted = sorted({(ns or "", name) for ns, name in tetragon_policies})
    counts = {"running": 0, "failed": 0, "pending": 0, "stale": 0, "native": 0}
    failures: list[dict[str, str]] = []
    for report in reports:
        if report.kind != "tetragon":
            counts[report.kind] += 1
            continue
        node_failed = []
        all_running = True
        skipped = bool(wanted)
        for key in wanted:
            entry = report.loaded.get(key)
            state = _state(entry) if entry is not None else "NOT_LOADED"
            if state not in SKIPPED_STATES:
                skipped = False
            if state in FAILED_STATES:
                message = str((entry or {}).get("error") or "") or f"policy is {state} on this node"
                node_failed.append(
                    {
                        "node": report.name,
                        "policy": _policy_ref(key[0], key[1]),
                        "state": state,
                        "message": message[:MAX_MESSAGE_CHARS],
                    }
                )
            elif state not in RUNNING_STATES:
                all_running = False
        if skipped:
            continue
        if node_failed:
            counts["failed"] += 1
            if len(failures) < max_messages:
                failures.extend(node_failed)
        elif all_running:
            counts["running"] += 1
        else:
            counts["pending"] += 1
    return {
        "nodesTotal": sum(counts.values()),
        "nodesRunning": counts["running"],
        "nodesFailed": counts["failed"],
        "nodesPending": counts["pending"],
        "nodesStale": counts["stale"],
        "nodesNative": counts["native"],
        "failures": failures[: max(0, max_messages)],
    }


FEATURE_LABEL_KEYS = tuple(
    FEATURE_LABEL_PREFIX + k
    for k in (
        "btf",
        "bpf",
        "tracepoints",
        "uprobes",
        "kprobes",
        "usdt",
        "ring-buffer",
        "tetragon",
        "source",
        "max-posture",
        "kernel-version",
        "tetragon-version",
    )
)


def node_feature_labels(observation_node: Mapping[str, Any]) -> dict[str, str]:
    """``feature.stellaops.io/<capability>`` labels for the Node an ObservationNode describes.

    Boolean capabilities are ``"true"``/``"false"``; ``source`` is tetragon,
    native or none; ``max-posture`` is the node's posture ceiling; versions
    are made valid label values and left out when unknown. Keys under the
    prefix that the result does not contain should be removed from the Node.
    """
    caps = node_capabilities(observation_node)
    if caps is None:  # node_capabilities returns None only for None
        return {}
    ceiling, _ = caps.ceiling()
    p = FEATURE_LABEL_PREFIX
    labels = {
        p + "btf": caps.btf,
        p + "bpf": caps.bpf_permitted,
        p + "tracepoints": caps.tracepoints,
        p + "uprobes": caps.uprobes,
        p + "kprobes": caps.kprobes,
        p + "usdt": caps.usdt,
        p + "ring-buffer": caps.ring_buffer,
        p + "tetragon": caps.tetragon_reachable,
    }
    out = {k: "true" if v else "false" for k, v in labels.items()}
    out[p + "source"] = caps.source if caps.source in ("tetragon", "native") else "none"
    out[p + "max-posture"] = ceiling.value
    if caps.kernel_version:
        out[p + "kernel-version"] = label_value(caps.kernel_version)
    if caps.tetragon_version:
        out[p + "tetragon-version"] = label_value(caps.tetragon_version)
    return dict(sorted(out.items()))
