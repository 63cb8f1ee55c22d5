"""The kopf handlers: watch, index, and tell the reconciler which keys to look at.

``build_registry()`` returns a fresh ``kopf.OperatorRegistry`` (no import-time
side effects, so tests can run several operators in one process). What it
registers:

- **indexes** of everything a reconcile reads (policies, observers,
  namespaces' labels, ObservationNodes, Nodes' labels, pods, owned objects):
  kopf fills them before any handler runs and keeps them current, so a pod's
  posture needs no API list;
- **event handlers** (``@kopf.on.event``: level-triggered, never persisted by
  kopf) that translate each watch event into reconcile keys;
- ``@kopf.on.delete`` on both policy kinds (kopf puts a finalizer on them):
  a policy's entry in the native probes' ConfigMap lives in the agents'
  namespace, out of reach of owner references, so it must be removed before
  the policy goes; the handler then removes the finalizer itself, so a
  refusal is logged at ERROR with an Event (``controller.finalizer``);
- a ``@kopf.timer`` on policies: a node whose heartbeats stop becomes stale
  without any event, so rollouts are refolded periodically;
- a task that checks the indexes for objects deleted while a watch was down
  (``controller.index_audit``: kopf keeps them after a re-list);
- a task started with the operator that reconciles every RuntimeObserver
  every ``rollout_refresh_seconds``: their store Secret is read, not watched,
  so a change to it is noticed by a periodic reconcile (a kopf timer would
  put a finalizer on every RuntimeObserver);
- login through the ``kubernetes`` package's loaders (in-cluster service
  account, or ``$KUBECONFIG`` / ``~/.kube/config`` read at login time), and
  start-up/cleanup of the reconciler.

The reconciler travels in kopf's ``memo`` (``kopf.Memo(reconciler=...)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.crds import MANAGED_BY
from stellaops_runtime.controller.finalizer import release_finalizer
from stellaops_runtime.controller.index_audit import audit_loop
from stellaops_runtime.controller.ownership import POLICY_ANNOTATION
from stellaops_runtime.controller.reconcile import Reconciler
from stellaops_runtime.controller.settings import FINALIZER, OWNED, ControllerConfig
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
    PodSnapshot,
    obj_key,
    snapshot,
)
from stellaops_runtime.kube import resources as kube_resources
from stellaops_runtime.kube.client import Connection
from stellaops_runtime.kube.resources import Resource

log = logging.getLogger(__name__)

_POLICY_RESOURCES = (
    (crds.POLICY_KIND, crds.POLICY_PLURAL),
    (crds.CLUSTER_POLICY_KIND, crds.CLUSTER_POLICY_PLURAL),
)
_OWNER_KINDS = {crds.OBSERVER_KIND, crds.POLICY_KIND, crds.CLUSTER_POLICY_KIND}


def selector(res: Resource) -> tuple[str, ...]:
    """kopf's resource selector for one of our resources (core kinds have no group)."""
    return (res.group, res.version, res.plural) if res.group else (res.version, res.plural)


def _reconciler(memo: Any) -> Reconciler:
    return memo.reconciler  # type: ignore[no-any-return]


def _meta(body: Mapping[str, Any]) -> Mapping[str, Any]:
    return body.get("metadata") or {}


async def refresh_observers(reconciler: Reconciler, interval: float) -> None:
    """Reconcile every RuntimeObserver every ``interval`` seconds (reads only when nothing changed)."""
    while True:
        await asyncio.sleep(interval)
        reconciler.trigger_observers()


def login(
    *, kubeconfig: str = "", logger: logging.Logger | logging.LoggerAdapter[Any]
) -> kopf.ConnectionInfo:
    """Credentials for kopf from the same loaders the operator's own client uses (blocking)."""
    conn = Connection.load(kubeconfig=kubeconfig)
    logger.info("Kubernetes API %s (%s)", conn.server, conn.source)
    scheme, token = None, None
    if conn.authorization:
        scheme, _, token = conn.authorization.partition(" ")
    return kopf.ConnectionInfo(
        server=conn.server,
        ca_path=conn.ca_path,
        insecure=conn.insecure,
        username=conn.username,
        password=conn.password,
        scheme=scheme,
        token=token,
        certificate_path=conn.cert_path,
        private_key_path=conn.key_path,
    )


def build_registry(
    config: ControllerConfig | None = None, *, reconcile: bool = True
) -> kopf.OperatorRegistry:
    """A registry with every handler of the operator (see the module docstring).

    ``reconcile=False`` registers only login, start-up/cleanup and the indexes:
    kopf lists, watches and indexes everything and the operator does nothing
    (the benchmark's baseline).
    """
    config = config or ControllerConfig()
    registry = kopf.OperatorRegistry()
    managed = {MANAGED_BY[0]: MANAGED_BY[1]}
    group, version = crds.GROUP, crds.VERSION

    # -- activities ------------------------------------------------------------------------

    @kopf.on.login(registry=registry)
    def stellaops_login(**kwargs: Any) -> kopf.ConnectionInfo:
        return login(kubeconfig=config.kubeconfig, logger=kwargs["logger"])

    @kopf.on.startup(registry=registry)
    async def stellaops_startup(**kwargs: Any) -> None:
        reconciler = _reconciler(kwargs["memo"])
        reconciler.bind({name: kwargs[name] for name in INDEXES if name in kwargs})
        await reconciler.start()
        kwargs["memo"].observer_refresh = asyncio.create_task(
            refresh_observers(reconciler, config.rollout_refresh_seconds), name="refresh RuntimeObservers"
        )
        kwargs["memo"].index_audit = asyncio.create_task(
            audit_loop(reconciler, config.index_audit_seconds), name="audit the indexes"
        )
        kwargs["logger"].info("stellaops-runtime operator started")

    @kopf.on.cleanup(registry=registry)
    async def stellaops_cleanup(memo: Any, **_: Any) -> None:
        for task in (getattr(memo, "observer_refresh", None), getattr(memo, "index_audit", None)):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await _reconciler(memo).stop()

    # -- indexes -----------------------------------------------------------------------------

    def index_policy(body: Any, **_: Any) -> dict:
        meta = _meta(body)
        kind = body.get("kind")
        ns = meta.get("namespace") if kind == crds.POLICY_KIND else None
        return {(kind, ns, meta.get("name")): snapshot(body)}

    for _kind, plural in _POLICY_RESOURCES:
        kopf.index(group, version, plural, id=INDEX_POLICIES, registry=registry)(index_policy)

    @kopf.index(group, version, crds.OBSERVER_PLURAL, id=INDEX_OBSERVERS, registry=registry)
    def index_observer(body: Any, **_: Any) -> dict:
        return {_meta(body).get("name"): snapshot(body)}

    @kopf.index(group, version, crds.NODE_PLURAL, id=INDEX_OBSERVATION_NODES, registry=registry)
    def index_observation_node(body: Any, **_: Any) -> dict:
        return {_meta(body).get("name"): snapshot(body)}

    @kopf.index("v1", "namespaces", id=INDEX_NAMESPACES, registry=registry)
    def index_namespace(body: Any, **_: Any) -> dict:
        return {_meta(body).get("name"): dict(_meta(body).get("labels") or {})}

    @kopf.index("v1", "nodes", id=INDEX_NODES, registry=registry)
    def index_node(body: Any, **_: Any) -> dict:
        return {_meta(body).get("name"): dict(_meta(body).get("labels") or {})}

    @kopf.index("v1", "pods", id=INDEX_PODS, registry=registry)
    def index_pod(body: Any, **_: Any) -> dict:
        pod = PodSnapshot.of(body)
        return {(pod.namespace, pod.name): pod}

    @kopf.index("v1", "pods", id=INDEX_PODS_BY_NODE, registry=registry)
    def index_pod_by_node(body: Any, **_: Any) -> dict | None:
        node = (body.get("spec") or {}).get("nodeName")
        return {node: (_meta(body).get("namespace"), _meta(body).get("name"))} if node else None

    @kopf.index("v1", "pods", id=INDEX_PODS_BY_NAMESPACE, registry=registry)
    def index_pod_by_namespace(body: Any, **_: Any) -> dict:
        ns = _meta(body).get("namespace")
        return {ns: (ns, _meta(body).get("name"))}

    def index_owned(body: Any, **_: Any) -> dict:
        return {obj_key(body): snapshot(body)}

    def index_children(body: Any, **_: Any) -> dict:
        meta = _meta(body)
        key = obj_key(body)
        out: dict[Any, Any] = {}
        for ref in meta.get("ownerReferences") or ():
            if ref.get("kind") in _OWNER_KINDS and ref.get("uid"):
                out[("uid", ref["uid"])] = key
        entry = (meta.get("annotations") or {}).get(POLICY_ANNOTATION)
        if entry:
            out[("policy", entry)] = key
        return out

    for res in OWNED:
        sel = selector(res)
        kopf.index(*sel, id=INDEX_OWNED, labels=managed, registry=registry)(index_owned)
        kopf.index(*sel, id=INDEX_CHILDREN, labels=managed, registry=registry)(index_children)

    if not reconcile:
        return registry

    # -- events --------------------------------------------------------------------------------

    async def on_policy(type: str | None, body: Any, memo: Any, **_: Any) -> None:
        meta = _meta(body)
        kind = body.get("kind")
        ns = meta.get("namespace") if kind == crds.POLICY_KIND else None
        _reconciler(memo).policy_event(
            kind=kind, namespace=ns, name=str(meta["name"]), deleted=type == "DELETED"
        )

    async def on_policy_delete(body: Any, memo: Any, **kwargs: Any) -> None:
        meta = _meta(body)
        kind = body.get("kind")
        ns = meta.get("namespace") if kind == crds.POLICY_KIND else None
        reconciler = _reconciler(memo)
        done = await reconciler.finalize_policy(kind=kind, namespace=ns, name=str(meta["name"]))
        if not done:
            raise kopf.TemporaryError("its Tetragon policies or probe entry are still present", delay=2)
        kwargs["logger"].debug("Tetragon policies and probe entry removed")

        async def warn(involved: Mapping[str, Any], reason: str, message: str) -> None:
            await reconciler._event(involved, type="Warning", reason=reason, message=message)

        # Our own removal, so a refusal (422 under a tightened CRD) is logged, not swallowed.
        res = (
            kube_resources.OBSERVATION_POLICIES
            if kind == crds.POLICY_KIND
            else kube_resources.CLUSTER_OBSERVATION_POLICIES
        )
        await release_finalizer(reconciler.api, res, body, finalizer=FINALIZER, event=warn)

    async def on_policy_timer(body: Any, memo: Any, **_: Any) -> None:
        meta = _meta(body)
        kind = body.get("kind")
        ns = meta.get("namespace") if kind == crds.POLICY_KIND else None
        _reconciler(memo).trigger(("policy", kind, ns, meta.get("name")))

    for _kind, plural in _POLICY_RESOURCES:
        kopf.on.event(group, version, plural, id="stellaops_policy_event", registry=registry)(on_policy)
        kopf.on.delete(group, version, plural, id="stellaops_policy_finalizer", registry=registry)(
            on_policy_delete
        )
        kopf.timer(
            group,
            version,
            plural,
            id="stellaops_policy_rollout",
            interval=config.rollout_refresh_seconds,
            initial_delay=config.rollout_refresh_seconds,
            registry=registry,
        )(on_policy_timer)

    @kopf.on.event(group, version, crds.OBSERVER_PLURAL, id="stellaops_observer_event", registry=registry)
    async def on_observer(type: str | None, body: Any, memo: Any, **_: Any) -> None:
        meta = _meta(body)
        if type == "DELETED":
            _reconciler(memo).observer_deleted(uid=str(meta.get("uid") or ""))
            return
        _reconciler(memo).trigger(("observer", meta.get("name")))

    @kopf.on.event(group, version, crds.NODE_PLURAL, id="stellaops_observation_node_event", registry=registry)
    async def on_observation_node(type: str | None, body: Any, memo: Any, **_: Any) -> None:
        name = str(_meta(body)["name"])
        _reconciler(memo).observation_node_event(name=name, body=None if type == "DELETED" else body)

    @kopf.on.event("v1", "nodes", id="stellaops_node_event", registry=registry)
    async def on_node(type: str | None, body: Any, memo: Any, **_: Any) -> None:
        if type != "DELETED":
            _reconciler(memo).trigger(("node", _meta(body).get("name")))

    @kopf.on.event("v1", "namespaces", id="stellaops_namespace_event", registry=registry)
    async def on_namespace(type: str | None, body: Any, memo: Any, **_: Any) -> None:
        meta = _meta(body)
        labels = None if type == "DELETED" else (meta.get("labels") or {})
        _reconciler(memo).namespace_event(name=str(meta["name"]), labels=labels)
        phase = (body.get("status") or {}).get("phase")
        terminating = type != "DELETED" and (bool(meta.get("deletionTimestamp")) or phase == "Terminating")
        _reconciler(memo).namespace_terminating(name=str(meta["name"]), terminating=terminating)

    @kopf.on.event("v1", "pods", id="stellaops_pod_event", registry=registry)
    async def on_pod(type: str | None, body: Any, memo: Any, **_: Any) -> None:
        meta = _meta(body)
        reconciler = _reconciler(memo)
        if type == "DELETED":
            reconciler.pod_deleted(
                namespace=str(meta.get("namespace")), name=str(meta["name"]), uid=str(meta.get("uid") or "")
            )
            return
        reconciler.trigger(("pod", meta.get("namespace"), meta.get("name")))
        reconciler.trigger_observers()

    async def on_owned(type: str | None, body: Any, memo: Any, **_: Any) -> None:
        """An owned object changed or went: its owner re-renders it (and restores any drift)."""
        meta = _meta(body)
        reconciler = _reconciler(memo)
        owners = [ref for ref in meta.get("ownerReferences") or () if ref.get("kind") in _OWNER_KINDS]
        for ref in owners:
            if ref["kind"] == crds.OBSERVER_KIND:
                reconciler.trigger(("observer", ref.get("name")))
            elif ref["kind"] == crds.POLICY_KIND:
                reconciler.trigger(("policy", crds.POLICY_KIND, meta.get("namespace"), ref.get("name")))
            else:
                reconciler.trigger(("policy", crds.CLUSTER_POLICY_KIND, None, ref.get("name")))
        if body.get("kind") == "DaemonSet" and type != "MODIFIED":  # its pods are agents: posture None
            reconciler.trigger_agent_pods(
                namespace=str(meta.get("namespace") or ""), daemonset=str(meta["name"])
            )
        entry = (meta.get("annotations") or {}).get(POLICY_ANNOTATION)
        if not owners and entry:  # owner references stripped by hand: the annotation still says whose
            owner_kind, _sep, rest = str(entry).partition("/")
            owner_ns, _sep, owner_name = rest.partition("/")
            reconciler.trigger(("policy", owner_kind, owner_ns or None, owner_name))

    for res in OWNED:
        kopf.on.event(*selector(res), id="stellaops_owned_event", labels=managed, registry=registry)(on_owned)

    return registry
