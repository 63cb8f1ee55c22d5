"""The operator's reconciles: from kopf's indexes to the fewest writes that converge the cluster.

Level-triggered: each reconcile looks at the whole current state of one key
(a pod, a policy, an observer, a node) in kopf's in-memory indexes, renders
what should be, and writes only the difference (``controller.patches``).
Handlers (``controller.handlers``) only say which keys to look at; the
``Scheduler`` coalesces and serializes them. So:

- an unchanged resource costs CPU and no API call at all;
- a write is remembered until its watch event comes back (a
  read-your-writes overlay keyed by the index entry the write was based on),
  so a second reconcile that runs before the echo does not write again;
- a deleted or edited owned object shows up as a watch event on the owned
  kind, which re-triggers its owner, which writes it back.

Keys: ``("pod", ns, name)``, ``("policy", kind, ns|None, name)``,
``("observer", name)`` (agent objects, the native probes' ConfigMap and the
observer's status) and ``("node", name)`` (a Node's feature labels).
"""

from __future__ import annotations

import collections
import copy
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.crds import (
    CLUSTER_POLICY_KIND,
    FEATURE_LABEL_PREFIX,
    OBSERVE_LEVEL_ANNOTATION,
    POLICY_KIND,
    POSTURE_ANNOTATION,
    POSTURE_REASON_ANNOTATION,
    PolicySpec,
    SpecError,
    parse_observer_spec,
    parse_policy_spec,
)
from stellaops_runtime.controller.conditions import State, merge_conditions, now_rfc3339, state_conditions
from stellaops_runtime.controller.naming import canonical_json
from stellaops_runtime.controller.patches import (
    for_create,
    labels_patch,
    managed_view,
    owned_patch,
    pod_posture_patch,
    status_patch,
)
from stellaops_runtime.controller.posture import (
    NodeCapabilities,
    PolicyView,
    Posture,
    PostureDecision,
    allowed_levels_message,
    compute_posture,
    node_capabilities,
    policy_selects,
    policy_view,
)
from stellaops_runtime.controller.render_agent import probe_configmap_name, render_agent_objects
from stellaops_runtime.controller.render_policy import (
    PROBE_CONFIG_KEY,
    RenderedPolicy,
    probe_entry_key,
    render_policy,
    render_probe_configmap,
)
from stellaops_runtime.controller.rollout import fold_rollout, node_feature_labels, parse_time
from stellaops_runtime.controller.scheduler import Key, Scheduler
from stellaops_runtime.controller.settings import COMPONENT, ControllerConfig
from stellaops_runtime.kube import resources as r
from stellaops_runtime.kube.client import ApiError, KubeClient
from stellaops_runtime.kube.resources import Resource, resource_for

log = logging.getLogger(__name__)

# kopf index ids (the handlers module registers them; the reconciler reads them).
INDEX_POLICIES = "stellaops_policies"  # (kind, ns|None, name) -> object snapshot
INDEX_OBSERVERS = "stellaops_observers"  # name -> object snapshot
INDEX_NAMESPACES = "stellaops_namespaces"  # name -> labels
INDEX_OBSERVATION_NODES = "stellaops_observation_nodes"  # node name -> object snapshot
INDEX_NODES = "stellaops_nodes"  # node name -> NodeSnapshot
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

POLICY_ANNOTATION = "stellaops.io/policy"  # on rendered Tetragon policies: probe_entry_key of the parent
POLICY_STATUS_KEYS = (
    "observedGeneration",
    "conditions",
    "tetragonPolicies",
    "unresolvedFunctions",
    "notes",
    "rollout",
)
OBSERVER_STATUS_KEYS = (
    "observedGeneration",
    "conditions",
    "desiredAgents",
    "readyAgents",
    "postureCounts",
    "nodes",
)
TETRAGON_KINDS = frozenset({crds.TETRAGON_POLICY_KIND, crds.TETRAGON_NAMESPACED_KIND})
AGENT_KINDS = frozenset(
    {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "Service"}
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


def snapshot(body: Mapping[str, Any]) -> dict[str, Any]:
    """A plain deep copy of a watched object for an index (without managedFields)."""
    obj = copy.deepcopy(dict(body))
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


@dataclass(frozen=True, slots=True)
class PodSnapshot:
    """What the operator needs of a pod: identity, labels, our annotations, its node."""

    namespace: str
    name: str
    uid: str
    labels: dict[str, str]
    annotations: dict[str, str]  # only OBSERVE_LEVEL, POSTURE and POSTURE_REASON
    node: str
    deleting: bool

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


@dataclass(slots=True)
class _Parsed:
    fingerprint: str
    spec: PolicySpec | None
    error: SpecError | None
    rendered: RenderedPolicy | None = None
    view: PolicyView | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    """Owns the API client, the scheduler and the per-process memory of the operator."""

    def __init__(self, config: ControllerConfig | None = None, *, kube: KubeClient | None = None) -> None:
        self.config = config or ControllerConfig()
        self.kube = kube
        self._owns_kube = kube is None
        self.scheduler = Scheduler(
            self._reconcile,
            concurrency=self.config.concurrency,
            retry_initial=self.config.retry_initial_seconds,
            retry_max=self.config.retry_max_seconds,
        )
        self.indexes: dict[str, Any] = {}
        self.stats = ControllerStats()
        self._written: dict[Any, tuple[Any, Any]] = {}
        self._parsed: dict[tuple[str, str | None, str], _Parsed] = {}
        self._views: list[PolicyView] | None = None
        self._views_by_ns: dict[str, list[PolicyView]] = {}
        self._cluster_views: list[PolicyView] = []
        self._caps: dict[str, tuple[Any, NodeCapabilities | None]] = {}
        self._reported_levels: set[tuple[str, str]] = set()
        self._node_state: dict[str, Any] = {}
        self._namespace_labels: dict[str, dict[str, str]] = {}

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        if self.kube is None:
            self.kube = await KubeClient.connect(
                kubeconfig=self.config.kubeconfig, user_agent="stellaops-runtime-operator"
            )
            self._owns_kube = True

    async def stop(self) -> None:
        await self.scheduler.close()
        if self.kube is not None and self._owns_kube:
            await self.kube.close()
            self.kube = None

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

    # -- index access ----------------------------------------------------------------

    def _one(self, index: str, key: Any) -> Any:
        idx = self.indexes.get(index)
        if idx is None or key not in idx:
            return None
        for value in idx[key]:
            return value
        return None

    def _all(self, index: str, key: Any) -> list[Any]:
        idx = self.indexes.get(index)
        if idx is None or key not in idx:
            return []
        return list(idx[key])

    def _items(self, index: str) -> Iterator[tuple[Any, Any]]:
        idx = self.indexes.get(index)
        if idx is None:
            return
        for key in list(idx):
            for value in idx.get(key, ()):
                yield key, value

    # Read-your-writes: after a write, the index shows the old state until the watch event
    # comes back. Each write is remembered with the part of the index entry it changes (a
    # pod's labels and annotations, a resource's status, an owned object's managed fields);
    # while the index still shows that part unchanged, the write is what is current. Other
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
        hit, value = self._overlay(key, managed_view(seen) if seen is not None else None)
        return value if hit else seen  # type: ignore[no-any-return]

    def _resource(self, key: Any, seen: dict[str, Any] | None) -> dict[str, Any] | None:
        """One of our resources with the status we last wrote (metadata and spec from the index)."""
        if seen is None:
            self._written.pop(key, None)
            return None
        hit, status = self._overlay(key, seen.get("status"))
        return {**seen, "status": status} if hit else seen

    def _pod(self, key: tuple[str, str]) -> PodSnapshot | None:
        seen: PodSnapshot | None = self._one(INDEX_PODS, key)
        if seen is None:
            self._written.pop(("v1", "Pod", *key), None)
            return None
        hit, value = self._overlay(("v1", "Pod", *key), (seen.labels, seen.annotations))
        return value if hit else seen  # type: ignore[no-any-return]

    # -- triggers (called by the handlers) ------------------------------------------------

    def trigger(self, key: Key, *, delay: float = 0.0) -> None:
        self.scheduler.trigger(key, delay=delay)

    def trigger_observers(self) -> None:
        """Every RuntimeObserver, coalesced (probe ConfigMap, posture counts, node counts)."""
        for name, _ in self._items(INDEX_OBSERVERS):
            self.trigger(("observer", name), delay=self.config.coalesce_seconds)

    def trigger_policies(self) -> None:
        for (kind, ns, name), _ in self._items(INDEX_POLICIES):
            self.trigger(("policy", kind, ns, name), delay=self.config.coalesce_seconds)

    def trigger_pods(self, pods: Iterable[tuple[str, str]]) -> None:
        for ns, name in pods:
            self.trigger(("pod", ns, name), delay=self.config.coalesce_seconds)

    def resync(self) -> None:
        """Reconcile every known object now (tests and the benchmark prove it writes nothing)."""
        for (kind, ns, name), _ in self._items(INDEX_POLICIES):
            self.trigger(("policy", kind, ns, name))
        for name, _ in self._items(INDEX_OBSERVERS):
            self.trigger(("observer", name))
        for (ns, name), _ in self._items(INDEX_PODS):
            self.trigger(("pod", ns, name))
        for name, _ in self._items(INDEX_NODES):
            self.trigger(("node", name))

    def policy_event(self, *, kind: str, namespace: str | None, name: str, deleted: bool) -> None:
        """A policy changed: reconcile it; re-evaluate pods whose selection changed; refresh probe configs."""
        self.trigger(("policy", kind, namespace, name))
        key = (kind, namespace, name)
        before = self._parsed.get(key)
        old_view = before.view if before is not None else None
        old_fp = before.fingerprint if before is not None else None
        now = None if deleted else self._parse(kind, namespace, name)
        new_view = now.view if now is not None else None
        new_fp = now.fingerprint if now is not None else None
        if deleted:
            self._parsed.pop(key, None)
        if old_view != new_view or (before is None) != (now is None):
            self._views = None
            self.trigger_pods(self._pods_selected_by(v for v in (old_view, new_view) if v is not None))
        if old_fp != new_fp:
            self.trigger_observers()

    def namespace_event(self, *, name: str, labels: Mapping[str, str] | None) -> None:
        new = dict(labels or {})
        old = self._namespace_labels.get(name)
        if labels is None:
            self._namespace_labels.pop(name, None)
        else:
            self._namespace_labels[name] = new
        if old is not None and old != new:
            self.trigger_pods(self._all(INDEX_PODS_BY_NAMESPACE, name))

    def observation_node_event(self, *, name: str, body: Mapping[str, Any] | None) -> None:
        """An ObservationNode changed: labels of its Node; pods there if its ceiling moved; rollouts."""
        self.trigger(("node", name))
        caps = node_capabilities(body) if body is not None else None
        status = (body or {}).get("status") or {}
        beat = parse_time(status.get("heartbeatTime"))
        fresh = beat is not None and (_utcnow() - beat).total_seconds() <= self.config.stale_after_seconds
        state = (caps, canonical_json(status.get("policies") or []), status.get("source"), fresh)
        old = self._node_state.get(name)
        if body is None:
            self._node_state.pop(name, None)
        else:
            self._node_state[name] = state
        if old is None or old[0] != caps:
            self.trigger_pods(self._all(INDEX_PODS_BY_NODE, name))
        if old is None or old[1:] != state[1:] or body is None:
            self.trigger_policies()
            self.trigger_observers()

    def observer_deleted(self, *, uid: str) -> None:
        """Its objects carry owner references (the garbage collector removes them); do it now too."""
        if uid:
            self.trigger(("orphans", uid))

    def pod_deleted(self, *, namespace: str, name: str, uid: str) -> None:
        self._written.pop(("v1", "Pod", namespace, name), None)
        self._reported_levels = {k for k in self._reported_levels if k[0] != uid}
        self.trigger_observers()

    # -- dispatch --------------------------------------------------------------------------

    async def _reconcile(self, key: Key) -> None:
        what = key[0]
        if what == "pod":
            await self.reconcile_pod(str(key[1]), str(key[2]))
        elif what == "policy":
            await self.reconcile_policy(str(key[1]), key[2], str(key[3]))  # type: ignore[arg-type]
        elif what == "observer":
            await self.reconcile_observer(str(key[1]))
        elif what == "node":
            await self.reconcile_node(str(key[1]))
        elif what == "orphans":
            for child in sorted(self._children(("uid", key[1])), key=str):
                await self.delete_owned(child)
        else:
            raise ValueError(f"unknown reconcile key {key!r}")

    # -- policies: parsing, views ---------------------------------------------------------------

    def _policy_body(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        seen = self._one(INDEX_POLICIES, (kind, namespace, name))
        return self._resource((crds.API_VERSION, kind, namespace, name), seen)

    def _parse(self, kind: str, namespace: str | None, name: str) -> _Parsed | None:
        """Parse (cached by spec and uid) a policy from the index; None if absent or being deleted."""
        body = self._policy_body(kind, namespace, name)
        key = (kind, namespace, name)
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            self._parsed.pop(key, None)
            return None
        meta = body.get("metadata") or {}
        fp = canonical_json([meta.get("uid"), body.get("spec")])
        cached = self._parsed.get(key)
        if cached is not None and cached.fingerprint == fp:
            return cached
        try:
            spec = parse_policy_spec(body.get("spec") or {}, cluster=kind == CLUSTER_POLICY_KIND)
        except SpecError as e:
            parsed = _Parsed(fingerprint=fp, spec=None, error=e)
        else:
            parsed = _Parsed(
                fingerprint=fp,
                spec=spec,
                error=None,
                view=policy_view(kind=kind, namespace=namespace, name=name, spec=spec),
            )
        self._parsed[key] = parsed
        return parsed

    def _rendered(self, kind: str, namespace: str | None, name: str) -> RenderedPolicy | None:
        parsed = self._parse(kind, namespace, name)
        if parsed is None or parsed.spec is None:
            return None
        if parsed.rendered is None:
            body = self._policy_body(kind, namespace, name) or {}
            parsed.rendered = render_policy(
                kind=kind,
                name=name,
                namespace=namespace,
                uid=str((body.get("metadata") or {}).get("uid") or ""),
                spec=parsed.spec,
            )
        return parsed.rendered

    def policy_views(self) -> list[PolicyView]:
        """Views of every valid policy not being deleted (cached until a policy changes)."""
        if self._views is None:
            views = []
            for (kind, ns, name), _ in self._items(INDEX_POLICIES):
                parsed = self._parse(kind, ns, name)
                if parsed is not None and parsed.view is not None:
                    views.append(parsed.view)
            self._views = views
            self._views_by_ns = collections.defaultdict(list)
            self._cluster_views = []
            for v in views:
                if v.kind == POLICY_KIND:
                    self._views_by_ns[v.namespace or ""].append(v)
                else:
                    self._cluster_views.append(v)
        return self._views

    def _pods_selected_by(self, views: Iterable[PolicyView]) -> set[tuple[str, str]]:
        views = list(views)
        out: set[tuple[str, str]] = set()
        if not views:
            return out
        for (ns, name), pod in self._items(INDEX_PODS):
            ns_labels = self._one(INDEX_NAMESPACES, ns) or {}
            for v in views:
                if policy_selects(v, pod_labels=pod.labels, namespace=ns, namespace_labels=ns_labels):
                    out.add((ns, name))
                    break
        return out

    # -- pods -------------------------------------------------------------------------------------

    def _node_caps(self, node: str) -> NodeCapabilities | None:
        if not node:
            return None
        seen = self._one(INDEX_OBSERVATION_NODES, node)
        cached = self._caps.get(node)
        if cached is not None and cached[0] is seen:
            return cached[1]
        caps = node_capabilities(seen) if seen is not None else None
        self._caps[node] = (seen, caps)
        return caps

    def pod_decision(self, pod: PodSnapshot) -> PostureDecision:
        self.policy_views()
        candidates = self._views_by_ns.get(pod.namespace, []) + self._cluster_views
        return compute_posture(
            annotations=pod.annotations,
            pod_labels=pod.labels,
            namespace=pod.namespace,
            namespace_labels=self._one(INDEX_NAMESPACES, pod.namespace) or {},
            policies=candidates,
            node=self._node_caps(pod.node),
        )

    async def reconcile_pod(self, namespace: str, name: str) -> None:
        key = ("v1", "Pod", namespace, name)
        seen: PodSnapshot | None = self._one(INDEX_PODS, (namespace, name))
        pod = self._pod((namespace, name))
        if seen is None or pod is None or pod.deleting:
            return
        decision = self.pod_decision(pod)
        patch = pod_posture_patch(
            annotations=pod.annotations,
            labels=pod.labels,
            posture=decision.posture.value,
            reason=decision.reason,
            observe=decision.observe_label,
        )
        if decision.invalid_level is not None:
            await self._report_invalid_level(pod, decision, writing=patch is not None)
        if patch is None:
            return
        try:
            await self.api.patch(r.PODS, name=name, namespace=namespace, patch=patch)
        except ApiError as e:
            if e.not_found:
                return
            raise
        self.stats.writes["pod"] += 1
        self._remember(key, (seen.labels, seen.annotations), pod.patched(patch))

    async def _report_invalid_level(
        self, pod: PodSnapshot, decision: PostureDecision, *, writing: bool
    ) -> None:
        value = decision.invalid_level or ""
        mark = (pod.uid, value)
        if mark in self._reported_levels:
            return
        self._reported_levels.add(mark)
        if not writing and pod.annotations.get(POSTURE_REASON_ANNOTATION) == decision.reason:
            return  # recorded on the pod already: an earlier operator process posted the Event
        message = (
            f"{OBSERVE_LEVEL_ANNOTATION}={value!r} is not an observe level and is ignored; "
            f"{allowed_levels_message()}. Effective posture: {decision.posture} ({decision.reason})"
        )
        await self._event(pod.ref, type="Warning", reason="InvalidObserveLevel", message=message)

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

    # -- owned objects ------------------------------------------------------------------------------

    async def apply(self, desired: Mapping[str, Any]) -> str:
        """Create or patch one owned object; "created", "patched" or "unchanged"."""
        res = resource_for(str(desired["apiVersion"]), str(desired["kind"]))
        key = obj_key(desired)
        name, namespace = key[3], key[2]
        seen = self._one(INDEX_OWNED, key)
        part = managed_view(seen) if seen is not None else None
        current = self._owned(key)
        if current is None:
            try:
                body = await self.api.create(res, for_create(desired))
            except ApiError as e:
                if not e.conflict:
                    raise
                current = await self.api.get(res, name=name, namespace=namespace)
                if current is None:
                    raise
            else:
                self.stats.writes[f"create {desired['kind']}"] += 1
                self._remember(key, part, body)
                return "created"
        patch = owned_patch(desired, current)
        if patch is None:
            return "unchanged"
        body = await self.api.patch(res, name=name, namespace=namespace, patch=patch)
        self.stats.writes[f"patch {desired['kind']}"] += 1
        self._remember(key, part, body)
        log.info("%s %s/%s differed from its rendering: patched", desired["kind"], namespace or "", name)
        return "patched"

    async def delete_owned(self, key: ObjKey) -> bool:
        seen = self._one(INDEX_OWNED, key)
        if self._owned(key) is None:
            return False
        res = resource_for(key[0], key[1])
        gone = await self.api.delete(res, name=key[3], namespace=key[2])
        self._remember(key, managed_view(seen) if seen is not None else None, None)
        if gone:
            self.stats.writes[f"delete {key[1]}"] += 1
        return gone

    def _children(self, *owners: Any) -> set[ObjKey]:
        out: set[ObjKey] = set()
        for owner in owners:
            for child in self._all(INDEX_CHILDREN, owner):
                if self._owned(child) is not None:
                    out.add(child)
        return out

    # -- policies ----------------------------------------------------------------------------------

    def _policy_children(self, kind: str, namespace: str | None, name: str, uid: str | None) -> set[ObjKey]:
        owners: list[Any] = [("policy", probe_entry_key(kind=kind, namespace=namespace, name=name))]
        if uid:
            owners.append(("uid", uid))
        return {k for k in self._children(*owners) if k[1] in TETRAGON_KINDS}

    async def reconcile_policy(self, kind: str, namespace: str | None, name: str) -> None:
        seen = self._one(INDEX_POLICIES, (kind, namespace, name))
        key = (crds.API_VERSION, kind, namespace, name)
        body = self._resource(key, seen)
        res = r.OBSERVATION_POLICIES if kind == POLICY_KIND else r.CLUSTER_OBSERVATION_POLICIES
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            uid = ((body or {}).get("metadata") or {}).get("uid")
            for child in sorted(self._policy_children(kind, namespace, name, uid), key=str):
                await self.delete_owned(child)
            return
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        generation = meta.get("generation")
        parsed = self._parse(kind, namespace, name)
        assert parsed is not None
        if parsed.error is not None:
            for child in sorted(self._policy_children(kind, namespace, name, uid), key=str):
                await self.delete_owned(child)
            err = parsed.error
            status = {
                "observedGeneration": generation,
                "conditions": state_conditions(
                    state="Stalled", reason=err.reason, message=err.message, generation=generation
                ),
                "tetragonPolicies": [],
                "unresolvedFunctions": [],
                "notes": [],
            }
            # The Event goes with the status change: once per new error, not once per reconcile.
            if await self._write_status(res, key, seen, body, status, owned=POLICY_STATUS_KEYS):
                await self._event(body, type="Warning", reason=err.reason, message=err.message)
            return
        rendered = self._rendered(kind, namespace, name)
        assert rendered is not None
        errors: list[str] = []
        missing_crd = False
        for obj in rendered.tracing_policies:
            try:
                await self.apply(obj)
            except ApiError as e:
                missing_crd = missing_crd or e.not_found
                errors.append(f"{obj['kind']} {obj['metadata']['name']}: {e.status} {e.reason}: {e.message}")
        wanted = {obj_key(o) for o in rendered.tracing_policies}
        for child in sorted(self._policy_children(kind, namespace, name, uid) - wanted, key=str):
            await self.delete_owned(child)
        names = [o["metadata"]["name"] for o in rendered.tracing_policies]
        nodes = [n for _, n in self._items(INDEX_OBSERVATION_NODES)]
        rollout = fold_rollout(
            tetragon_policies=[(namespace, n) for n in names],
            nodes=nodes,
            now=_utcnow(),
            stale_after_seconds=self.config.stale_after_seconds,
            max_messages=self.config.max_rollout_messages,
        )
        state, reason, message = _policy_state(
            names=names, rollout=rollout, errors=errors, missing_crd=missing_crd
        )
        status = {
            "observedGeneration": generation,
            "conditions": state_conditions(
                state=state, reason=reason, message=message, generation=generation
            ),
            "tetragonPolicies": names,
            "unresolvedFunctions": rendered.unresolved_functions,
            "notes": rendered.notes,
            "rollout": rollout,
        }
        await self._write_status(res, key, seen, body, status, owned=POLICY_STATUS_KEYS)
        if errors:
            raise RuntimeError("; ".join(errors))  # retried with backoff by the scheduler

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
        try:
            await self.api.patch(
                res, name=meta["name"], namespace=meta.get("namespace"), patch=patch, subresource="status"
            )
        except ApiError as e:
            if e.not_found:
                return False
            raise
        self.stats.writes[f"status {body.get('kind')}"] += 1
        written = dict(current)
        for k, v in patch["status"].items():
            if v is None:
                written.pop(k, None)
            else:
                written[k] = v
        self._remember(key, (seen or {}).get("status"), written)
        return True

    def probe_entries(self) -> dict[str, dict]:
        """Every valid policy's native-probe entry (policies being deleted are left out)."""
        entries: dict[str, dict] = {}
        for (kind, ns, name), _ in self._items(INDEX_POLICIES):
            rendered = self._rendered(kind, ns, name)
            if rendered is not None:
                entries[probe_entry_key(kind=kind, namespace=ns, name=name)] = rendered.probe_entry
        return entries

    async def finalize_policy(self, *, kind: str, namespace: str | None, name: str) -> bool:
        """On deletion: remove its Tetragon objects and its probe entry. True when both are gone."""
        self.policy_event(kind=kind, namespace=namespace, name=name, deleted=False)
        await self.scheduler.run(("policy", kind, namespace, name))
        entry = probe_entry_key(kind=kind, namespace=namespace, name=name)
        done = not self._policy_children(kind, namespace, name, None)
        for observer, _ in list(self._items(INDEX_OBSERVERS)):
            await self.scheduler.run(("observer", observer))
            done = done and entry not in self._probe_configmap_entries(observer)
        return done

    def _probe_configmap_entries(self, observer: str) -> set[str]:
        body = self._current_observer_child_configmap(observer)
        if body is None:
            return set()
        try:
            doc = json.loads((body.get("data") or {}).get(PROBE_CONFIG_KEY) or "{}")
        except ValueError:
            return set()
        return set((doc.get("policies") or {}).keys())

    def _current_observer_child_configmap(self, observer: str) -> dict | None:
        obs = self._resource(
            (crds.API_VERSION, crds.OBSERVER_KIND, None, observer), self._one(INDEX_OBSERVERS, observer)
        )
        if obs is None:
            return None
        ns = ((obs.get("spec") or {}).get("agentNamespace")) or crds.DEFAULT_AGENT_NAMESPACE
        return self._owned(("v1", "ConfigMap", ns, probe_configmap_name(observer)))

    # -- observers -----------------------------------------------------------------------------------

    async def reconcile_observer(self, name: str) -> None:
        seen = self._one(INDEX_OBSERVERS, name)
        key = (crds.API_VERSION, crds.OBSERVER_KIND, None, name)
        body = self._resource(key, seen)
        if body is None:
            return  # its objects carry owner references: the garbage collector removes them
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return
        uid = str(meta.get("uid") or "")
        generation = meta.get("generation")
        try:
            spec = parse_observer_spec(body.get("spec") or {})
        except SpecError as err:
            status = {
                "observedGeneration": generation,
                "conditions": state_conditions(
                    state="Stalled",
                    reason=err.reason,
                    message=f"{err.message} (the agents keep their last valid configuration)",
                    generation=generation,
                ),
            }
            if await self._write_status(r.RUNTIME_OBSERVERS, key, seen, body, status, owned=()):
                await self._event(body, type="Warning", reason=err.reason, message=err.message)
            return
        namespace = spec.agent_namespace
        desired = render_agent_objects(name=name, uid=uid, namespace=namespace, spec=spec)
        desired.append(
            render_probe_configmap(
                name=probe_configmap_name(name),
                namespace=namespace,
                entries=self.probe_entries(),
                owner=body,
            )
        )
        errors: list[str] = []
        for obj in desired:
            try:
                await self.apply(obj)
            except ApiError as e:
                errors.append(f"{obj['kind']} {obj['metadata']['name']}: {e.status} {e.reason}: {e.message}")
        wanted = {obj_key(o) for o in desired}
        if uid:
            for child in sorted(self._children(("uid", uid)) - wanted, key=str):
                if child[1] in AGENT_KINDS:
                    await self.delete_owned(child)
        ds_key = next(obj_key(o) for o in desired if o["kind"] == "DaemonSet")
        ds = self._owned(ds_key) or {}
        status = self._observer_status(ds=ds, generation=generation, errors=errors, namespace=namespace)
        await self._write_status(r.RUNTIME_OBSERVERS, key, seen, body, status, owned=OBSERVER_STATUS_KEYS)
        if errors:
            raise RuntimeError("; ".join(errors))

    def posture_counts(self) -> dict[str, int]:
        counts = {p.value: 0 for p in Posture}
        for key, pod in self._items(INDEX_PODS):
            value = (self._pod(key) or pod).annotations.get(POSTURE_ANNOTATION)
            if value in counts:
                counts[value] += 1
        return counts

    def node_counts(self) -> dict[str, Any]:
        out: dict[str, Any] = {"total": 0, "tetragon": 0, "native": 0, "none": 0, "stale": 0}
        ceilings = {p.value: 0 for p in Posture}
        now = _utcnow()
        for _, node in self._items(INDEX_OBSERVATION_NODES):
            out["total"] += 1
            status = node.get("status") or {}
            beat = parse_time(status.get("heartbeatTime"))
            if beat is None or (now - beat).total_seconds() > self.config.stale_after_seconds:
                out["stale"] += 1
                continue
            source = status.get("source")
            out[source if source in ("tetragon", "native") else "none"] += 1
            caps = node_capabilities(node)
            if caps is not None:
                ceilings[caps.ceiling()[0].value] += 1
        out["maxPosture"] = ceilings
        return out

    def _observer_status(
        self, *, ds: Mapping[str, Any], generation: Any, errors: list[str], namespace: str
    ) -> dict[str, Any]:
        ds_status = ds.get("status") or {}
        desired = int(ds_status.get("desiredNumberScheduled") or 0)
        ready = int(ds_status.get("numberReady") or 0)
        updated = int(ds_status.get("updatedNumberScheduled") or 0)
        ds_gen = (ds.get("metadata") or {}).get("generation")
        ds_seen = ds_status.get("observedGeneration")
        state: State
        if errors:
            state, reason, message = "Degraded", "ApplyFailed", "; ".join(errors)
        elif not ds_status or (ds_gen is not None and ds_seen is not None and ds_seen < ds_gen):
            state, reason, message = (
                "Progressing",
                "WaitingForDaemonSet",
                (f"the agent DaemonSet in {namespace} has not reported this configuration yet"),
            )
        elif desired == 0:
            state, reason, message = "Progressing", "NoNodes", "no node matches the agent's nodeSelector yet"
        elif ready < desired or updated < desired:
            state, reason, message = (
                "Progressing",
                "RollingOut",
                (f"{ready}/{desired} agents ready, {updated}/{desired} updated"),
            )
        else:
            state, reason, message = "Ready", "AgentsReady", f"{ready}/{desired} agents ready"
        return {
            "observedGeneration": generation,
            "conditions": state_conditions(
                state=state, reason=reason, message=message, generation=generation
            ),
            "desiredAgents": desired,
            "readyAgents": ready,
            "postureCounts": self.posture_counts(),
            "nodes": self.node_counts(),
        }

    # -- nodes ------------------------------------------------------------------------------------------

    async def reconcile_node(self, name: str) -> None:
        seen = self._one(INDEX_NODES, name)
        key = ("v1", "Node", None, name)
        if seen is None:
            self._written.pop(key, None)
            return
        hit, value = self._overlay(key, seen)
        labels = value if hit else seen
        obs = self._one(INDEX_OBSERVATION_NODES, name)
        desired = node_feature_labels(obs) if obs is not None else {}
        patch = labels_patch(labels, desired, prefix=FEATURE_LABEL_PREFIX)
        if patch is None:
            return
        try:
            await self.api.patch(r.NODES, name=name, patch={"metadata": {"labels": patch}})
        except ApiError as e:
            if e.not_found:
                return
            raise
        self.stats.writes["node"] += 1
        new = {k: v for k, v in labels.items() if k not in patch}
        new.update({k: v for k, v in patch.items() if v is not None})
        self._remember(key, seen, new)


def _policy_state(
    *, names: list[str], rollout: Mapping[str, Any], errors: list[str], missing_crd: bool
) -> tuple[State, str, str]:
    """The overall condition of a valid policy from what was applied and how nodes report it."""
    if errors:
        if missing_crd:
            return (
                "Degraded",
                "TetragonNotInstalled",
                ("Tetragon's TracingPolicy CRDs are not installed: " + "; ".join(errors)),
            )
        return "Degraded", "ApplyFailed", "; ".join(errors)
    total, running = rollout["nodesTotal"], rollout["nodesRunning"]
    if rollout["nodesFailed"]:
        first = rollout["failures"][0] if rollout["failures"] else {}
        detail = (
            f": {first.get('node')}: {first.get('policy')} {first.get('state')}: {first.get('message')}"
            if first
            else ""
        )
        return "Degraded", "LoadFailed", f"{rollout['nodesFailed']}/{total} nodes failed to load it{detail}"
    if rollout["nodesPending"]:
        return (
            "Progressing",
            "RollingOut",
            f"{running}/{total} nodes running, {rollout['nodesPending']} pending",
        )
    what = f"{len(names)} Tetragon policies" if names else "no Tetragon policy (native probe entry only)"
    return "Ready", "RolledOut", f"{what}; {running}/{total} nodes running, {rollout['nodesStale']} stale"
