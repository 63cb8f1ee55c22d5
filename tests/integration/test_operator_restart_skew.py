"""An operator restarted while a node's clock is behind writes nothing: the node is not stale on first sight.

Staleness is timed on the operator's clock from each heartbeat's arrival
(controller/heartbeats.py), but a report seen for the first time (the operator
just started) counted from the earlier of its stamp and now: a node whose clock
is ten minutes behind read as stale until its next heartbeat, so a restarted
operator wrote its Node's labels (``max-posture`` None) and its RuntimeObserver's
node counts out, and back at the next heartbeat. The operator's last judgement
is on the Node (its ``source`` and ``max-posture`` labels): judged fresh, the
first sight counts from now. Likewise since when a node's agent cannot reach
Tetragon, found already so at the start: a stamp a day behind made its
policies Degraded at once; it is timed by the agent's own account (heartbeat
minus transition, one clock). Through the real operator (kopf) against kmock;
the reports are the agent's own ``build_status`` or its real writer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.agent import node_status
from stellaops_runtime.contracts.crds import API_VERSION, FEATURE_LABEL_PREFIX, NODE_KIND, POLICY_KIND
from stellaops_runtime.kube import resources as r
from tests.integration import test_operator_clock_skew as skewed
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.test_operator_observer_backing import NAME, NS
from tests.integration.test_operator_observer_grace import Agent, _ready_fleet
from tests.integration.test_operator_policies import condition

pytestmark = pytest.mark.asyncio(loop_scope="module")

NODES = ("node-a", "node-b")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        await c.create(obj("v1", "Namespace", skewed.NS))
        await c.create(obj("v1", "Node", skewed.NODE))
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


async def test_tetragon_unreachable_found_at_the_start_by_a_clock_behind_is_not_degraded_at_once(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent (a day behind) cannot reach Tetragon: the policy is Progressing, not Degraded, for an
    operator that finds it so at its start, and for one restarted then."""
    monkeypatch.setattr(node_status, "datetime", skewed._Skewed)
    behind = -timedelta(days=1)
    monkeypatch.setattr(
        node_status, "now_rfc3339", lambda: (datetime.now(UTC) + behind).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    config = fast_config(
        cluster, stale_after_seconds=60.0, tetragon_unreachable_seconds=600.0, rollout_refresh_seconds=0.5
    )

    def state() -> tuple[str, str]:
        pol = cluster.stored(r.OBSERVATION_POLICIES, "web", skewed.NS) or {}
        true = next(
            (t for t in ("Ready", "Progressing", "Degraded") if condition(pol, t).get("status") == "True"), ""
        )
        return true, str(condition(pol, true).get("reason", "")) if true else ""

    async with skewed._agent(cluster, "127.0.0.1:1", behind):  # nothing listens there
        mark = cluster.mark()
        await wait_for(lambda: cluster.writes(mark), what="the agent's first report")
        async with OperatorRun(cluster, config) as op:
            await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace=skewed.NS, spec=skewed.SPEC))
            await wait_for(lambda: state()[0] == "Progressing", what="the policy waiting on the node")
            await op.settle()
            assert state()[0] == "Progressing", state()
        async with OperatorRun(cluster, config) as op:
            await op.settle()
            await wait_for(lambda: state()[0] == "Progressing", what="the policy still waiting")
            assert "Degraded" not in {state()[0]}


async def test_labels_of_an_operator_that_keeps_restarting_do_not_keep_a_long_dead_node_fresh(
    cluster: Cluster,
) -> None:
    """An operator restarted within ``--stale-after-seconds`` each time (a crash loop) never judges a
    dead node stale, so its Node's labels keep saying "judged fresh", and the first sight counted
    from now at every start: the dead node's posture ceiling stayed raised for ever. Labels vouch
    only for a report stamped within the hour (``LABELS_TRUSTED_SECONDS``): one stamped two hours ago
    is judged by its stamp (stale at once), one ten minutes behind still counts from now."""
    dead_node, live_node = "node-c", "node-d"
    for n in (dead_node, live_node):
        await cluster.create(obj("v1", "Node", n))
        await cluster.create(obj(API_VERSION, NODE_KIND, n, spec={"nodeName": n}))
    config = fast_config(cluster, stale_after_seconds=3600.0)
    dead, behind = Agent(cluster, dead_node), Agent(cluster, live_node, -timedelta(minutes=10))
    async with OperatorRun(cluster, config) as op:
        await _ready_fleet(cluster, op)

        async def judged() -> bool:
            if all(_ceiling(cluster, n) not in (None, "None") for n in (dead_node, live_node)):
                return True
            await dead.beat("in_sync")
            await behind.beat("in_sync")
            return False

        await wait_for(judged, interval=0.5, what="both nodes judged fresh")
        await op.settle()
    # node-c's agent wrote its last report two hours ago (its clock right); no operator lived
    # long enough since to judge it stale: its labels still say fresh
    await dead.beat("in_sync", at=datetime.now(UTC) - timedelta(hours=2))
    await behind.beat("in_sync")
    assert _ceiling(cluster, dead_node) not in (None, "None")
    async with OperatorRun(cluster, config) as op:
        await op.settle()
        await wait_for(lambda: _ceiling(cluster, dead_node) == "None", limit_s=30.0, what="node-c stale")
        assert _ceiling(cluster, live_node) not in (None, "None")
