"""The operator's reconciler: which keys to look at, and the one place they are dispatched.

Level-triggered: each reconcile looks at the whole current state of one key
(a pod, a policy, an observer, a node) in kopf's in-memory indexes, renders
what should be, and writes only the difference (``controller.patches``).
Handlers (``controller.handlers``) only say which keys to look at; the
``Scheduler`` coalesces and serializes them. So:

- an unchanged resource costs CPU and no API call at all;
- a write is remembered until its watch event comes back (a
  read-your-writes overlay keyed by the index entry the write was based on,
  ``controller.state``), so a second reconcile that runs before the echo
  does not write again;
- a deleted or edited owned object shows up as a watch event on the owned
  kind, which re-triggers its owner, which writes it back (after checking
  it is still ours: ``controller.ownership``).

Keys: ``("pod", ns, name)``, ``("policy", kind, ns|None, name)``,
``("observer", name)`` (agent objects, the native probes' ConfigMap and the
observer's status), ``("node", name)`` (a Node's feature labels) and
``("orphans", uid)`` (what a deleted RuntimeObserver left).

The reconciles themselves live in one module per kind, stacked as mixins
over the shared state (imports go one way only)::

    state  <-  owned  <-  reconcile_policies  <-  reconcile_observers, reconcile_pods
    state  <-  reconcile_nodes
    all of them  <-  reconcile (this module)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from stellaops_runtime.controller.in_force import load_failures
from stellaops_runtime.controller.naming import canonical_json
from stellaops_runtime.controller.node_backing import node_problem
from stellaops_runtime.controller.posture import node_capabilities
from stellaops_runtime.controller.reconcile_nodes import NodeReconciler
from stellaops_runtime.controller.reconcile_observers import ObserverReconciler, observer_owner
from stellaops_runtime.controller.reconcile_pods import PodReconciler
from stellaops_runtime.controller.reconcile_policies import policy_owner
from stellaops_runtime.controller.render_policy import probe_entry_key
from stellaops_runtime.controller.rollout import parse_time
from stellaops_runtime.controller.scheduler import Key, Scheduler
from stellaops_runtime.controller.settings import ControllerConfig
from stellaops_runtime.controller.state import (
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
    ControllerStats,
    ObjKey,
    PodSnapshot,
    obj_key,
    snapshot,
)
from stellaops_runtime.kube.client import KubeClient

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
    "Reconciler",
    "obj_key",
    "snapshot",
]


class Reconciler(ObserverReconciler, PodReconciler, NodeReconciler):
    """Owns the API client, the scheduler and the per-process memory of the operator."""

    def __init__(self, config: ControllerConfig | None = None, *, kube: KubeClient | None = None) -> None:
        super().__init__(config, kube=kube)
        self.scheduler = Scheduler(
            self._reconcile,
            concurrency=self.config.concurrency,
            retry_initial=self.config.retry_initial_seconds,
            retry_max=self.config.retry_max_seconds,
        )

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

    def trigger_agent_pods(self, *, namespace: str, daemonset: str) -> None:
        """The pods an agent DaemonSet controls (it appeared or went: they are agents, or no longer)."""
        pods = self._all(INDEX_PODS_BY_NAMESPACE, namespace)
        self.trigger_pods(
            key
            for key in pods
            if (pod := self._one(INDEX_PODS, key)) is not None
            and pod.controller is not None
            and pod.controller[:2] == ("DaemonSet", daemonset)
        )

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
        """An ObservationNode changed: labels of its Node; pods there if its ceiling or its failed
        loads moved (``in_force.load_failures``); rollouts; the observers' status when what keeps its
        agent from backing "not observed" changed."""
        self.trigger(("node", name))
        caps = node_capabilities(body) if body is not None else None
        status = (body or {}).get("status")
        if not isinstance(status, Mapping):
            status = {}
        beat = parse_time(status.get("heartbeatTime"))
        if body is None:
            self.heartbeats.forget(name)
            self._caps.pop(name, None)
            self._failures.pop(name, None)
        failed = sorted(load_failures(status.get("policies")).items())
        fresh = body is not None and not self._is_stale(body)  # notes when this heartbeat arrived
        # the last item: what keeps its agent from backing "not observed", and which rollout of the
        # agent pod template wrote the report (node_backing.outdated; read by observers only)
        state = (
            (caps, failed),
            canonical_json(status.get("policies") or []),
            status.get("source"),
            fresh,
            (node_problem(status), status.get("agentTemplate")),
        )
        old = self._node_state.get(name)
        if body is None:
            self._node_state.pop(name, None)
        else:
            self._node_state[name] = state
        if old is None or old[0] != state[0]:
            self.trigger_pods(self._all(INDEX_PODS_BY_NODE, name))
        if old is None or old[1:4] != state[1:4] or body is None:
            self.trigger_policies()
            self.trigger_observers()
            return
        if old[4] != state[4]:
            self.trigger_observers()
        if beat is not None:  # a heartbeat: the policies waiting for a report newer than their write
            for policy, written in list(self._awaiting_reports.items()):
                if beat >= written.replace(microsecond=0):  # as rollout.reported_before reads it
                    self.trigger(("policy", *policy), delay=self.config.coalesce_seconds)

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
            uid = str(key[1])
            await self.delete_children(self._children(("uid", uid)), observer_owner(uid=uid))
        else:
            raise ValueError(f"unknown reconcile key {key!r}")

    # -- policy deletion ------------------------------------------------------------------------

    async def finalize_policy(self, *, kind: str, namespace: str | None, name: str) -> bool:
        """On deletion: remove its Tetragon objects and its probe entry. True when both are gone."""
        self.policy_event(kind=kind, namespace=namespace, name=name, deleted=False)
        await self.scheduler.run(("policy", kind, namespace, name))
        entry = probe_entry_key(kind=kind, namespace=namespace, name=name)
        owner = policy_owner(kind, namespace, name)
        done = not any(self._is_ours(k, owner) for k in self._policy_children(kind, namespace, name, None))
        for observer, _ in list(self._items(INDEX_OBSERVERS)):
            await self.scheduler.run(("observer", observer))
            done = done and entry not in self._probe_configmap_entries(observer)
        return done
