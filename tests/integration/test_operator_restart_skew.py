"""An operator restarted while a node's clock is behind writes nothing: the node is not stale on first sight.

Staleness is timed on the operator's clock from each heartbeat's arrival
(controller/heartbeats.py), but a report seen for the first time (the operator
just started) counted from the earlier of its stamp and now: a node whose clock
is ten minutes behind read as stale until its next heartbeat, so a restarted
operator wrote its Node's labels (``max-posture`` None) and its RuntimeObserver's
node counts out, and back at the next heartbeat. The operator's last judgement
is on the Node (its ``source`` and ``max-posture`` labels): judged fresh, the
first sight counts from now. Through the real operator (kopf) against kmock;
the reports are the agent's own ``build_status``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import API_VERSION, FEATURE_LABEL_PREFIX, NODE_KIND
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.test_operator_observer_backing import NAME, NS
from tests.integration.test_operator_observer_grace import Agent, _ready_fleet

pytestmark = pytest.mark.asyncio(loop_scope="module")

NODES = ("node-a", "node-b")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        for node in NODES:
            await c.create(obj("v1", "Node", node))
            await c.create(obj(API_VERSION, NODE_KIND, node, spec={"nodeName": node}))
        yield c


def _ceiling(cluster: Cluster, node: str) -> Any:
    labels = ((cluster.stored(r.NODES, node) or {}).get("metadata") or {}).get("labels") or {}
    return labels.get(FEATURE_LABEL_PREFIX + "max-posture")


def _nodes(cluster: Cluster) -> dict[str, Any]:
    return ((cluster.stored(r.RUNTIME_OBSERVERS, NAME) or {}).get("status") or {}).get("nodes") or {}


async def test_a_restarted_operator_does_not_read_a_node_clock_behind_as_stale(cluster: Cluster) -> None:
    config = fast_config(cluster, stale_after_seconds=60.0)
    behind, right = Agent(cluster, "node-a", -timedelta(minutes=10)), Agent(cluster, "node-b")
    async with OperatorRun(cluster, config) as op:
        await _ready_fleet(cluster, op)
        await right.beat("in_sync")

        async def counted() -> bool:
            """node-a's first report seen is stamped ten minutes ago: stale until the next one."""
            if _ceiling(cluster, "node-a") not in (None, "None") and _nodes(cluster).get("stale") == 0:
                return True
            await behind.beat("in_sync")
            return False

        await wait_for(counted, interval=0.5, what="node-a fresh")
        assert _nodes(cluster)["total"] == 2
        await op.settle()
        before = {n: cluster.stored(r.NODES, n) for n in NODES}, cluster.stored(r.RUNTIME_OBSERVERS, NAME)
    mark = cluster.mark()
    async with OperatorRun(cluster, config) as op:
        await op.settle()
        assert cluster.writes(mark) == [], (_ceiling(cluster, "node-a"), _nodes(cluster))
        await behind.beat("in_sync")  # heartbeats only
        await right.beat("in_sync")
        await op.settle()
        assert cluster.writes(mark) == []
        after = {n: cluster.stored(r.NODES, n) for n in NODES}, cluster.stored(r.RUNTIME_OBSERVERS, NAME)
        assert after == before
