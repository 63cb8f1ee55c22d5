"""Event-loop stalls with the Tetragon stream open are handed over as outages (sources/loop_stall.py).

s32/h2: Tetragon drops events for a client that does not read; a stall of the agent's loop
was not recorded anywhere. The real agent under SIGSTOP: tests/e2e/test_grpc_loop_stall.py.
"""

from __future__ import annotations

import asyncio
import time

from stellaops_runtime.contracts.config import TetragonConfig
from stellaops_runtime.sources import loop_stall
from stellaops_runtime.sources.loop_stall import LoopStalls
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_grpc import TetragonGrpcSource


async def _stall_while(stalls: LoopStalls, watching: bool, block: float) -> None:
    task = asyncio.create_task(stalls.run(lambda: watching))
    await asyncio.sleep(0.05)  # a tick or two on time
    time.sleep(block)  # noqa: ASYNC251  # a call holding the loop: the stall under test
    await asyncio.sleep(0.1)  # the late tick
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_stall_over_the_threshold_is_one_span_covering_it() -> None:
    stalls = LoopStalls(threshold=0.2, tick=0.02)
    t0 = time.time_ns()
    await _stall_while(stalls, True, 0.5)
    t1 = time.time_ns()
    span = stalls.take()
    assert span is not None and t0 <= span[0] and span[1] <= t1 and span[1] - span[0] >= 500_000_000
    assert stalls.stalls == 1 and stalls.seconds >= 0.5 and stalls.take() is None


async def test_no_stream_open_no_stall_span() -> None:
    stalls = LoopStalls(threshold=0.2, tick=0.02)
    await _stall_while(stalls, False, 0.5)  # nobody watched anyway: the outage says so
    assert stalls.take() is None and stalls.stalls == 0


def test_spans_past_the_bound_merge_into_the_last(monkeypatch) -> None:
    monkeypatch.setattr(loop_stall, "MAX_SPANS", 2)
    stalls = LoopStalls()
    for i in range(4):
        stalls._record((i * 10, i * 10), (i * 10 + 5, i * 10 + 5))
    assert [stalls.take(), stalls.take(), stalls.take()] == [(0, 5), (10, 35), None]


def test_the_source_hands_stalls_over_like_outages() -> None:
    src = TetragonGrpcSource(TetragonConfig(), queue=EventQueue(10))
    src.stalls._record((100, 100), (300, 300))
    assert src.take_outage() == (100 - src.hold.ns(), 300)  # less what Tetragon held (below)
    assert src.take_outage() is None
    src.stalls._record((100, 100), (300, 300))
    src.resume_outage(50, None)  # an open outage (up to now) and a stall: one span holding both
    span = src.take_outage()
    assert span is not None and span[0] == min(50, 100 - src.hold.ns()) and span[1] >= 300
    assert src.stalls.take() is None


def test_a_stall_reaches_back_over_what_tetragon_held_for_the_stream() -> None:
    """Tetragon drops for a client that stops reading the events it notifies meanwhile; those carry
    times up to its hold earlier (its event cache, a backlog: sources/event_hold.py), like the
    events lost with a broken stream. The stall's gap starts that much before the stall."""
    from stellaops_runtime.sources.event_hold import CACHE_HOLD_NS

    src = TetragonGrpcSource(TetragonConfig(), queue=EventQueue(10))
    t = 1_796_000_000 * 1_000_000_000
    src.stalls._record((t, t), (t + 6_000_000_000, t + 6_000_000_000))
    assert src.take_outage() == (t - CACHE_HOLD_NS, t + 6_000_000_000)
