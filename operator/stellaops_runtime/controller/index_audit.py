"""Finding index entries of objects deleted while the operator's watch was down.

kopf fills the operator's indexes from watch events. When a watch ends in
410 Gone (the API server no longer has the resourceVersion to resume from:
after an API server restart, a long network cut), kopf lists the resource
again, but it never removes from its indexes the objects deleted in the gap:
their DELETED events are lost and nothing else says they went. The operator
then goes on acting on a dead object:

- a **policy** deleted in the gap keeps being rendered: its Tetragon objects
  stay (in a real cluster the garbage collector deletes them, their owner is
  gone, and the operator creates them again: a loop), and its entry stays in
  the agents' probe ConfigMap;
- a **Tetragon object** of ours deleted in the gap is believed present and is
  never created again (its policy stays Progressing for good);
- an **ObservationNode** deleted in the gap counts in every rollout for ever;
- a **pod** deleted in the gap keeps counting in its RuntimeObserver's
  ``status.postureCounts``, stays on the agents' opt-out list, and an agent
  pod that was stuck (ImagePullBackOff, say) keeps the RuntimeObserver
  Degraded for good although its replacement runs.

So every ``index_audit_seconds`` the operator lists those kinds (metadata
only, in pages of 500, keeping only the uids; a kind it may not or cannot
list, Tetragon's CRDs on a cluster without Tetragon say, is left unchecked,
the others are audited) and, for each
indexed object whose uid the list does not hold, reads
it by name (a list with a field selector: the operator's RBAC lets it list
ObservationNodes, not get them): when it is gone, or its name now belongs to
another object, the uid is marked gone. ``ReconcilerState._one``/``_items`` skip gone uids and
the object's key is reconciled as deleted. A confirmed stale entry is
counted (``stats.errors["stale-index"]``) and logged at WARNING. The cost is
one metadata list per kind per audit, and one more per candidate (an object
created between the list and the scan is a candidate, and that list clears it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.crds import MANAGED_BY
from stellaops_runtime.controller.ownership import POLICY_ANNOTATION
from stellaops_runtime.controller.state import (
    INDEX_OBSERVATION_NODES,
    INDEX_OWNED,
    INDEX_PODS,
    INDEX_POLICIES,
    PodSnapshot,
    ReconcilerState,
)
from stellaops_runtime.kube import resources as r
from stellaops_runtime.kube.client import METADATA_LIST, ApiError
from stellaops_runtime.kube.resources import Resource

log = logging.getLogger(__name__)

_POLICY_RES = {
    crds.POLICY_KIND: r.OBSERVATION_POLICIES,
    crds.CLUSTER_POLICY_KIND: r.CLUSTER_OBSERVATION_POLICIES,
}
_TETRAGON_RES = {
    crds.TETRAGON_POLICY_KIND: r.TRACING_POLICIES,
    crds.TETRAGON_NAMESPACED_KIND: r.TRACING_POLICIES_NAMESPACED,
}
_MANAGED = f"{MANAGED_BY[0]}={MANAGED_BY[1]}"
_AUDITED = (INDEX_POLICIES, INDEX_OWNED, INDEX_OBSERVATION_NODES, INDEX_PODS)
PAGE = 500  # objects per list request (a cluster's pods are many; only their uids are kept)


def _meta(value: Any) -> Mapping[str, Any]:
    if isinstance(value, PodSnapshot):  # the pod index keeps a snapshot, not the object
        return {"uid": value.uid, "namespace": value.namespace, "name": value.name}
    meta = value.get("metadata") if isinstance(value, Mapping) else None
    return meta if isinstance(meta, Mapping) else {}


async def listed_uids(
    state: ReconcilerState, res: Resource, *, label_selector: str | None = None, page: int = PAGE
) -> set[str]:
    """The uids of every object of ``res``, listed metadata only in pages of ``page`` (``limit`` and
    ``continue``), keeping nothing but the uids."""
    params = {"limit": str(page)}
    if label_selector:
        params["labelSelector"] = label_selector
    uids: set[str] = set()
    while True:
        doc = await state.api.request(
            "GET", res.path(), verb="list", resource=res, params=params, accept=METADATA_LIST
        )
        items = doc.get("items") if isinstance(doc, Mapping) else None
        uids.update(str(uid) for item in items or () if (uid := _meta(item).get("uid")))
        token = _meta(doc).get("continue")
        if not token:
            return uids
        params["continue"] = str(token)


async def _live_uids(state: ReconcilerState) -> tuple[set[str], set[Resource]]:
    """The uids of every policy, Tetragon object of ours, ObservationNode and pod now in the cluster,
    and the resources that could be listed (one refused or not installed, Tetragon's CRDs on a
    cluster without Tetragon say, leaves only its own entries unchecked)."""
    uids: set[str] = set()
    listed: set[Resource] = set()
    wanted: list[tuple[Resource, str | None]] = [(res, None) for res in _POLICY_RES.values()]
    wanted += [(res, _MANAGED) for res in _TETRAGON_RES.values()]
    wanted.append((r.OBSERVATION_NODES, None))
    wanted.append((r.PODS, None))
    for res, selector in wanted:
        try:
            found = await listed_uids(state, res, label_selector=selector)
        except ApiError as e:
            if e.throttled or e.status >= 500:
                raise  # the whole audit waits for the next round
            log.debug("index audit: cannot list %s (%s); its entries are not checked", res.plural, e)
            continue
        listed.add(res)
        uids |= found
    return uids, listed


async def _gone(state: ReconcilerState, res: Resource, value: Any) -> bool:
    """Whether the indexed object ``value`` no longer exists (its name is free or another's)."""
    meta = _meta(value)
    try:  # a list by name, not a GET: the operator may list ObservationNodes, not get them
        found = await state.api.list(
            res,
            namespace=meta.get("namespace") if res.namespaced else None,
            field_selector=f"metadata.name={meta.get('name')}",
            metadata_only=True,
        )
    except ApiError:
        return False  # not sure: the next audit asks again
    return not any(_meta(item).get("uid") == meta.get("uid") for item in found)


def _candidates(
    state: ReconcilerState, live: set[str], listed: set[Resource]
) -> list[tuple[str, Any, Resource, Any]]:
    """(index, key, resource, value) of each indexed object whose uid the lists do not hold."""
    out = []
    for index in _AUDITED:
        idx = state.indexes.get(index)
        for key in list(idx or ()):
            for value in list(idx.get(key, ())) if idx is not None else ():
                uid = str(_meta(value).get("uid") or "")
                if not uid or uid in live or uid in state._gone_uids:
                    continue
                kind = str(value.get("kind") or "") if isinstance(value, Mapping) else ""
                if index == INDEX_POLICIES:
                    res = _POLICY_RES.get(kind)
                elif index == INDEX_OWNED:
                    res = _TETRAGON_RES.get(kind)
                elif index == INDEX_PODS:
                    res = r.PODS
                else:
                    res = r.OBSERVATION_NODES
                if res is not None and res in listed:
                    out.append((index, key, res, value))
    return out


async def audit_indexes(state: Any) -> int:
    """Mark the index entries of deleted objects gone and reconcile their keys; how many were found.

    ``state`` is the ``reconcile.Reconciler`` (its triggers route the keys).
    """
    live, listed = await _live_uids(state)
    found = 0
    for index, key, res, value in _candidates(state, live, listed):
        if not await _gone(state, res, value):
            continue
        meta = _meta(value)
        uid = str(meta.get("uid"))
        state._gone_uids.add(uid)
        state.stats.errors["stale-index"] += 1
        found += 1
        where = f"{meta.get('namespace')}/{meta.get('name')}" if meta.get("namespace") else meta.get("name")
        what = "Pod" if index == INDEX_PODS else value.get("kind")
        log.warning(
            "%s %s (uid %s) was deleted while the watch was down; it is no longer acted on",
            what, where, meta.get("uid"),
        )  # fmt: skip
        if index == INDEX_POLICIES:
            kind, ns, name = key
            state.policy_event(kind=kind, namespace=ns, name=name, deleted=state._one(index, key) is None)
        elif index == INDEX_OWNED:
            entry = str((meta.get("annotations") or {}).get(POLICY_ANNOTATION) or "")
            owner_kind, _sep, rest = entry.partition("/")
            owner_ns, _sep, owner_name = rest.partition("/")
            if owner_name:
                state.trigger(("policy", owner_kind, owner_ns or None, owner_name))
        elif index == INDEX_PODS:
            state.pod_deleted(namespace=str(meta.get("namespace")), name=str(meta.get("name")), uid=uid)
        else:
            state.observation_node_event(name=str(key), body=state._one(index, key))
    indexed = {
        str(_meta(v).get("uid"))
        for index in _AUDITED
        for idx in [state.indexes.get(index) or {}]
        for key in list(idx)
        for v in idx.get(key, ())
    }
    state._gone_uids &= indexed  # forget uids kopf no longer indexes
    return found


async def audit_loop(state: Any, interval: float) -> None:
    """``audit_indexes`` every ``interval`` seconds; a failed audit is logged and tried again."""
    while True:
        await asyncio.sleep(interval)
        try:
            await audit_indexes(state)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the API server down or refusing: the next audit tries again
            log.warning("index audit failed: %s", e)
