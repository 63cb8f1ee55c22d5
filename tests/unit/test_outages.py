"""agent/outages.py: a source outage becomes a gap, and a span taken but not marked is never lost."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest


class Source:
    def __init__(self, spans: list[tuple[int, int] | None]) -> None:
        self.spans = spans

    def take_outage(self) -> tuple[int, int] | None:
        return self.spans.pop(0) if self.spans else None


class Gaps:
    def __init__(self) -> None:
        self.marked: list[tuple[str, int, int]] = []

    def source_gap(self, node: str, start: int, end: int) -> None:
        self.marked.append((node, start, end))


class Pipe:
    node_name = "n1"

    def __init__(self) -> None:
        self.gaps = Gaps()


def test_a_span_whose_marking_failed_is_marked_with_the_next_one() -> None:
    from stellaops_runtime.agent.outages import OutageMarker

    pipe = Pipe()
    calls = 0

    async def in_pipeline(fn: Any, *args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # the pipeline thread did not answer in time (shutdown deadline)
            raise TimeoutError
        fn(*args)

    marker = OutageMarker(Source([(10, 20), (20, 35), None]), pipeline=pipe, in_pipeline=in_pipeline)

    async def run() -> None:
        with pytest.raises(TimeoutError):
            await marker.mark()
        await marker.mark()
        await marker.mark()  # nothing more reported, nothing held

    asyncio.run(run())
    assert pipe.gaps.marked == [("n1", 10, 35)]
    assert (marker.outages, marker.seconds) == (1, 25e-9)


def test_a_source_without_outages_is_not_watched() -> None:
    from stellaops_runtime.agent.outages import OutageMarker

    marker = OutageMarker(object(), pipeline=Pipe(), in_pipeline=None)  # type: ignore[arg-type]
    assert not marker.enabled
    asyncio.run(marker.mark())


def test_a_held_span_merged_with_one_widened_by_a_clock_step_keeps_the_earlier_start() -> None:
    """A span taken after a wall-clock step back starts before the one held (hotsymbols/clock_span.py):
    the merge keeps the earliest start and the latest end, never the held start alone."""
    from stellaops_runtime.agent.outages import OutageMarker

    pipe = Pipe()
    calls = 0

    async def in_pipeline(fn: Any, *args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TimeoutError
        fn(*args)

    marker = OutageMarker(Source([(100, 200), (40, 210)]), pipeline=pipe, in_pipeline=in_pipeline)

    async def run() -> None:
        with pytest.raises(TimeoutError):
            await marker.mark()
        await marker.mark()

    asyncio.run(run())
    assert pipe.gaps.marked == [("n1", 40, 210)]
