"""The rpc client against the project's real replay server (the CLI), over a unix socket and TCP.

The agent reads Tetragon's GetEvents through stellaops_runtime.rpc: every event the server sends
must arrive, byte for byte what grpc.aio reads from the same server.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from stellaops_runtime import rpc

REPO = Path(__file__).resolve().parents[2]
STREAM_A = REPO / "tests" / "fixtures" / "tetragon" / "synthetic" / "stream-a.jsonl.gz"
STREAM_A_EVENTS = 3144
GET_EVENTS = "/tetragon.FineGuidanceSensors/GetEvents"
LIST_POLICIES = "/tetragon.FineGuidanceSensors/ListTracingPolicies"
CLI = [sys.executable, "-c", "import sys; from stellaops_runtime.cli.main import main; sys.exit(main())"]

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module", params=["unix", "tcp"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    listen = "127.0.0.1:0"
    if request.param == "unix":
        listen = f"unix://{tmp_path_factory.mktemp('rpc')}/tetragon.sock"
    proc = subprocess.Popen(
        [*CLI, "tetragon-replay", str(STREAM_A), "--listen", listen, "--policy", "p1=ERROR:boom"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), line
        address = line.split()[-1]
        yield address if request.param == "tcp" else listen
    finally:
        proc.terminate()
        proc.wait(15)


async def _grpc_events(target: str) -> list[bytes]:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_stream(GET_EVENTS)(b"")
        got = [await call.read() for _ in range(STREAM_A_EVENTS)]
        with pytest.raises(TimeoutError):  # the stream stays open, like Tetragon's: nothing more
            await asyncio.wait_for(call.read(), 0.2)
        call.cancel()
        return got


async def _rpc_events(target: str) -> list[bytes]:
    async with rpc.insecure_channel(target) as channel:
        call = channel.unary_stream(GET_EVENTS)(b"")
        got = [await anext(call) for _ in range(STREAM_A_EVENTS)]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(call), 0.2)
        assert call.cancel() is True
        with pytest.raises(asyncio.CancelledError):
            await anext(call)
        return got


async def test_every_event_arrives_byte_identical_to_grpc_aio(target: str) -> None:
    theirs = await _grpc_events(target)
    ours = await _rpc_events(target)
    assert len(ours) == STREAM_A_EVENTS and all(ours)
    assert ours == theirs


async def test_a_unary_call_to_the_replay_server(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        theirs = await channel.unary_unary(LIST_POLICIES)(b"", timeout=10)
    async with rpc.insecure_channel(target) as channel:
        await asyncio.wait_for(channel.channel_ready(), 10)
        ours = await channel.unary_unary(LIST_POLICIES)(b"", timeout=10)
    assert b"boom" in ours and ours == theirs
