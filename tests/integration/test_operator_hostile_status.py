"""Statuses of the wrong type (an API server without our CRD schemas, a hand edit) say nothing, crash nothing.

The operator reads statuses it does not write, the ObservationNodes the
agents write, and its own earlier status of each custom resource. The CRD
schemas make ``status`` an object, but ``stella-runtime operator`` may run
against an API server that does not check (docs/operator.md, Validation).
A status that is a string, a number or a list used to raise
AttributeError in the pod, node, observer and ObservationNode-event code:
every pod on that node, and the RuntimeObserver (which renders the agents'
probe ConfigMap), failed on every retry, and nothing said why.

Here, through the real operator against kmock (no schema): an
ObservationNode whose ``status`` is a string counts as a node that reports
nothing (stale, ceiling None), and nothing fails. And a RuntimeObserver
whose ``spec`` is not an object (Stalled, InvalidSpec) used to make every
policy's delete handler raise the same AttributeError (it looks up the
observer's probe ConfigMap by ``spec.agentNamespace``): policies could not
be deleted, retried every 60 s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import (
    API_VERSION,
    NODE_KIND,
    OBSERVER_KIND,
    POLICY_KIND,
    POSTURE_ANNOTATION,
)
from stellaops_runtime.controller.posture import node_capabilities
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, OperatorRun, obj, wait_for
from tests.integration.test_operator_policies import condition

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS, AGENT_NS, NODE = "shop", "stellaops-agent", "node-h"
OBSERVER = {
    "agentNamespace": AGENT_NS,
    "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
    "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
}
POLICY = {"podSelector": {"matchLabels": {"app": "web"}}, "maxLevel": "ActiveTracing", "syscalls": ["execve"]}


@pytest.mark.parametrize("status", ["garbage", 7, True, ["x"]])
async def test_a_node_status_of_the_wrong_type_reports_nothing(status: Any) -> None:
    caps = node_capabilities({"metadata": {"name": NODE}, "status": status})
    assert caps is not None and not caps.tetragon_reachable and not caps.uprobes
    assert caps.ceiling()[0].value == "None"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        for ns in (NS, AGENT_NS):
            await c.create(obj("v1", "Namespace", ns))
        await c.create(obj("v1", "Node", NODE))
        # kmock has no schema: the status subresource takes a string as it is.
        await c.create(obj(API_VERSION, NODE_KIND, NODE, spec={"nodeName": NODE}))
        await c.patch(r.OBSERVATION_NODES, NODE, {"status": "garbage"}, status=True)
        await c.create(
            obj(
                "v1",
                "Pod",
                "web-1",
                namespace=NS,
                labels={"app": "web"},
                spec={"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}]},
            )
        )
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    async with OperatorRun(cluster) as op:
        yield op


async def test_the_operator_works_around_statuses_of_the_wrong_type(
    cluster: Cluster, operator: OperatorRun, caplog: pytest.LogCaptureFixture
) -> None:
    assert (cluster.stored(r.OBSERVATION_NODES, NODE) or {}).get("status") == "garbage"
    await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace=NS, spec=POLICY))
    await cluster.create(obj(API_VERSION, OBSERVER_KIND, "fleet", spec=OBSERVER))

    def posture() -> str:
        meta = (cluster.stored(r.PODS, "web-1", NS) or {}).get("metadata") or {}
        return str((meta.get("annotations") or {}).get(POSTURE_ANNOTATION) or "")

    await wait_for(lambda: posture() == "None", what="the pod's posture (its node reports nothing)")
    await wait_for(
        lambda: ((cluster.stored(r.RUNTIME_OBSERVERS, "fleet") or {}).get("status") or {}).get("nodes"),
        what="the observer's status",
    )
    nodes = (cluster.stored(r.RUNTIME_OBSERVERS, "fleet") or {})["status"]["nodes"]
    assert (nodes["total"], nodes["stale"]) == (1, 1)
    await wait_for(
        lambda: condition(cluster.stored(r.OBSERVATION_POLICIES, "web", NS), "Ready"), what="status"
    )
    await operator.settle()
    rollout = (cluster.stored(r.OBSERVATION_POLICIES, "web", NS) or {})["status"]["rollout"]
    assert (rollout["nodesTotal"], rollout["nodesStale"], rollout["nodesRunning"]) == (1, 1, 0)
    failed = [rec.getMessage() for rec in caplog.records if "failed (attempt" in rec.getMessage()]
    assert failed == []


async def test_an_observer_whose_spec_is_not_an_object_holds_no_policy_deletion(
    cluster: Cluster, operator: OperatorRun
) -> None:
    await cluster.create(obj(API_VERSION, OBSERVER_KIND, "weird", spec="garbage"))
    await wait_for(
        lambda: (
            condition(cluster.stored(r.RUNTIME_OBSERVERS, "weird"), "Stalled").get("reason") == "InvalidSpec"
        ),
        what="the observer stalled",
    )
    await cluster.create(obj(API_VERSION, POLICY_KIND, "short-lived", namespace=NS, spec=POLICY))
    await wait_for(
        lambda: condition(cluster.stored(r.OBSERVATION_POLICIES, "short-lived", NS), "Ready"), what="status"
    )
    await cluster.delete(r.OBSERVATION_POLICIES, "short-lived", namespace=NS)
    await wait_for(
        lambda: cluster.stored(r.OBSERVATION_POLICIES, "short-lived", NS) is None,
        limit_s=60,
        what="the policy released",
    )
