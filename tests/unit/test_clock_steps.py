"""Wall-clock steps inside unwatched time (hotsymbols/clock_span.py): the gap holds both sides.

The clock is stepped by replacing ``time.time_ns`` (boottime keeps running, as the kernel's does).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.agent.source_switch import SourceSwitch
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.sources.queue import EventQueue
from tests.e2e import harness as h

HOUR = 3600 * 1_000_000_000
SECOND = 1_000_000_000


def _switch(marked: list[tuple[int, int]]) -> SourceSwitch:
    cfg = parse_config(
        {"tetragon": {"address": f"127.0.0.1:{h.free_port()}"}, "symbols": {"enabled": False},
         "attribution": {"enabled": False}}
    )  # fmt: skip
    p = Pipeline(cfg, node_name="n")

    async def in_pipeline(fn: Any, node: str, start: int, end: int) -> None:
        marked.append((start, end))

    return SourceSwitch(cfg, queue=EventQueue(10), pipeline=p, in_pipeline=in_pipeline)


def _covered(spans: list[tuple[int, int]], t: int) -> bool:
    return any(a <= t <= b for a, b in spans)


def _step_back(monkeypatch: pytest.MonkeyPatch) -> None:
    real = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real() - HOUR)


def test_a_switch_gap_taken_after_a_step_back_holds_both_sides(monkeypatch: pytest.MonkeyPatch) -> None:
    sw = _switch([])
    opened = time.time_ns() - 2 * SECOND  # no source watched since two seconds ago
    sw._open_gap(opened)
    _step_back(monkeypatch)
    span = sw.take_outage()
    now = time.time_ns()
    assert span is not None, "the switch's gap was dropped"
    # old clock: the two seconds since it opened; new clock: the same two seconds, an hour earlier
    assert _covered([span], opened) and _covered([span], opened + 2 * SECOND - 1_000_000)
    assert _covered([span], now - 2 * SECOND + 1_000_000) and _covered([span], now - 1)
    later = sw.take_outage()  # goes on from the new clock
    assert later is not None and later[0] <= now <= later[1]


def test_a_switch_gap_marked_after_a_step_back_is_marked(monkeypatch: pytest.MonkeyPatch) -> None:
    marked: list[tuple[int, int]] = []
    sw = _switch(marked)
    opened = time.time_ns() - 2 * SECOND
    sw._open_gap(opened)
    _step_back(monkeypatch)
    asyncio.run(sw._mark_gap(time.time_ns()))
    now = time.time_ns()
    assert marked, "nothing marked until the clock is back where it was, an hour on"
    assert _covered(marked, opened) and _covered(marked, now - 2 * SECOND + 1_000_000)


def test_a_gap_over_a_forward_jump_keeps_both_ends() -> None:
    """An outage across a forward jump of years (a reset RTC set right by NTP) is one span from the
    old clock's moment to the new one's. Only the ends hold real time: the windows kept past the
    bound must include the first ones (the old clock's side), not only the latest."""
    from stellaops_runtime.contracts.hotsymbols import NODE_WIDE
    from stellaops_runtime.hotsymbols.gaps import MAX_GAP_WINDOWS, GapTracker

    g = GapTracker(window_seconds=60)
    t0 = 1_000_000_000 * SECOND  # 2001, on the reset clock
    t1 = t0 + 25 * 365 * 24 * HOUR + 30 * SECOND  # the right time, 25 years on
    g.source_gap("n", t0 + 5 * SECOND, t1)
    rows = [w for w in g.drain([]) if w.image_digest == NODE_WIDE]
    assert len(rows) <= MAX_GAP_WINDOWS and g.stats.capped == 1
    starts = {w.window_start_ns for w in rows}
    wn = 60 * SECOND
    assert (t0 + 5 * SECOND) // wn * wn in starts and t1 // wn * wn in starts


def test_probe_drops_read_across_a_step_back_mark_both_reads() -> None:
    """The probes' drop counters are read about a second apart on the wall clock; a step back between
    the two reads put the second before the first, and only the first read's instant was marked."""
    from stellaops_runtime.hotsymbols.gaps import GapTracker

    g = GapTracker(window_seconds=60)
    first = 1_900_000_000 * SECOND
    g.native_drop("n", first, first - HOUR + SECOND, 3)
    rows = g.drain([])
    assert min(r.gap_start_ns for r in rows) <= first - HOUR + SECOND
    assert max(r.gap_end_ns for r in rows) >= first and sum(r.dropped_events for r in rows) == 3
