"""``--exit-when-idle`` counts the time without events from when the agent starts reading.

Its clock started when the agent was built, so the agent's own start-up (the
kernel's symbol table, the spool, the HTTP server: seconds on a loaded
machine) counted as time without an event: an agent whose start-up took longer
than the idle time met its gRPC source not yet connected at the first check and
stopped with "source never reachable" (exit 2) without reading the replay that
was there all along.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.replay.server import ReplayServer
from tests.e2e import harness as h
from tests.ports import free_port

IDLE = 3.0  # longer than gRPC's own first reconnect delay (1 s) after the refused first try
EVENTS = h.stream_events()[:50]


async def test_a_slow_start_up_is_not_idle_time(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start-up takes longer than the idle time; Tetragon answers a moment after it (well within
    the idle time of the agent's reading): the agent reads the replay and exits 0."""
    loop = asyncio.get_running_loop()
    server = ReplayServer(EVENTS)
    addr = f"127.0.0.1:{free_port()}"
    started: list[asyncio.Task] = []
    warm_up = Pipeline.warm_up

    def slow_warm_up(self: Pipeline) -> None:  # a loaded machine's start-up, past the idle time
        time.sleep(IDLE + 1)
        warm_up(self)

        def later() -> None:
            started.append(asyncio.ensure_future(server.start(addr)))

        loop.call_soon_threadsafe(loop.call_later, IDLE / 4, later)

    monkeypatch.setattr(Pipeline, "warm_up", slow_warm_up)
    cfg = parse_config(
        {
            "tetragon": {"address": addr, "reconnectInitialSeconds": 0.05, "reconnectMaxSeconds": 0.1},
            "store": {"url": f"sqlite:///{tmp_path}/hs.db"},
            "metrics": {"address": "127.0.0.1", "port": 0},
            "hotSymbols": {"flushIntervalSeconds": 0.5},
        }
    )
    agent = Agent(cfg, node_name="n1", exit_when_idle=IDLE)
    try:
        code = await asyncio.wait_for(agent.run(), 120)
    finally:
        await server.stop()
    assert not agent.never_connected, "stopped as 'never reachable' before it tried for the idle time"
    assert code == 0
    assert agent.received == len(EVENTS) == server.served
