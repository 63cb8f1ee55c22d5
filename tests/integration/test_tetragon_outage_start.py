"""A Tetragon outage starts when the stream was last known alive, not when the break was noticed.

Tetragon replays nothing after a reconnect, and a broken stream may be noticed
only later (here: a server that keeps the stream open and silent, then goes).
Whatever Tetragon sent after the stream's last message may be lost, so the
outage the source hands over (``take_outage``) starts at that message's
arrival (less what Tetragon may still have held: sources/event_hold.py); a
gap starting at the moment of the break would leave the silent second
claiming the node was watched.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from stellaops_runtime.contracts.config import TetragonConfig
from stellaops_runtime.replay.events import load_events
from stellaops_runtime.replay.server import ReplayServer
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_grpc import TetragonGrpcSource
from tests.e2e import harness as h

STREAM = Path(__file__).resolve().parents[1] / "fixtures" / "tetragon" / "events.jsonl"


@pytest.mark.asyncio
async def test_the_outage_starts_at_the_last_message_before_a_silent_break() -> None:
    events = load_events(STREAM).events[:5]
    assert len(events) == 5
    server = ReplayServer(events)  # serves five, then holds the stream open and silent
    addr = await server.start(f"127.0.0.1:{h.free_port()}")
    queue = EventQueue(1000)
    source = TetragonGrpcSource(TetragonConfig(address=addr, connectionTimeout=2), queue=queue)
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    try:
        await h.wait_for(lambda: source.stats.received == 5, what="the five events")
        seen_all = time.time_ns()
        first = source.take_outage()  # the hold before the first stream (test_first_stream_gap.py)
        assert first is not None and first[1] <= seen_all
        assert source.take_outage() is None  # connected, nothing lost since
        await asyncio.sleep(1.0)  # the stream stays open and silent
        before_break = time.time_ns()
        await server.stop(grace=0)
        await h.wait_for(lambda: not source.stats.connected, what="the break noticed")
        span = source.take_outage()
        assert span is not None
        start, end = span
        # From the fifth message's arrival (before the test saw all five), not from the break,
        # less what Tetragon may still have held then (test_tetragon_outage_held_events.py).
        assert source.alive_ns <= seen_all and start == source.alive_ns - source.hold.ns()
        assert before_break - start >= 1_000_000_000, (before_break, start)
        assert end >= before_break
        # An outage still open continues from where it was handed over.
        await asyncio.sleep(0.05)
        more = source.take_outage()
        assert more is not None and more[0] == end and more[1] > end
    finally:
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop(grace=0)
