"""A RuntimeObserver is not Ready while one of its running agents has no ObservationNode at all.

``AgentReportsStale`` (test_operator_observer_stale_agent.py) names a node whose agent pod runs
while its ObservationNode report is stale. An agent that could not create its ObservationNode (its
RBAC without ``create`` on observationnodes, an admission policy refusing it, its writer failing
from the start) left nothing to be stale: the fold read the ObservationNodes only, so the observer
was Ready (``AgentsReady``, "2/2 agents ready") and ``NotObservedBacked`` True on the other node's
report, while that node's pods were at posture None and nothing its agent observed was known. Now a
node where a live agent pod of the observer runs and that has no ObservationNode is said as a
stale one is: Progressing, then Degraded once the DaemonSet has said every agent updated and ready
for ``--stale-after-seconds``; Ready once the agent reports.

Through the real operator (kopf) against kmock; reports are the agent's own ``build_status``.
"""

from __future__ import annotations

import asyncio

import pytest

from stellaops_runtime.contracts.crds import API_VERSION, NODE_KIND, OBSERVER_KIND
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.test_operator_observer_backing import NAME, NS, SPEC
from tests.integration.test_operator_observer_rollout import Reports, _agent_pod, rolled_out, state, template
from tests.integration.test_operator_observer_stale_agent import degraded_naming

STALE_AFTER = 3.0


async def test_an_agent_without_an_observation_node_keeps_its_observer_from_ready(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    async with Cluster(tmp_path_factory.mktemp("kube")) as cluster:
        await cluster.create(obj("v1", "Namespace", NS))
        await cluster.create(obj(API_VERSION, NODE_KIND, "node-a", spec={"nodeName": "node-a"}))
        config = fast_config(cluster, stale_after_seconds=STALE_AFTER, rollout_refresh_seconds=0.5)
        agents = Reports(cluster)
        stop = asyncio.Event()
        async with OperatorRun(cluster, config) as op:
            await cluster.create(obj(API_VERSION, OBSERVER_KIND, NAME, spec=SPEC))
            await op.settle()
            wanted = template(cluster)

            async def beat() -> None:
                while not stop.is_set():
                    await agents.beat("node-a", "in_sync", wanted)
                    if cluster.stored(r.OBSERVATION_NODES, "node-b") is not None:
                        await agents.beat("node-b", "in_sync", wanted)
                    await asyncio.sleep(0.5)

            task = asyncio.create_task(beat())
            try:
                for node in ("node-a", "node-b"):  # node-b's agent runs; it has no ObservationNode
                    await cluster.create(_agent_pod(node, wanted))
                await rolled_out(cluster, op)  # the DaemonSet: 2/2 agents updated and ready
                first = await wait_for(
                    lambda: state(cluster)[0] != "Ready" and state(cluster),
                    limit_s=20.0,
                    what="not Ready: node-b's agent has no ObservationNode",
                )
                assert first[:2] == ("Progressing", "AgentReportsStale"), first
                await degraded_naming(
                    cluster, "node-b", "node-a", "Degraded: node-b's agent has no ObservationNode"
                )
                # Its agent makes its ObservationNode and reports: Ready.
                await cluster.create(obj(API_VERSION, NODE_KIND, "node-b", spec={"nodeName": "node-b"}))
                await wait_for(lambda: state(cluster)[:2] == ("Ready", "AgentsReady"), what="Ready")
            finally:
                stop.set()
                await task
