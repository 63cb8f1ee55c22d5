"""Scrape-failure gaps of Tetragon's metrics poller at two edges (brief TM2, left open by RTM).

(a) The wall clock steps back while scrapes fail: the wall time lived again after the step, before
where the unknown span had reached, must be in the unknown span (not lost until the clock catches up,
not inverted), as hotsymbols/clock_span.py does for outages.
(b) An agent killed after its first failed scrape, no scrape ever good: the watch record must not
claim past that try, or the next agent's restart gap starts after it and its first good scrape takes
what Tetragon lost meanwhile as its baseline (placed nowhere).
"""

from __future__ import annotations

import asyncio
from typing import Any

from stellaops_runtime.agent.outages import OutageMarker
from stellaops_runtime.sources.tetragon_metrics import TetragonMetricsPoller

S = 1_000_000_000


def failing_poller(last_good: int | None, fails: list[tuple[int, int]]) -> TetragonMetricsPoller:
    p = TetragonMetricsPoller("http://127.0.0.1:9/metrics")
    if last_good is not None:
        p.note({"x": 1.0}, last_good, last_good, last_good)
    for wall, boot in fails:
        p.failed(wall, boot)
    return p


def test_a_clock_step_back_while_scrapes_fail_keeps_the_time_lived_again_unknown() -> None:
    # boot clock == wall clock until the step; good scrape at 1000 s, failures at 1015 s and 1030 s
    p = failing_poller(1000 * S, [(1015 * S, 1015 * S), (1030 * S, 1030 * S)])
    assert p.take_unknown(1030 * S, 1030 * S) == (1000 * S, 1030 * S)
    # the clock steps back 100 s: one second later (boot 1031 s) the wall clock reads 931 s
    span = p.take_unknown(931 * S, 1031 * S)
    assert span is not None, "the wall time lived again after the step is in no gap"
    start, end = span
    assert start <= 930 * S and end >= 931 * S, f"{span}: the seconds since the step (930-931 s) not covered"
    assert start < end
    # the ticks after go on from the new clock: each second of it is in a span
    nxt = p.take_unknown(932 * S, 1032 * S)
    assert nxt is not None and nxt[0] <= 931 * S and nxt[1] >= 932 * S


def test_a_clock_step_back_before_any_good_scrape_keeps_the_time_lived_again_unknown() -> None:
    p = failing_poller(None, [(500 * S, 500 * S), (515 * S, 515 * S)])
    assert p.take_unknown(516 * S, 516 * S) == (500 * S, 516 * S)
    span = p.take_unknown(400 * S, 517 * S)  # stepped back 117 s, one second later
    assert span is not None and span[0] <= 399 * S and span[1] >= 400 * S


class Pipe:
    node_name = "node-a"

    def __init__(self) -> None:
        self.gaps = self
        self.marked: list[tuple[str, tuple[Any, ...]]] = []

    def tetragon_unread(self, *args: Any) -> None:
        self.marked.append(("unread", args))

    def tetragon_drop(self, *args: Any) -> None:
        self.marked.append(("drop", args))


def _marker() -> tuple[Pipe, TetragonMetricsPoller, OutageMarker]:
    """A poller of a closed port and the outage marker that takes its spans into ``Pipe``."""
    pipe = Pipe()

    async def in_pipeline(fn: Any, *args: Any) -> None:
        fn(*args)

    poller = TetragonMetricsPoller("http://127.0.0.1:9/metrics")
    marker = OutageMarker(object(), pipeline=pipe, in_pipeline=in_pipeline)
    marker.drops = poller
    return pipe, poller, marker


def test_a_first_failed_scrape_caps_the_watch_record_at_its_try() -> None:
    pipe, poller, marker = _marker()
    poller.failed(1000 * S, 1000 * S)  # the first try ever failed; no gap yet (one failure)
    asyncio.run(marker.mark())
    assert pipe.marked == []
    through = poller.marked_through
    assert through is not None and through <= 1000 * S, (
        f"marked_through {through}: the watch record may claim past the first failed try, so an agent "
        "killed now leaves Tetragon's losses since that try in no gap"
    )


def test_a_scrape_asked_and_not_answered_yet_caps_the_watch_record_at_its_ask() -> None:
    _, poller, marker = _marker()
    poller.asking(1000 * S)  # the first try is on its way (its timeout is 5 s)
    asyncio.run(marker.mark())
    through = poller.marked_through
    assert through is not None and through <= 1000 * S
