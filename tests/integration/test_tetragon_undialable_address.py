"""An address the agent's config takes but no gRPC client can dial: unreachable, never a crash.

The config takes any ``unix://...`` and any ``HOST:PORT`` (contracts/config.py
``_tetragon_address``); ``unix://run/x.sock`` (an authority, not a path: grpc dials only
``unix:///path``) and ``[::1:54321`` are such addresses. grpcio made the channel and failed every
call (UNKNOWN or UNAVAILABLE); the agent's own client (stellaops_runtime.rpc) raised ValueError
while making the channel, outside every ``except RpcError``: the capability probe raised, so the
ObservationNode writer's tick was an internal error with no status written (the failure
test_tetragon_garbled_answer.py guards against), the source switch's Tetragon check raised, the
source's health check raised, and the stream's attempts were not counted as connection failures.
Now such a channel fails each call with UNAVAILABLE, as an address nobody listens on does.
"""

from __future__ import annotations

import asyncio

import pytest

from stellaops_runtime import rpc
from stellaops_runtime.agent.capabilities import probe_tetragon
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.lifecycle.containerd_client import ContainerdClient
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_grpc import TetragonGrpcSource
from tests.e2e import harness as h

UNDIALABLE = ["unix://run/tetragon/tetragon.sock", "[::1:54321"]


@pytest.mark.parametrize("address", UNDIALABLE)
async def test_the_probe_says_unreachable(address: str) -> None:
    cfg = parse_config({"tetragon": {"address": address}})  # the agent's config takes it
    info = await probe_tetragon(cfg.tetragon.address, timeout_s=2)
    assert not info.reachable and info.error.startswith("UNAVAILABLE: "), info


@pytest.mark.parametrize("address", UNDIALABLE)
async def test_the_source_counts_connection_failures_and_its_health_is_false(address: str) -> None:
    cfg = parse_config(
        {"tetragon": {"address": address, "connectionTimeout": 0.1, "reconnectInitialSeconds": 0.05}}
    ).tetragon
    source = TetragonGrpcSource(cfg, queue=EventQueue(10))
    healthy, detail = await source.health()
    assert not healthy and detail.startswith("UNAVAILABLE: ")
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    try:
        await h.wait_for(lambda: source.stats.connect_failures >= 2, what="two failed attempts")
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
    assert source.stats.connects == 0 and not source.stats.connected


async def test_a_runtime_client_fails_its_calls_unavailable() -> None:
    client = ContainerdClient("unix://run/containerd/containerd.sock", timeout=2)
    try:
        with pytest.raises(rpc.RpcError) as failed:
            await client.list_containers()
        assert failed.value.code() == rpc.StatusCode.UNAVAILABLE
    finally:
        await client.close()
