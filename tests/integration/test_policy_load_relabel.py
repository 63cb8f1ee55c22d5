"""The pods' relabel after every change of the posture ceiling the agent writes is a gap.

The operator labels pods from the ceiling in the node's ObservationNode: the
agent writes ``maxPosture`` None while its Tetragon stream is down (and Passive
while Tetragon's API does not answer), the operator takes the pods' level
labels away, and gives them back after the agent writes the ceiling again;
Tetragon's policy filter follows its own pod cache later still, while
ListTracingPolicies lists our policies ENABLED all along. So the real writer
(against the emulated API server, Tetragon played by the replay server) must
hold the policy-load span open after each such write, not only after the
agent's first connection (agent/policy_load_gaps.py).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from stellaops_runtime.agent.node_status import ObservationNodeWriter
from stellaops_runtime.agent.policy_load_gaps import EXPECT_SECONDS, PolicyLoadWatch
from stellaops_runtime.contracts.config import ObservationNodeConfig, TetragonConfig
from stellaops_runtime.kube import resources as r
from stellaops_runtime.replay.server import PolicyStatus, ReplayServer
from tests.integration.kubeharness import Cluster, obj

NODE = "node-relabel"
ENABLED = [{"name": "stellaops-web", "namespace": "shop", "state": "ENABLED"}]


@dataclass
class Stream:
    """The agent's event source as the writer sees it."""

    connected: bool = True
    connects: int = 1


@pytest.mark.asyncio
async def test_a_reconnection_after_a_lowered_ceiling_is_held_while_the_pods_are_relabelled(
    tmp_path: Path,
) -> None:
    tetragon = ReplayServer(
        [], policies=[PolicyStatus(name="stellaops-web", namespace="shop", state="ENABLED")], version="v1.7.0"
    )
    address = await tetragon.start("127.0.0.1:0")
    stream = Stream()
    try:
        (tmp_path / "kube").mkdir()
        async with Cluster(tmp_path / "kube") as cluster:
            await cluster.create(obj("v1", "Node", NODE))
            w = ObservationNodeWriter(
                node_name=NODE,
                config=ObservationNodeConfig(
                    enabled=True, heartbeatSeconds=3600, kubeconfig=str(cluster.kubeconfig)
                ),
                tetragon=TetragonConfig(address=address, timeoutSeconds=1),
                stream=stream,
                poll_seconds=0.05,
            )
            watch = w.policy_watch = PolicyLoadWatch(start_ns=time.time_ns())
            try:
                assert await w.tick()  # the first report: the ceiling Tetragon gives
                first_done = time.time_ns()
                ceiling = cluster.stored(r.OBSERVATION_NODES, NODE)["status"]["maxPosture"]
                assert ceiling != "None", ceiling
                stream.connected = False
                assert await w.tick()  # the stream is down: the operator takes the labels away
                assert cluster.stored(r.OBSERVATION_NODES, NODE)["status"]["maxPosture"] == "None"
                stream.connected, stream.connects = True, 2
                assert await w.tick()  # back: the labels are given back after this write
                written = time.time_ns()
                assert cluster.stored(r.OBSERVATION_NODES, NODE)["status"]["maxPosture"] == ceiling
            finally:
                await w.run(_stopped())
    finally:
        await tetragon.stop(grace=0)
    hold = int(EXPECT_SECONDS * 1e9)
    # Past the first connection's hold, the relabel after the reconnection's write still holds...
    watch.observe(ENABLED, now_ns=first_done + hold + 1, connected=True, connects=2)
    assert watch.open
    # ... for its own length, no longer.
    watch.observe(ENABLED, now_ns=written + hold + 1, connected=True, connects=2)
    assert not watch.open


def _stopped() -> asyncio.Event:
    e = asyncio.Event()
    e.set()
    return e
