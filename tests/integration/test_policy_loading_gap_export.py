"""An agent reading Tetragon's JSON export file marks policy-load gaps too: it polls Tetragon's API.

The export file carries no policy state, but the agent's ObservationNode writer
polls ListTracingPolicies at ``tetragon.address`` all the same, and the export
source reports outages (``take_outage``), so the policy watch
(agent/policy_load_gaps.py) is wired as for the gRPC stream; the file's opening
counts as the stream's connection. Where the API does not answer (the reason
some nodes use the export file) the agent cannot know whether our policies are
loaded: the gap opened at the file's opening stays open, so no day of the node
reads watched, and ``stellaops_runtime_policy_load_gap_open_seconds`` shows it.
The real agent runs in this process, following a real export file, against the
replay server (policy states only, started late) and the emulated API server.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.replay.server import ReplayServer
from tests.integration.kubeharness import Cluster, obj, wait_for
from tests.integration.test_policy_loading_gap import NODE, _sample, loaded, polled


@pytest.mark.asyncio
async def test_an_export_agent_is_in_a_gap_until_tetragon_lists_our_policy_loaded(tmp_path: Path) -> None:
    address = f"unix://{tmp_path}/tetragon.sock"  # nobody answers there yet
    tetragon = ReplayServer([], policies=[loaded("LOADING")], version="v1.7.0")
    export = tmp_path / "tetragon.log"
    export.write_bytes(b"")
    (tmp_path / "kube").mkdir()
    try:
        async with Cluster(tmp_path / "kube") as cluster:
            await cluster.create(obj("v1", "Node", NODE))
            config = parse_config(
                {
                    "nodeName": NODE,
                    "tetragon": {"address": address, "connectionTimeout": 0.5, "exportFile": str(export)},
                    "store": {
                        "url": f"sqlite:///{tmp_path / 'hot.db'}",
                        "spoolPath": str(tmp_path / "spool"),
                    },
                    "hotSymbols": {"flushIntervalSeconds": 3600},
                    "metrics": {"address": "127.0.0.1", "port": 0},
                    "observationNode": {
                        "enabled": True,
                        "heartbeatSeconds": 3600,
                        "kubeconfig": str(cluster.kubeconfig),
                    },
                }
            )
            started = time.time_ns()
            agent = Agent(config)
            assert agent.node_status is not None
            writer = agent.node_status
            writer.poll_seconds = 0.05
            ticks = [0]
            tick = writer.tick

            async def counted() -> bool:
                out = await tick()
                ticks[0] += 1
                return out

            writer.tick = counted  # type: ignore[method-assign]
            task = asyncio.create_task(agent.run())
            try:
                await wait_for(lambda: agent.store is not None and agent.source_stats.connected, what="file")
                await polled(ticks, "polls Tetragon's API did not answer")
                assert _sample(agent, "stellaops_runtime_policy_load_gap_open_seconds") > 0
                await tetragon.start(address)
                await polled(ticks, "a poll that listed the policy LOADING")
                assert _sample(agent, "stellaops_runtime_policy_load_gap_open_seconds") > 0
                tetragon.policies = [loaded("ENABLED")]
                enabled_at = time.time_ns()
                await polled(ticks, "a poll that listed the policy ENABLED")
                # still open: the agent's first connection is held while the pods may be relabelled
                assert _sample(agent, "stellaops_runtime_policy_load_gap_open_seconds") > 0
                await agent.outages.mark()  # the gaps so far (drained here: not stored), before the shutdown
                _, windows = await agent.in_pipeline(agent.pipeline.drain)
            finally:
                agent.stop("test")
                assert await asyncio.wait_for(task, 30) == 0
    finally:
        await tetragon.stop(grace=0)
    gaps = sorted((w.gap_start_ns, w.gap_end_ns) for w in windows if w.gap_end_ns and w.image_digest == "")
    assert gaps and gaps[0][0] <= started + 5 * 10**9, (started, gaps)
    at = gaps[0][0]  # one unbroken gap from the file's opening to the poll that saw the policy loaded
    for a, b in gaps:
        if a <= at:
            at = max(at, b)
    assert at >= enabled_at, (enabled_at, gaps)
