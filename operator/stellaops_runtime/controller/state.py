"""What the reconciler knows and remembers: kopf's indexes, read-your-writes, status writes, Events.

The operator is level-triggered: every reconcile reads the whole current
state of one key from kopf's in-memory indexes (filled by ``handlers``) and
writes only the difference. This module holds that state and the few
primitives every reconcile shares, so the per-kind reconciles
(``reconcile_policies``, ``reconcile_observers``, ``reconcile_pods``,
``reconcile_nodes``) and the owned-object writer (``owned``) build on one
base without importing each other in circles:

- the index ids and how an index entry is keyed (``obj_key``, ``PodSnapshot``: controller/index_keys.py,
  re-exported here);
- a read-your-writes overlay: after a write, the index shows the old state
  until the watch event comes back, so each write is remembered with the
  part of the index entry it changes, and a second reconcile before the echo
  does not write again;
- ``_write_status`` (the status subresource of our own resources, only onto the object the
  status was computed for: ``status_write``) and
  ``_event`` (a best-effort core/v1 Event).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stellaops_runtime.controller.conditions import merge_conditions, now_rfc3339
from stellaops_runtime.controller.heartbeats import Heartbeats
from stellaops_runtime.controller.index_keys import (
    INDEX_CHILDREN,
    INDEX_NAMESPACES,
    INDEX_NODES,
    INDEX_OBSERVATION_NODES,
    INDEX_OBSERVERS,
    INDEX_OWNED,
    INDEX_PODS,
    INDEX_PODS_BY_NAMESPACE,
    INDEX_PODS_BY_NODE,
    INDEX_POLICIES,
    INDEXES,
    ObjKey,
    PodSnapshot,
    _uid_of,
    obj_key,
    owned_part,
    pod_part,
    snapshot,
    status_part,
)
from stellaops_runtime.controller.node_labels import is_stale
from stellaops_runtime.controller.patches import status_patch
from stellaops_runtime.controller.posture import NodeCapabilities
from stellaops_runtime.controller.settings import COMPONENT, ControllerConfig
from stellaops_runtime.controller.status_write import patch_status
from stellaops_runtime.kube.client import ApiError, KubeClient
from stellaops_runtime.kube.resources import Resource

# Re-exported from controller/index_keys.py (split from here): the reconciles import them from this module.
__all__ = [
    "INDEXES",
    "INDEX_CHILDREN",
    "INDEX_NAMESPACES",
    "INDEX_NODES",
    "INDEX_OBSERVATION_NODES",
    "INDEX_OBSERVERS",
    "INDEX_OWNED",
    "INDEX_PODS",
    "INDEX_PODS_BY_NAMESPACE",
    "INDEX_PODS_BY_NODE",
    "INDEX_POLICIES",
    "ControllerStats",
    "ObjKey",
    "PodSnapshot",
    "ReconcilerState",
    "obj_key",
    "owned_part",
    "pod_part",
    "snapshot",
    "utcnow",
]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ControllerStats:
    """Writes by what was written, and reconcile outcomes (tests, the benchmark, logs)."""

    writes: collections.Counter[str] = field(default_factory=collections.Counter)
    events: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)


def utcnow() -> datetime:
    return datetime.now(UTC)


class ReconcilerState:
    """The API client, kopf's live indexes and the per-process memory every reconcile shares."""

    def __init__(self, config: ControllerConfig | None = None, *, kube: KubeClient | None = None) -> None:
        self.config = config or ControllerConfig()
        self.kube = kube
        self._owns_kube = kube is None
        self.indexes: dict[str, Any] = {}
        self.stats = ControllerStats()
        self._written: dict[Any, tuple[Any, Any]] = {}
        self._caps: dict[str, tuple[Any, NodeCapabilities | None]] = {}
        # per node: the Tetragon objects it lists as failed to load (reconcile_pods, in_force)
        self._failures: dict[str, tuple[Any, dict[tuple[str, str], tuple[Any, ...]]]] = {}
        self._reported_levels: set[tuple[str, str]] = set()
        self._node_state: dict[str, Any] = {}
        self._namespace_labels: dict[str, dict[str, str]] = {}
        self._unreadable_secrets: set[tuple[str, str]] = set()  # store Secrets we were refused (logged once)
        # When this process last patched the spec of an owned object: node reports made before
        # then are not about that version (rollout.fold_rollout).
        self._spec_written: dict[ObjKey, datetime] = {}
        # Policies whose rollout waits for a node report newer than this (reconcile.observation_node_event).
        self._awaiting_reports: dict[tuple[str, str | None, str], datetime] = {}
        # uids of indexed objects found deleted while the watch was down (controller.index_audit).
        self._gone_uids: set[str] = set()
        # Policies with a Tetragon object refused or not applied: the level they really give (in_force).
        self._apply_caps: dict[tuple[str, str | None, str], tuple[Any, str]] = {}
        # Policies whose apply outcome this process knows (reconciled since it started: in_force)
        self._in_force_known: set[tuple[str, str | None, str]] = set()
        # When each ObservationNode's current heartbeat arrived, on this process's clock (heartbeats).
        self.heartbeats = Heartbeats(
            labels=lambda name: self._one(INDEX_NODES, name),
            stale_after_seconds=self.config.stale_after_seconds,
        )

    def _forget_policy(self, key: tuple[str, str | None, str]) -> None:
        """A policy deleted: what this process remembered of its rollout and its applied objects."""
        self._awaiting_reports.pop(key, None)
        self._apply_caps.pop(key, None)
        self._in_force_known.discard(key)

    def bind(self, indices: Mapping[str, Any]) -> None:
        """Keep kopf's live index objects (they are updated in place as events arrive)."""
        for name in INDEXES:
            if name in indices:
                self.indexes[name] = indices[name]

    @property
    def api(self) -> KubeClient:
        if self.kube is None:
            raise RuntimeError("the reconciler is not started")
        return self.kube

    def _is_stale(self, observation_node: Mapping[str, Any], *, now: datetime | None = None) -> bool:
        """No heartbeat arrived from the node's agent for ``stale_after_seconds`` (operator's clock)."""
        now = now or utcnow()
        received = self.heartbeats.received(observation_node, now=now)
        return is_stale(
            observation_node, now=now, stale_after_seconds=self.config.stale_after_seconds, received=received
        )

    # -- index access ----------------------------------------------------------------

    # kopf keeps one value per object under a key, and never drops the entry of an object deleted
    # while its watch was down (it re-lists after 410 Gone without telling the indexes what went).
    # An object re-created under the same name is then indexed after the dead one: of several
    # values under a key that names one object, the last one kopf stored is the live object.

    def _one(self, index: str, key: Any) -> Any:
        idx = self.indexes.get(index)
        if idx is None or key not in idx:
            return None
        store = idx[key]
        if len(store) == 1 and not self._gone_uids:  # the usual case, on every pod's reconcile
            return next(iter(store))
        values = tuple(store)
        if self._gone_uids:  # objects found deleted behind kopf's back (controller.index_audit)
            values = tuple(v for v in values if _uid_of(v) not in self._gone_uids)
        return values[-1] if values else None  # the last one (see above)

    def _all(self, index: str, key: Any) -> list[Any]:
        idx = self.indexes.get(index)
        if idx is None or key not in idx:
            return []
        return list(idx[key])

    def _items(self, index: str) -> Iterator[tuple[Any, Any]]:
        """Each key of a one-object-per-key index with its live value (``_one``)."""
        idx = self.indexes.get(index)
        if idx is None:
            return
        for key in list(idx):
            value = self._one(index, key)
            if value is not None:
                yield key, value

    # Read-your-writes: after a write, the index shows the old state until the watch event
    # comes back. Each write is remembered with the part of the index entry it changes (a
    # pod's uid, labels and annotations, a resource's uid and status, an owned object's uid and managed
    # fields); while the index still shows that part unchanged, the write is what is current. Other
    # events in between (kopf's finalizer, a DaemonSet's status) do not void it.

    def _overlay(self, key: Any, part: Any) -> tuple[bool, Any]:
        entry = self._written.get(key)
        if entry is None:
            return False, None
        if entry[0] == part:
            return True, entry[1]
        del self._written[key]
        return False, None

    def _remember(self, key: Any, part: Any, value: Any) -> None:
        self._written[key] = (part, value)

    def _owned(self, key: ObjKey) -> dict[str, Any] | None:
        """An owned object as it is now (the index, or our newer write)."""
        seen = self._one(INDEX_OWNED, key)
        hit, value = self._overlay(key, owned_part(seen))
        return value if hit else seen  # type: ignore[no-any-return]

    def _resource(self, key: Any, seen: dict[str, Any] | None) -> dict[str, Any] | None:
        """One of our resources with the status we last wrote (metadata and spec from the index)."""
        if seen is None:
            self._written.pop(key, None)
            return None
        hit, status = self._overlay(key, status_part(seen))
        return {**seen, "status": status} if hit else seen

    def _pod(self, key: tuple[str, str]) -> PodSnapshot | None:
        seen: PodSnapshot | None = self._one(INDEX_PODS, key)
        if seen is None:
            self._written.pop(("v1", "Pod", *key), None)
            return None
        hit, value = self._overlay(("v1", "Pod", *key), pod_part(seen))
        return value if hit else seen  # type: ignore[no-any-return]

    # -- shared writes ---------------------------------------------------------------------

    async def _write_status(
        self,
        res: Resource,
        key: Any,
        seen: Any,
        body: Mapping[str, Any],
        status: dict[str, Any],
        *,
        owned: Iterable[str],
    ) -> bool:
        current = dict(body.get("status") or {})
        status = {k: v for k, v in status.items() if v is not None}
        status["conditions"] = merge_conditions(
            current.get("conditions"), status["conditions"], now=now_rfc3339()
        )
        patch = status_patch(current, status, owned_keys=owned)
        if patch is None:
            return False
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid") or "") or None  # the object it was computed for (status_write)
        base = await patch_status(
            self.api,
            res,
            name=meta["name"],
            namespace=meta.get("namespace"),
            uid=uid,
            current=current,
            changes=patch["status"],
        )
        if base is None:
            return False  # gone, or replaced: the new object's own event reconciles it
        self.stats.writes[f"status {body.get('kind')}"] += 1
        written = dict(base)
        for k, v in patch["status"].items():
            if v is None:
                written.pop(k, None)
            else:
                written[k] = v
        self._remember(key, status_part(seen), written)
        return True

    async def _event(self, involved: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
        try:
            await self.api.post_event(
                involved, type=type, reason=reason, message=message, component=COMPONENT
            )
        except ApiError as e:  # an Event is best effort: never fail a reconcile for it
            self.stats.errors["event"] += 1
            log.warning(
                "could not post event %s on %s: %s", reason, (involved.get("metadata") or {}).get("name"), e
            )
            return
        self.stats.events[reason] += 1
        self.stats.writes["event"] += 1
