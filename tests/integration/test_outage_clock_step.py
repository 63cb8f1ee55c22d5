"""A Tetragon outage across a wall-clock step back is still a gap, on both sides of the step.

The real source streams from a real replay server; the stream breaks, and while
it is down the wall clock steps back an hour (NTP fixing a node's clock, ``date
-s``). Calls made before the step were stamped on the old clock just after the
stream's last message, calls made after it on the new one just before the next
look: both must fall in a gap. The source handed nothing over: the outage's end
(the new clock) came before its start (the old one), and the span was dropped.
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
HOUR = 3600 * 1_000_000_000


def _covered(spans: list[tuple[int, int]], t: int) -> bool:
    return any(a <= t <= b for a, b in spans)


@pytest.mark.asyncio
async def test_an_outage_across_a_clock_step_back_covers_both_sides(monkeypatch: pytest.MonkeyPatch) -> None:
    events = load_events(STREAM).events[:3]
    server = ReplayServer(events)  # serves three, then holds the stream open and silent
    addr = await server.start(f"127.0.0.1:{h.free_port()}")
    source = TetragonGrpcSource(TetragonConfig(address=addr, connectionTimeout=2), queue=EventQueue(100))
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    real = time.time_ns
    try:
        await h.wait_for(lambda: source.stats.received == 3, what="the three events")
        await server.stop(grace=0)
        await h.wait_for(lambda: not source.stats.connected, what="the break noticed")
        last = source.alive_ns
        await asyncio.sleep(1.0)  # unwatched, on the old clock
        before_step = real()
        monkeypatch.setattr(time, "time_ns", lambda: real() - HOUR)  # the clock steps back an hour
        await asyncio.sleep(1.0)  # unwatched, on the new clock
        spans = [s for s in (source.take_outage(), source.take_outage()) if s is not None]
        looked = time.time_ns()
        assert spans, "the outage was dropped"
        assert all(a <= b for a, b in spans)
        # The old clock's side: from the last message up to the step.
        assert _covered(spans, last) and _covered(spans, before_step), (spans, last, before_step)
        # The new clock's side: the second before the look.
        assert _covered(spans, looked - 900_000_000) and _covered(spans, looked - 1), (spans, looked)
    finally:
        stop.set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
