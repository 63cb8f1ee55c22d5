"""An object the operator renders that is being deleted is not applied, and the status says so (kmock).

A Tetragon policy (or an agent ConfigMap) deleted while a finalizer holds it (foreground deletion,
another controller's finalizer, a GitOps prune that waits) stays, with ``deletionTimestamp`` set,
until the finalizer goes, and then it is gone. The operator patched it like any other object and
counted it as applied: the policy stayed ``Ready`` (``RolledOut``) and the RuntimeObserver
``Ready`` (``AgentsReady``) on an object that was about to disappear, so ``kubectl wait``, Argo CD
and Flux read "watched" where Tetragon was about to drop the policy. Now such an object is not
written to and counts as not applied: the owner is Progressing, reason ``WaitingForDeletion``,
naming it, and once it is gone the next reconcile (its DELETED event) creates it again.

Through the real operator (kopf) against kmock; the ObservationNode is written by the test.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.crds import API_VERSION, NODE_KIND, OBSERVER_KIND, POLICY_KIND
from stellaops_runtime.controller.conditions import WAITING_FOR_DELETION
from stellaops_runtime.controller.render_agent import agent_resource_name
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.test_operator_policies import condition

if TYPE_CHECKING:
    from stellaops_runtime.controller.reconcile import Reconciler

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS, NODE, TP, AGENTS = "shop", "node-a", "stellaops-web", "stellaops-agent"
HOLD = {"metadata": {"finalizers": ["test.stellaops.io/hold"]}}
RELEASE = {"metadata": {"finalizers": None}}
TP_PATH = f"/apis/{crds.TETRAGON_API_VERSION}/namespaces/{NS}/{crds.TETRAGON_NAMESPACED_PLURAL}/{TP}"
SPEC: dict[str, Any] = {
    "podSelector": {"matchLabels": {"app": "web"}},
    "maxLevel": "ActiveTracing",
    "syscalls": ["execve"],
}
OBSERVER_SPEC: dict[str, Any] = {
    "agentNamespace": AGENTS,
    "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
    "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
}


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        await c.create(obj("v1", "Namespace", AGENTS))
        await c.create(obj("v1", "Node", NODE))
        await c.create(obj(API_VERSION, NODE_KIND, NODE, spec={"nodeName": NODE}))
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    async with OperatorRun(cluster, fast_config(cluster)) as op:
        await op.settle()
        yield op


async def _report(cluster: Cluster) -> None:
    """The node lists stellaops-web ENABLED, stamped the next whole second (after every write so far)."""
    beat = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    status = {
        "heartbeatTime": _stamp(beat),
        "source": "tetragon",
        "maxPosture": "FullInstrumentation",
        "capabilities": {"tetragon": {"reachable": True, "address": "unix:///t.sock", "version": "v1.7.0"}},
        "policies": [{"name": TP, "namespace": NS, "state": "ENABLED", "error": ""}],
    }
    await cluster.patch(r.OBSERVATION_NODES, NODE, {"status": status}, status=True)
    await wait_for(lambda: datetime.now(UTC) >= beat + timedelta(seconds=1), what="the clock")


def _true(body: dict[str, Any] | None) -> tuple[int, str, str, str]:
    """(observedGeneration, the True condition's type, its reason, its message)."""
    for t in ("Ready", "Progressing", "Degraded", "Stalled"):
        c = condition(body, t)
        if c.get("status") == "True":
            gen = int(((body or {}).get("status") or {}).get("observedGeneration") or 0)
            return gen, t, str(c.get("reason")), str(c.get("message"))
    return 0, "", "", ""


def _policy(cluster: Cluster) -> tuple[int, str, str, str]:
    return _true(cluster.stored(r.OBSERVATION_POLICIES, "web", NS))


def _tp(cluster: Cluster) -> dict[str, Any]:
    return cluster.stored(r.TRACING_POLICIES_NAMESPACED, TP, NS) or {}


async def test_a_tetragon_object_being_deleted_is_not_applied_and_is_made_again_once_gone(
    cluster: Cluster, operator: OperatorRun
) -> None:
    await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace=NS, spec=SPEC))
    await wait_for(lambda: _tp(cluster), what="rendered")
    await operator.settle()
    await _report(cluster)
    await wait_for(lambda: _policy(cluster)[1:3] == ("Ready", "RolledOut"), what="ready")
    first = _tp(cluster)["metadata"]["uid"]

    # Someone deletes it while a finalizer holds it: it stays, deletionTimestamp set.
    await cluster.patch(r.TRACING_POLICIES_NAMESPACED, TP, HOLD, namespace=NS)
    await cluster.delete(r.TRACING_POLICIES_NAMESPACED, TP, namespace=NS)
    assert _tp(cluster)["metadata"].get("deletionTimestamp")
    mark = cluster.mark()
    await operator.settle()
    gen, state, reason, message = _policy(cluster)
    assert (state, reason) == ("Progressing", WAITING_FOR_DELETION), f"{state} {reason}: {message}"
    assert gen == 1 and f"TracingPolicyNamespaced {NS}/{TP} is being deleted" in message
    assert "test.stellaops.io/hold" in message
    assert [w for w in cluster.writes(mark) if w.endswith(TP_PATH)] == []  # not patched while it goes

    # The finalizer goes, the object with it: the operator makes it again; a new object, so the
    # node's report of the old one does not make the policy Ready.
    await cluster.patch(r.TRACING_POLICIES_NAMESPACED, TP, RELEASE, namespace=NS)
    uid = lambda: _tp(cluster).get("metadata", {}).get("uid")  # noqa: E731
    await wait_for(lambda: uid() not in (None, first), what="re-created")
    await operator.settle()
    assert not _tp(cluster)["metadata"].get("deletionTimestamp")
    assert _policy(cluster)[1:3] == ("Progressing", "RollingOut")
    await _report(cluster)
    await wait_for(lambda: _policy(cluster)[1:3] == ("Ready", "RolledOut"), what="ready again")


async def test_an_agent_object_being_deleted_keeps_the_observer_from_ready(
    cluster: Cluster, operator: OperatorRun
) -> None:
    await cluster.create(obj(API_VERSION, OBSERVER_KIND, "fleet", spec=OBSERVER_SPEC))
    name = agent_resource_name("fleet")
    await wait_for(lambda: cluster.stored(r.DAEMONSETS, name, AGENTS), what="the DaemonSet")
    await operator.settle()
    ds = cluster.stored(r.DAEMONSETS, name, AGENTS) or {}
    ready = {
        "observedGeneration": ds["metadata"]["generation"],
        "desiredNumberScheduled": 1,
        "numberReady": 1,
        "updatedNumberScheduled": 1,
        "numberAvailable": 1,
    }
    await cluster.patch(r.DAEMONSETS, name, {"status": ready}, namespace=AGENTS, status=True)
    observer = lambda: _true(cluster.stored(r.RUNTIME_OBSERVERS, "fleet"))  # noqa: E731
    await wait_for(lambda: observer()[1:3] == ("Ready", "AgentsReady"), what="agents ready")
    first = (cluster.stored(r.CONFIGMAPS, name, AGENTS) or {})["metadata"]["uid"]

    await cluster.patch(r.CONFIGMAPS, name, HOLD, namespace=AGENTS)
    await cluster.delete(r.CONFIGMAPS, name, namespace=AGENTS)
    await operator.settle()
    _gen, state, reason, message = observer()
    assert (state, reason) == ("Progressing", WAITING_FOR_DELETION), f"{state} {reason}: {message}"
    assert f"ConfigMap {AGENTS}/{name} is being deleted" in message

    await cluster.patch(r.CONFIGMAPS, name, RELEASE, namespace=AGENTS)
    await wait_for(
        lambda: (
            (cluster.stored(r.CONFIGMAPS, name, AGENTS) or {}).get("metadata", {}).get("uid")
            not in (None, first)
        ),
        what="the ConfigMap made again",
    )
    await wait_for(lambda: observer()[1:3] == ("Ready", "AgentsReady"), what="agents ready again")


@contextlib.asynccontextmanager
async def _reconciled(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Cluster, Reconciler, dict[Any, list[dict[str, Any]]]]]:
    """A new cluster with the ``web`` policy, and a Reconciler (no kopf) bound to indexes holding
    it, its namespace and ``owned`` (the owned objects, empty: the test fills it), which has
    reconciled the policy once: (cluster, reconciler, owned)."""
    from stellaops_runtime.controller.reconcile import (
        INDEX_NAMESPACES,
        INDEX_OWNED,
        INDEX_POLICIES,
        Reconciler,
    )

    async with Cluster(tmp_path_factory.mktemp("kube")) as cluster:
        await cluster.create(obj("v1", "Namespace", NS))
        policy = await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace=NS, spec=SPEC))
        reconciler = Reconciler(kube=cluster.kube)
        owned: dict[Any, list[dict[str, Any]]] = {}
        reconciler.bind(
            {
                INDEX_POLICIES: {(POLICY_KIND, NS, "web"): [policy]},
                INDEX_NAMESPACES: {NS: [{}]},
                INDEX_OWNED: owned,
            }
        )
        await reconciler.reconcile_policy(POLICY_KIND, NS, "web")
        yield cluster, reconciler, owned


async def test_a_remembered_write_does_not_hide_that_the_object_is_being_deleted(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The read-your-writes overlay keeps the operator's last write while the index shows the object
    as it was before it (the part the write changed: uid, labels, annotations, owners, body). A
    deletion changes none of them (``deletionTimestamp``, finalizers and generation are not in that
    part), so an object whose last write changed only what the part leaves out (the applied-fields
    record, patched once after an upgrade) was read through the overlay, without its deletion."""
    from stellaops_runtime.controller.state import obj_key, owned_part

    async with _reconciled(tmp_path_factory) as (cluster, reconciler, owned):
        before = _tp(cluster)
        key = obj_key(before)
        owned[key] = [before]
        reconciler._remember(key, owned_part(before), before)  # a write whose part the index still shows
        await cluster.patch(r.TRACING_POLICIES_NAMESPACED, TP, HOLD, namespace=NS)
        await cluster.delete(r.TRACING_POLICIES_NAMESPACED, TP, namespace=NS)
        owned[key] = [_tp(cluster)]  # kopf indexes it being deleted
        assert owned_part(owned[key][0]) == owned_part(before)
        await reconciler.reconcile_policy(POLICY_KIND, NS, "web")
        _gen, state, reason, message = _policy(cluster)
        assert (state, reason) == ("Progressing", WAITING_FOR_DELETION), f"{state} {reason}: {message}"


async def test_the_pods_are_capped_and_told_the_object_is_being_deleted(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The pods a policy selects get no more than its other objects give while one is being deleted
    (operator.md, Status), and their reason says it is being deleted: it used to say "could not be
    applied", sending the user after an apply error that never happened."""
    from stellaops_runtime.contracts.posture import Posture
    from stellaops_runtime.controller.state import obj_key

    async with _reconciled(tmp_path_factory) as (cluster, reconciler, owned):
        assert reconciler._apply_caps.get((POLICY_KIND, NS, "web")) is None  # applied: nothing capped
        await cluster.patch(r.TRACING_POLICIES_NAMESPACED, TP, HOLD, namespace=NS)
        await cluster.delete(r.TRACING_POLICIES_NAMESPACED, TP, namespace=NS)
        owned[obj_key(_tp(cluster))] = [_tp(cluster)]  # kopf indexes it being deleted
        await reconciler.reconcile_policy(POLICY_KIND, NS, "web")
        cap = reconciler._apply_caps.get((POLICY_KIND, NS, "web"))
        assert cap is not None and cap[0] < Posture.ACTIVE_TRACING, cap
        assert f"{TP} is being deleted" in cap[1] and "could not be applied" not in cap[1], cap[1]


async def test_a_patch_answered_with_the_deletion_is_not_counted_as_applied(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Deleted between kopf's index copy and the operator's patch: the API server applies the patch
    and answers with the object marked deleted. That answer was counted as applied (a status Ready
    on an object about to go, until the deletion's event came)."""
    import copy

    from stellaops_runtime.controller.state import obj_key

    async with _reconciled(tmp_path_factory) as (cluster, reconciler, owned):
        stale = copy.deepcopy(_tp(cluster))
        stale["spec"] = {"kprobes": []}  # a drift the index shows: the operator patches it
        owned[obj_key(stale)] = [stale]  # kopf's copy from before the deletion
        await cluster.patch(r.TRACING_POLICIES_NAMESPACED, TP, HOLD, namespace=NS)
        await cluster.delete(r.TRACING_POLICIES_NAMESPACED, TP, namespace=NS)
        going = _tp(cluster)["metadata"]["resourceVersion"]
        await reconciler.reconcile_policy(POLICY_KIND, NS, "web")
        assert _tp(cluster)["metadata"]["resourceVersion"] != going, "the race: it was patched"
        _gen, state, reason, message = _policy(cluster)
        assert (state, reason) == ("Progressing", WAITING_FOR_DELETION), f"{state} {reason}: {message}"
        cap = reconciler._apply_caps.get((POLICY_KIND, NS, "web"))
        assert cap is not None and "being deleted" in cap[1], cap


async def test_a_namespace_deleted_after_the_object_turns_the_message_at_once(
    cluster: Cluster, operator: OperatorRun
) -> None:
    """The object was already held when its namespace started going: no event of the object
    follows (it is being deleted already), so its owner kept promising it back ("created again")
    until the bound's timer (--stale-after-seconds, 90 s here) or a refresh. The namespace's own
    event now reconciles the owners of objects being deleted in it."""
    agents = "agents-late"
    await cluster.create(obj("v1", "Namespace", agents))
    await cluster.create(
        obj(API_VERSION, OBSERVER_KIND, "late", spec={**OBSERVER_SPEC, "agentNamespace": agents})
    )
    name = agent_resource_name("late")
    await wait_for(lambda: cluster.stored(r.CONFIGMAPS, name, agents), what="the ConfigMap")
    await operator.settle()
    await cluster.patch(r.CONFIGMAPS, name, HOLD, namespace=agents)
    await cluster.delete(r.CONFIGMAPS, name, namespace=agents)
    await operator.settle()
    observer = lambda: _true(cluster.stored(r.RUNTIME_OBSERVERS, "late"))  # noqa: E731
    assert observer()[2] == WAITING_FOR_DELETION and "created again once it is gone" in observer()[3]

    await cluster.patch(r.NAMESPACES, agents, {"status": {"phase": "Terminating"}})
    await wait_for(
        lambda: f"its namespace {agents} is being deleted too" in observer()[3], limit_s=5,
        what="the namespace wording",
    )  # fmt: skip
    assert "created again once it is gone" not in observer()[3]
    await cluster.patch(r.CONFIGMAPS, name, RELEASE, namespace=agents)
