"""What the reconciler knows and remembers: kopf's indexes, read-your-writes, status writes, Events.

The operator is level-triggered: every reconcile reads the whole current
state of one key from kopf's in-memory indexes (filled by ``handlers``) and
writes only the difference. This module holds that state and the few
primitives every reconcile shares, so the per-kind reconciles
(``reconcile_policies``, ``reconcile_observers``, ``reconcile_pods``,
``reconcile_nodes``) and the owned-object writer (``owned``) build on one
base without importing each other in circles:

- the index ids and how an index entry is keyed (``obj_key``, ``PodSnapshot``);
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
import copy
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from stellaops_runtime.contracts.crd_names import AGENT_TEMPLATE_ANNOTATION
from stellaops_runtime.contracts.crds import (
    OBSERVE_LEVEL_ANNOTATION,
    POSTURE_ANNOTATION,
    POSTURE_REASON_ANNOTATION,
)
from stellaops_runtime.controller.agent_pods import ContainerProblem, container_problems
from stellaops_runtime.controller.conditions import merge_conditions, now_rfc3339
from stellaops_runtime.controller.heartbeats import Heartbeats
from stellaops_runtime.controller.node_labels import is_stale
from stellaops_runtime.controller.patches import managed_view, status_patch
from stellaops_runtime.controller.posture import NodeCapabilities
from stellaops_runtime.controller.settings import COMPONENT, ControllerConfig
from stellaops_runtime.controller.status_write import patch_status
from stellaops_runtime.kube.client import ApiError, KubeClient
from stellaops_runtime.kube.resources import Resource

log = logging.getLogger(__name__)

# kopf index ids (the handlers module registers them; the reconciler reads them).
INDEX_POLICIES = "stellaops_policies"  # (kind, ns|None, name) -> object snapshot
INDEX_OBSERVERS = "stellaops_observers"  # name -> object snapshot
INDEX_NAMESPACES = "stellaops_namespaces"  # name -> labels
INDEX_OBSERVATION_NODES = "stellaops_observation_nodes"  # node name -> object snapshot
INDEX_NODES = "stellaops_nodes"  # node name -> its labels (a dict; no uid)
INDEX_PODS = "stellaops_pods"  # (ns, name) -> PodSnapshot
INDEX_PODS_BY_NODE = "stellaops_pods_by_node"  # node name -> (ns, name)
INDEX_PODS_BY_NAMESPACE = "stellaops_pods_by_namespace"  # ns -> (ns, name)
INDEX_OWNED = "stellaops_owned"  # ObjKey -> object snapshot
INDEX_CHILDREN = "stellaops_children"  # ("uid", owner uid) | ("policy", entry key) -> ObjKey
INDEXES = (
    INDEX_POLICIES,
    INDEX_OBSERVERS,
    INDEX_NAMESPACES,
    INDEX_OBSERVATION_NODES,
    INDEX_NODES,
    INDEX_PODS,
    INDEX_PODS_BY_NODE,
    INDEX_PODS_BY_NAMESPACE,
    INDEX_OWNED,
    INDEX_CHILDREN,
)

ObjKey = tuple[str, str, str | None, str]  # apiVersion, kind, namespace, name


def obj_key(obj: Mapping[str, Any]) -> ObjKey:
    meta = obj.get("metadata") or {}
    return (
        str(obj.get("apiVersion", "")),
        str(obj.get("kind", "")),
        meta.get("namespace") or None,
        meta["name"],
    )


def _uid_of(value: Any) -> str | None:
    """The uid of an index value (an object snapshot or a PodSnapshot), if it has one."""
    if isinstance(value, Mapping):
        meta = value.get("metadata")
        return str(meta.get("uid") or "") or None if isinstance(meta, Mapping) else None
    return getattr(value, "uid", None) or None


def pod_part(pod: PodSnapshot) -> tuple[str, dict[str, str], dict[str, str]]:
    """What a pod write is based on (the overlay's part): its uid, labels and annotations.

    The uid, because a pod deleted and made again under its name in a watch gap (kopf re-lists
    after 410 Gone) comes back with the same labels and annotations (a StatefulSet's pod): without
    it the new pod was read as the dead one patched, and never given its posture.
    """
    return (pod.uid, pod.labels, pod.annotations)


def status_part(seen: Mapping[str, Any] | None) -> tuple[str | None, Any]:
    """What a status write is based on: the object's uid and its status (see ``pod_part``)."""
    return (_uid_of(seen), seen.get("status")) if seen is not None else (None, None)


def owned_part(seen: Mapping[str, Any] | None) -> tuple[str | None, dict[str, Any]] | None:
    """What a write of an owned object is based on: its uid and managed view (see ``pod_part``;
    an object restored under its name as it was before our patch is not the patched one)."""
    return (_uid_of(seen), managed_view(seen)) if seen is not None else None


def snapshot(body: Mapping[str, Any]) -> dict[str, Any]:
    """A plain deep copy of a watched object for an index (without managedFields)."""
    obj = copy.deepcopy(dict(body))
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def _controller_ref(meta: Mapping[str, Any]) -> tuple[str, str, str] | None:
    refs = meta.get("ownerReferences")
    for ref in refs if isinstance(refs, list) else ():
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return str(ref.get("kind") or ""), str(ref.get("name") or ""), str(ref.get("uid") or "")
    return None


@dataclass(frozen=True, slots=True)
class PodSnapshot:
    """What the operator needs of a pod: identity, labels, our annotations, its node.

    ``problems``: containers the kubelet reports stuck (``agent_pods``), read for
    the agent pods' part of a RuntimeObserver's status.
    """

    namespace: str
    name: str
    uid: str
    labels: dict[str, str]
    annotations: dict[str, str]  # only OBSERVE_LEVEL, POSTURE and POSTURE_REASON
    node: str
    deleting: bool
    problems: tuple[ContainerProblem, ...] = ()
    controller: tuple[str, str, str] | None = None  # (kind, name, uid) of its controller ownerReference
    agent_template: str = ""  # an agent pod's stellaops.io/agent-template: which rollout it runs

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> PodSnapshot:
        meta = body.get("metadata") or {}
        ann = meta.get("annotations") or {}
        keep = (OBSERVE_LEVEL_ANNOTATION, POSTURE_ANNOTATION, POSTURE_REASON_ANNOTATION)
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            labels=dict(meta.get("labels") or {}),
            annotations={k: str(ann[k]) for k in keep if k in ann},
            node=str((body.get("spec") or {}).get("nodeName") or ""),
            deleting=bool(meta.get("deletionTimestamp")),
            problems=container_problems(body),
            controller=_controller_ref(meta),
            agent_template=str(ann.get(AGENT_TEMPLATE_ANNOTATION) or ""),
        )

    def patched(self, patch: Mapping[str, Any]) -> PodSnapshot:
        meta = patch.get("metadata") or {}
        annotations = dict(self.annotations)
        for k, v in (meta.get("annotations") or {}).items():
            if v is None:
                annotations.pop(k, None)
            else:
                annotations[k] = v
        labels = dict(self.labels)
        for k, v in (meta.get("labels") or {}).items():
            if v is None:
                labels.pop(k, None)
            else:
                labels[k] = v
        return replace(self, annotations=annotations, labels=labels)

    @property
    def ref(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid},
        }


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
