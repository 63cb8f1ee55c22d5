"""docs/operations.md: the export source's first file, read from its start, holds the cache's hold
about its first line's stamp, but "a first line with no time, or ahead of the clock, counts at its
arrival". test_export_first_window.py covers the line with no time; this is the one stamped ahead
(a clock step, a hostile line): the hold is taken about the moment it was read, not an hour on.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stellaops_runtime.sources.event_hold import CACHE_HOLD_NS
from tests.unit.test_export_first_window import S, _first_read, _lines


@pytest.mark.asyncio
async def test_a_first_line_stamped_ahead_of_the_clock_is_held_about_its_arrival(tmp_path: Path) -> None:
    before = time.time_ns()
    span, _ = await _first_read(
        tmp_path, _lines(before + 3_600 * S, 1), _lines(time.time_ns()), from_start=True
    )
    after = time.time_ns()
    assert span is not None, "no gap about a first line stamped ahead"
    assert before - CACHE_HOLD_NS <= span[0] <= after - CACHE_HOLD_NS, (span[0] - before) / S
    assert before <= span[1] <= after, (span[1] - before) / S
