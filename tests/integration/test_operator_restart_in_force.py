"""A restarted operator does not lift a pod capped by a refused Tetragon object, even for a moment.

What a policy's applied objects give (``in_force``) is memory of the process that
applied them: a policy whose uprobes object another owner holds (``NotOwned``)
gives its pods at most ActiveTracing. A restarted operator reconciled the pods
before it had applied the policy again, so it wrote the pod EbpfDeep with the
deep label, and back to ActiveTracing a moment later (two pod writes, and a
posture that claimed uprobes nobody ran). Now a pod on a Tetragon node that a
policy not yet applied by this process selects waits for that policy's first
reconcile, which decides it again. Through the real operator against kmock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.crds import API_VERSION, POLICY_KIND
from stellaops_runtime.controller.render_policy import tetragon_policy_names
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.posture_cluster import add_nodes, pod_posture

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS, NODE = "shop", "node-t"
UPROBES = tetragon_policy_names(name="web")[1]
WEB = {
    "podSelector": {"matchLabels": {"app": "web"}},
    "maxLevel": "EbpfDeep",
    "syscalls": ["execve"],
    "functions": [{"binaryPath": "/usr/lib/libssl.so.3", "symbols": ["SSL_read"]}],
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        await add_nodes(c, ((NODE, "tetragon"),))
        yield c


async def test_a_restart_keeps_the_cap(cluster: Cluster) -> None:
    config = fast_config(cluster, stale_after_seconds=3600.0)
    foreign = obj(
        crds.TETRAGON_API_VERSION, crds.TETRAGON_NAMESPACED_KIND, UPROBES, namespace=NS, spec={"kprobes": []}
    )
    await cluster.create(foreign)
    async with OperatorRun(cluster, config):
        await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace=NS, spec=WEB))
        pod = obj("v1", "Pod", "web-1", namespace=NS, labels={"app": "web"},
                  spec={"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}]})  # fmt: skip
        await cluster.create(pod)
        await wait_for(lambda: pod_posture(cluster, "web-1", NS)[0] == "ActiveTracing", what="capped")
    mark = cluster.mark()
    async with OperatorRun(cluster, config):
        loop = asyncio.get_running_loop()
        end = loop.time() + 3.0
        while loop.time() < end:
            pod_writes = [w for w in cluster.writes(mark) if "/pods/" in w]
            assert pod_writes == [], pod_writes
            await asyncio.sleep(0.1)
        assert pod_posture(cluster, "web-1", NS)[0] == "ActiveTracing"
