"""A rendered object a finalizer never releases makes its owner Degraded after the bound (kmock).

An object of ours deleted while a finalizer holds it keeps its owner Progressing
``WaitingForDeletion`` (tests/integration/test_owned_terminating.py). A finalizer that never goes
kept it Progressing for ever, so Argo CD and ``kubectl wait`` waited for ever instead of showing
the problem. Now, held for ``--stale-after-seconds`` (the operator's stale bound for nodes), the
owner is ``Degraded``, reason ``WaitingForDeletion``, naming the object and its finalizers. And
where the object's namespace is itself being deleted, the message no longer promises that the
object is created again.

Through the real operator (kopf) against kmock, the bound lowered to one second.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import API_VERSION, NODE_KIND, OBSERVER_KIND, POLICY_KIND
from stellaops_runtime.controller.conditions import WAITING_FOR_DELETION
from stellaops_runtime.controller.render_agent import agent_resource_name
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.test_owned_terminating import HOLD, RELEASE, SPEC, _true

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS, NODE, TP, HOLDER = "shop", "node-a", "stellaops-web", "test.stellaops.io/hold"
BOUND = 1.0  # --stale-after-seconds, lowered


def _observer_spec(namespace: str) -> dict[str, Any]:
    return {
        "agentNamespace": namespace,
        "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
        "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        for ns in (NS, "agents-held", "agents-going"):
            await c.create(obj("v1", "Namespace", ns))
        await c.create(obj("v1", "Node", NODE))
        await c.create(obj(API_VERSION, NODE_KIND, NODE, spec={"nodeName": NODE}))
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    async with OperatorRun(cluster, fast_config(cluster, stale_after_seconds=BOUND)) as op:
        await op.settle()
        yield op


async def test_a_tetragon_object_held_past_the_bound_makes_the_policy_degraded(
    cluster: Cluster, operator: OperatorRun
) -> None:
    await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace=NS, spec=SPEC))
    await wait_for(lambda: cluster.stored(r.TRACING_POLICIES_NAMESPACED, TP, NS), what="rendered")
    await operator.settle()
    tp = lambda: cluster.stored(r.TRACING_POLICIES_NAMESPACED, TP, NS) or {}  # noqa: E731
    first = tp()["metadata"]["uid"]
    await cluster.patch(r.TRACING_POLICIES_NAMESPACED, TP, HOLD, namespace=NS)
    await cluster.delete(r.TRACING_POLICIES_NAMESPACED, TP, namespace=NS)
    policy = lambda: _true(cluster.stored(r.OBSERVATION_POLICIES, "web", NS))  # noqa: E731

    # No event comes while the finalizer stays: the operator looks again at the bound by itself.
    await wait_for(lambda: policy()[1] == "Degraded", limit_s=20, what="the policy Degraded")
    _gen, _state, reason, message = policy()
    assert reason == WAITING_FOR_DELETION, message
    assert f"TracingPolicyNamespaced {NS}/{TP} is being deleted" in message and HOLDER in message
    assert f"held for {BOUND:g}s or more" in message

    # Released: made again, no longer Degraded.
    await cluster.patch(r.TRACING_POLICIES_NAMESPACED, TP, RELEASE, namespace=NS)
    await wait_for(lambda: tp().get("metadata", {}).get("uid") not in (None, first), what="made again")
    await wait_for(lambda: policy()[1] != "Degraded", what="the policy not Degraded once made again")


async def _observer_going(cluster: Cluster, operator: OperatorRun, observer: str, namespace: str) -> str:
    await cluster.create(obj(API_VERSION, OBSERVER_KIND, observer, spec=_observer_spec(namespace)))
    name = agent_resource_name(observer)
    await wait_for(lambda: cluster.stored(r.CONFIGMAPS, name, namespace), what="the agent ConfigMap")
    await operator.settle()
    await cluster.patch(r.CONFIGMAPS, name, HOLD, namespace=namespace)
    return name


async def test_an_agent_object_held_past_the_bound_makes_the_observer_degraded(
    cluster: Cluster, operator: OperatorRun
) -> None:
    name = await _observer_going(cluster, operator, "held", "agents-held")
    await cluster.delete(r.CONFIGMAPS, name, namespace="agents-held")
    observer = lambda: _true(cluster.stored(r.RUNTIME_OBSERVERS, "held"))  # noqa: E731
    await wait_for(lambda: observer()[1] == "Degraded", limit_s=20, what="the observer Degraded")
    _gen, _state, reason, message = observer()
    assert reason == WAITING_FOR_DELETION, message
    assert f"ConfigMap agents-held/{name} is being deleted" in message and HOLDER in message
    assert f"held for {BOUND:g}s or more" in message and "it is created again once it is gone" in message


async def test_an_object_whose_namespace_is_being_deleted_is_not_promised_to_come_back(
    cluster: Cluster, operator: OperatorRun
) -> None:
    name = await _observer_going(cluster, operator, "going", "agents-going")
    await cluster.patch(r.NAMESPACES, "agents-going", {"status": {"phase": "Terminating"}})
    await operator.settle()
    await cluster.delete(r.CONFIGMAPS, name, namespace="agents-going")
    observer = lambda: _true(cluster.stored(r.RUNTIME_OBSERVERS, "going"))  # noqa: E731
    await wait_for(lambda: observer()[2] == WAITING_FOR_DELETION, what="the observer WaitingForDeletion")
    message = observer()[3]
    assert f"ConfigMap agents-going/{name} is being deleted" in message
    assert "its namespace agents-going is being deleted too, so it is not created again" in message, message
    assert "created again once it is gone" not in message
