"""A restarted operator does not flap a node with no working source stale and back.

A restarted operator reads its predecessor's judgement of each node from the
Node's ``feature.stellaops.io/source`` and ``max-posture`` labels. For a node
whose agent has no working source (Tetragon down) those read ``none``/``None``
whether the node was judged fresh or stale, so they could not tell: its first
report was judged by its stamp, and a node clock behind made it stale until the
next heartbeat. The policy's rollout (``nodesStale`` 1, then the node pending
again) and its conditions were written out and back by every restart. The
``feature.stellaops.io/heartbeat`` label now records the judgement itself.
Through the real operator (kopf) against kmock; the report is the agent's own
``build_status``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.agent.capabilities import TetragonInfo
from stellaops_runtime.agent.node_status import build_status
from stellaops_runtime.contracts.crds import API_VERSION, FEATURE_LABEL_PREFIX, NODE_KIND, POLICY_KIND
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.test_operator_clock_skew import SPEC
from tests.integration.test_operator_observer_backing import CAPS

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS, NODE = "shop", "node-quiet"
DOWN = TetragonInfo(
    address="unix:///var/run/tetragon/tetragon.sock", reachable=False, error="connection refused"
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        await c.create(obj("v1", "Node", NODE))
        await c.create(obj(API_VERSION, NODE_KIND, NODE, spec={"nodeName": NODE}))
        yield c


class QuietAgent:
    """The node's agent, its clock ten minutes behind, with Tetragon down: source none."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster, self.conditions, self.last = cluster, None, None
        self.skew = -timedelta(minutes=10)

    async def beat(self) -> None:
        now = datetime.now(UTC) + self.skew
        if self.last is not None and now <= self.last:
            now = self.last + timedelta(seconds=1)  # a new heartbeatTime text: a new report
        self.last = now
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        st: dict[str, Any] = build_status(
            capabilities=CAPS, tetragon=DOWN, policies=None, existing_conditions=self.conditions, now=stamp
        )
        assert st["source"] == "none"
        self.conditions = st["conditions"]
        await self.cluster.patch(
            r.OBSERVATION_NODES, NODE, {"status": st | {"heartbeatTime": stamp}}, status=True
        )


def _rollout(cluster: Cluster) -> dict[str, Any]:
    body = cluster.stored(r.OBSERVATION_POLICIES, "web", NS) or {}
    return (body.get("status") or {}).get("rollout") or {}


def _labels(cluster: Cluster) -> dict[str, str]:
    meta = (cluster.stored(r.NODES, NODE) or {}).get("metadata") or {}
    return {k: v for k, v in (meta.get("labels") or {}).items() if k.startswith(FEATURE_LABEL_PREFIX)}


async def test_a_restart_does_not_judge_a_sourceless_node_stale_and_back(cluster: Cluster) -> None:
    config = fast_config(cluster, stale_after_seconds=60.0, tetragon_unreachable_seconds=3600.0)
    agent = QuietAgent(cluster)
    async with OperatorRun(cluster, config) as op:
        await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace=NS, spec=SPEC))

        async def fresh() -> bool:
            """The first report seen is stamped ten minutes ago: stale until the next one."""
            if _rollout(cluster).get("nodesPending") == 1 and _labels(cluster):
                return True
            await agent.beat()
            return False

        await wait_for(fresh, interval=0.5, what="the node judged fresh (pending: Tetragon down)")
        await op.settle()
        before = _rollout(cluster), _labels(cluster)
    mark = cluster.mark()
    async with OperatorRun(cluster, config) as op:
        await op.settle()
        assert cluster.writes(mark) == [], (_rollout(cluster), _labels(cluster))
        await agent.beat()  # a heartbeat only
        await op.settle()
        assert cluster.writes(mark) == []
        assert (_rollout(cluster), _labels(cluster)) == before
