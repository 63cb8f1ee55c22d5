"""Which source covers each function a policy names by package URL, folded from the ObservationNodes.

Tetragon cannot put a uprobe on a file that exists only in a pod's image
(cilium/tetragon#5105), so the renderer passes such functions to the agents
unresolved (``status.unresolvedFunctions``). An agent whose own BCC probes
are the node's source resolves them per container and lists each in its
ObservationNode's ``status.purlFunctions``. This module folds those lists
into the policy's ``status.purlFunctions``, one entry per (purl, symbol):

- ``nodesNative``: fresh nodes whose native probes attached it (state
  ``attached`` there);
- ``nodesNone``: fresh nodes where no source covers it: Tetragon is the
  source there (or none is), or the native probes report another state
  (not_found, not_in_package, unsupported, error), or they have not reported
  the function yet;
- ``source``: ``native`` when every such node is covered, ``none`` when no
  node is, ``partial`` otherwise (``none`` too when no fresh node reports);
- ``nodes``: the first nodes by name (at most 10), each with its source,
  state and reason, the uncovered ones first; the state is the agent's
  (``attached``, ``not_found``, ...), ``tetragon`` where Tetragon is the
  source, ``no_source`` where none works, ``not_reported`` where the native
  probes have not listed the function.

At most 64 functions per policy are listed (``unresolvedFunctions`` has them all).

Stale nodes (no heartbeat within ``stale_after_seconds``) count in neither
number: their report cannot be trusted. Pure: the caller gives the nodes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from stellaops_runtime.contracts import purl_status as ps
from stellaops_runtime.controller.rollout import parse_time

TETRAGON_CANNOT = "Tetragon is the source on this node: it cannot trace functions named by purl"
NO_SOURCE = "no event source works on this node"
NOT_REPORTED = "not_reported"


def _fresh(
    nodes: Sequence[Mapping[str, Any]],
    now: datetime,
    stale_after_seconds: float,
    beats: Mapping[str, datetime] | None,
) -> list[Any]:
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    out = []
    for node in nodes:
        status, meta = node.get("status"), node.get("metadata")
        if not isinstance(status, Mapping):  # hostile or empty: no heartbeat, so nothing to trust
            continue
        beat = parse_time(status.get("heartbeatTime"))
        name = str(meta.get("name") if isinstance(meta, Mapping) else "") or "(unnamed)"
        if beats is not None and beat is not None:
            beat = beats.get(name)  # when the operator saw it arrive (controller.heartbeats)
        if beat is None or (now - beat).total_seconds() > stale_after_seconds:
            continue
        out.append((name, status))
    out.sort(key=lambda t: t[0])
    return out


def _on_node(status: Mapping[str, Any], policy: str, purl: str, symbol: str) -> dict[str, str]:
    source = str(status.get("source") or "")
    if source == "tetragon":
        return {"source": ps.SOURCE_NONE, "state": "tetragon", "reason": TETRAGON_CANNOT}
    if source != ps.SOURCE_NATIVE:
        return {"source": ps.SOURCE_NONE, "state": "no_source", "reason": NO_SOURCE}
    listed = status.get("purlFunctions")
    for e in listed if isinstance(listed, list) else ():
        if (
            isinstance(e, Mapping)
            and e.get("policy") == policy
            and e.get("purl") == purl
            and e.get("symbol") == symbol
        ):
            state = str(e.get("state") or ps.ERROR)
            return {
                "source": ps.SOURCE_NATIVE if state == ps.ATTACHED else ps.SOURCE_NONE,
                "state": state,
                "reason": str(e.get("reason") or "")[: ps.MAX_REASON_CHARS],
            }
    return {
        "source": ps.SOURCE_NONE,
        "state": NOT_REPORTED,
        "reason": "the native probes have not reported this function (yet)",
    }


def fold_purl_functions(
    *,
    policy: str,
    functions: Sequence[Mapping[str, Any]],
    nodes: Sequence[Mapping[str, Any]],
    now: datetime,
    stale_after_seconds: float,
    beats: Mapping[str, datetime] | None = None,
) -> list[dict[str, Any]]:
    """The policy's ``status.purlFunctions`` (see the module docstring).

    ``policy`` is its probe ConfigMap key (``render_policy.probe_entry_key``);
    ``functions`` its ``unresolvedFunctions`` (``purl`` and ``symbols`` each).
    """
    fresh = _fresh(nodes, now, stale_after_seconds, beats)
    wanted = sorted(
        {(str(f.get("purl")), str(s)) for f in functions for s in (f.get("symbols") or ()) if f.get("purl")}
    )
    out: list[dict[str, Any]] = []
    for purl, symbol in wanted[: ps.MAX_POLICY_ENTRIES]:
        per_node = [{"node": name, **_on_node(status, policy, purl, symbol)} for name, status in fresh]
        native = sum(n["source"] == ps.SOURCE_NATIVE for n in per_node)
        none = len(per_node) - native
        source = ps.SOURCE_NATIVE if native and not none else ps.SOURCE_NONE if not native else "partial"
        listed = sorted(per_node, key=lambda n: (n["source"] == ps.SOURCE_NATIVE, n["node"]))
        out.append({
            "purl": purl, "symbol": symbol, "source": source, "nodesNative": native, "nodesNone": none,
            "nodes": listed[: ps.MAX_NODES_LISTED],
        })  # fmt: skip
    return out
