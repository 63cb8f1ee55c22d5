"""An outage's gap reaches back over the events Tetragon still held for the stream when it broke.

Tetragon stamps each event with its kernel time, but holds some before it sends
them: its event cache keeps an event that waits for pod or process info for up to
``--event-cache-retries`` (15) ticks of ``--event-cache-retry-delay`` (2 s), and a
Tetragon behind (its ring-buffer queue, the per-stream channel) sends everything
late by that much. When the stream breaks (or the agent goes), what it held is
lost (the listener's channel is drained, the cache sends to listeners present
then), and those events carry times *before* the stream's last message. A gap
that starts at the last message's arrival left those times "watched".

The real replay server streams events stamped with the times a Tetragon would
put on them; the source's outage (``take_outage``) and its watching moment for
the watch record (``watching_ns``) must reach back over them.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from stellaops_runtime.contracts.config import TetragonConfig
from stellaops_runtime.replay.events import ReplayEvent
from stellaops_runtime.replay.server import ReplayServer
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_grpc import TetragonGrpcSource
from stellaops_runtime.wire.tetragon import events_pb2
from tests.e2e import harness as h

S = 1_000_000_000
CACHE_HOLD = 30 * S  # Tetragon's defaults: 15 event-cache retries, 2 s apart


def _kprobe(time_ns: int) -> ReplayEvent:
    msg = events_pb2.GetEventsResponse(node_name="n1")
    msg.process_kprobe.function_name = "security_file_open"
    msg.process_kprobe.process.binary = "/usr/bin/app"
    msg.time.FromNanoseconds(time_ns)
    return ReplayEvent.from_message(msg)


async def _outage_after(events: list[ReplayEvent]) -> tuple[TetragonGrpcSource, int, tuple[int, int]]:
    server = ReplayServer(events)  # serves them, then holds the stream open and silent
    addr = await server.start(f"127.0.0.1:{h.free_port()}")
    source = TetragonGrpcSource(TetragonConfig(address=addr, connectionTimeout=2), queue=EventQueue(100))
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    try:
        await h.wait_for(lambda: source.stats.received == len(events), what="the events")
        watching = source.watching_ns()
        assert watching is not None
        await server.stop(grace=0)
        await h.wait_for(lambda: not source.stats.connected, what="the break noticed")
        span = source.take_outage()
        assert span is not None
        return source, watching, span
    finally:
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop(grace=0)


@pytest.mark.asyncio
async def test_the_outage_covers_what_tetragons_event_cache_may_still_hold() -> None:
    now = time.time_ns()
    source, watching, (start, end) = await _outage_after([_kprobe(now), _kprobe(now)])
    # An event Tetragon cached at the last message's arrival carries a time up to 30 s before it.
    assert start <= source.alive_ns - CACHE_HOLD, (source.alive_ns - start) / S
    assert watching <= source.alive_ns - CACHE_HOLD, (source.alive_ns - watching) / S
    assert end > source.alive_ns
    # Bounded: not a gap of the whole day for a stream that was on time.
    assert source.alive_ns - start < 120 * S


@pytest.mark.asyncio
async def test_a_tetragon_behind_widens_the_outage_by_its_lag() -> None:
    now = time.time_ns()
    lag = 200 * S  # its events arrive 200 s after their kernel time: it holds 200 s of them
    source, watching, (start, _) = await _outage_after([_kprobe(now - lag), _kprobe(now - lag)])
    assert start <= source.alive_ns - lag - CACHE_HOLD, (source.alive_ns - start) / S
    assert watching <= source.alive_ns - lag - CACHE_HOLD


@pytest.mark.asyncio
@pytest.mark.parametrize("when", [0, -5 * S, 4_102_444_800 * S, 253_402_300_799 * S])
async def test_hostile_event_times_bound_the_outage_and_lose_nothing(when: int) -> None:
    """1970, before 1970, 2100, 9999: every event is queued, the gap stays bounded and safe."""
    now = time.time_ns()
    source, _, (start, _) = await _outage_after([_kprobe(now), _kprobe(when), _kprobe(now)])
    assert source.stats.received == 3 and len(source.queue) == 3
    assert start <= source.alive_ns - CACHE_HOLD
    assert source.alive_ns - start <= 3_600 * S  # a hostile time does not blank the history
