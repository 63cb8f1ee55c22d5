"""bench/agent_idle_breakdown.py's floor: asyncio and the agent's own gRPC client, the stream open.

Issue 13's idle goal is read against this floor (docs/benchmarks.md): what no agent code can go
below. Since the agent's gRPC clients are stellaops_runtime.rpc's, the floor is an interpreter
with asyncio and rpc holding Tetragon's GetEvents stream open with the source's channel options;
one that still imported grpcio would measure the agent's old floor (~12 MB more). Here the floor
runs against a real replay server: its stream is opened and served, and no grpcio module loads.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType

from stellaops_runtime.replay.server import ReplayServer
from stellaops_runtime.sources.tetragon_channel import channel_options
from tests.e2e import harness as h

BENCH = Path(__file__).resolve().parents[2] / "bench" / "agent_idle_breakdown.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("agent_idle_breakdown", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_floor_asks_with_the_sources_channel_options() -> None:
    code = _bench().floor_code()
    assert f"OPTIONS = {channel_options()!r}" in code
    assert "import grpc" not in code and "from stellaops_runtime import rpc" in code  # the agent's own client


async def test_the_floor_holds_the_stream_open_without_grpcio() -> None:
    bench = _bench()
    server = ReplayServer(h.stream_events()[:20])
    address = await server.start("127.0.0.1:0")
    try:
        out = await asyncio.to_thread(bench.floor, address, 4)
    finally:
        await server.stop(grace=0)
    assert server.streams_opened == 1 and server.served >= 1  # the floor's stream, served
    assert out["grpc_modules"] == []
    assert out["rss_mb"] > 0 and out["status"]["VmRSS"] > 0
