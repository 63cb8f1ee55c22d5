"""A RuntimeObserver is not Ready while a running agent's reports have stopped.

The observer read Ready (``AgentsReady``) from its DaemonSet's count of ready
agent pods and folded ``NotObservedBacked`` over the fresh ObservationNodes
only: an agent whose pod runs and answers its probes but whose reports stopped
(its status patches refused, as the 422s of earlier releases did, its API
access taken away, its writer hung) left its node stale, its pods at posture
None, and the observer Ready for as long as it lasted. Now a node where a live
agent pod of the observer runs and whose report is stale is said in
``NotObservedBacked`` (False, ``AgentReportsStale``): Progressing at first,
Degraded once it has lasted ``--stale-after-seconds`` after the DaemonSet said
every agent updated and ready; Ready again once the agent reports.

Through the real operator (kopf) against kmock; reports are the agent's own
``build_status``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import API_VERSION, NODE_KIND, OBSERVER_KIND
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.test_operator_observer_backing import NAME, NS, SPEC, observer
from tests.integration.test_operator_observer_rollout import Reports, _agent_pod, rolled_out, state, template
from tests.integration.test_operator_policies import condition

pytestmark = pytest.mark.asyncio(loop_scope="module")

NODES = ("node-a", "node-b")
STALE_AFTER = 3.0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        for node in NODES:
            await c.create(obj(API_VERSION, NODE_KIND, node, spec={"nodeName": node}))
        yield c


async def degraded_naming(cluster: Cluster, stale: str, fresh: str, what: str) -> None:
    """The observer goes Degraded for ``AgentReportsStale``, its ``NotObservedBacked`` False for it,
    naming the ``stale`` node and not the ``fresh`` one."""
    got = await wait_for(lambda: state(cluster)[0] == "Degraded" and state(cluster), limit_s=40.0, what=what)
    assert got[1:] == ("AgentReportsStale", "False", "AgentReportsStale")
    message = condition(observer(cluster), "NotObservedBacked")["message"]
    assert stale in message and fresh not in message


async def test_an_agent_whose_reports_stopped_keeps_its_observer_from_ready(cluster: Cluster) -> None:
    config = fast_config(cluster, stale_after_seconds=STALE_AFTER, rollout_refresh_seconds=0.5)
    agents = Reports(cluster)
    async with OperatorRun(cluster, config) as op:
        await cluster.create(obj(API_VERSION, OBSERVER_KIND, NAME, spec=SPEC))
        await op.settle()
        wanted = template(cluster)
        for node in NODES:
            await cluster.create(_agent_pod(node, wanted))
        await rolled_out(cluster, op)
        beating = set(NODES)

        async def beat() -> None:
            while True:
                for node in sorted(beating):
                    await agents.beat(node, "in_sync", wanted)
                await asyncio.sleep(0.5)

        task = asyncio.create_task(beat())
        try:
            await wait_for(lambda: state(cluster)[:2] == ("Ready", "AgentsReady"), what="Ready")
            beating.discard("node-a")  # its agent pod runs on; its reports stop
            await degraded_naming(cluster, "node-a", "node-b", "Degraded: node-a's agent reports nothing")
            beating.add("node-a")  # it reports again
            await wait_for(lambda: state(cluster)[:2] == ("Ready", "AgentsReady"), what="Ready again")
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_an_agent_that_never_reported_is_degraded_and_stays_so_across_a_restart(
    cluster: Cluster,
) -> None:
    """node-c's agent made its ObservationNode but every status write was refused (no heartbeat at
    all): Degraded once that has lasted, timed from the object's creation, so a restarted operator
    writes nothing (it does not time the silence anew and turn Progressing first)."""
    config = fast_config(cluster, stale_after_seconds=STALE_AFTER, rollout_refresh_seconds=0.5)
    agents = Reports(cluster)
    await cluster.create(obj(API_VERSION, NODE_KIND, "node-c", spec={"nodeName": "node-c"}))
    stop = asyncio.Event()

    async def beat() -> None:
        while not stop.is_set():
            for node in NODES:
                await agents.beat(node, "in_sync", template(cluster))
            await asyncio.sleep(0.5)

    task = asyncio.create_task(beat())
    try:
        async with OperatorRun(cluster, config) as op:
            await op.settle()
            await cluster.create(_agent_pod("node-c", template(cluster)))
            await wait_for(
                lambda: (
                    state(cluster)[:2] == ("Degraded", "AgentReportsStale")
                    and "node-c" in condition(observer(cluster), "NotObservedBacked")["message"]
                ),
                limit_s=40.0,
                what="Degraded: node-c's agent never reported",
            )
        mark = cluster.mark()
        async with OperatorRun(cluster, config):
            loop = asyncio.get_running_loop()
            end = loop.time() + 3.0
            while loop.time() < end:
                writes = [w for w in cluster.writes(mark) if "runtimeobservers" in w]
                assert writes == [], (writes, state(cluster))
                await asyncio.sleep(0.1)
        assert state(cluster)[:2] == ("Degraded", "AgentReportsStale")
    finally:
        stop.set()
        await task
