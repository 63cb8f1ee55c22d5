"""The agent's own drops (hotsymbols/gaps.py ``own_drop``) at odd times: before any event, and across
a wall-clock step back.

Drops before the first event (the queue overflowing at start, while the first batch was still
being processed) left a pending report with no event-time start, which then never closed: no row
ever carried the count, and every later drop was added to the same stuck report, so the agent's
whole life long no drop was marked in event time (where a delayed or replayed stream's events are).
A wall-clock span of drops whose end came before its start (the clock stepped back between the
first and the last drop) was marked nowhere.
"""

from __future__ import annotations

from stellaops_runtime.contracts.hotsymbols import NODE_WIDE
from stellaops_runtime.hotsymbols.gaps import GapTracker
from tests.unit.test_gaps import T0, S, event, gaps_of

WALL = T0 + 3600 * S  # a replayed stream: the wall clock is an hour past the events' times


def test_drops_before_any_event_are_placed_from_the_first_events_after_them() -> None:
    g = GapTracker(window_seconds=60)
    g.own_drop("n1", WALL, WALL + S, 5)  # no event seen yet
    g.note(event(T0 + 70 * S))  # the first batch: its earliest and latest events
    g.note(event(T0 + 10 * S))
    g.after_batch()
    gaps = gaps_of(g.drain([]))
    assert gaps[(NODE_WIDE, 0)][:2] == (10, 60) and gaps[(NODE_WIDE, 1)] == (60, 70, 0, 5)
    # and the next drops are placed as usual, not added to a report stuck forever
    g.own_drop("n1", WALL + 10 * S, WALL + 11 * S, 4)
    g.note(event(T0 + 130 * S))
    g.after_batch()
    gaps = gaps_of(g.drain([]))
    assert gaps[(NODE_WIDE, 1)][:2] == (70, 120) and gaps[(NODE_WIDE, 2)] == (120, 130, 0, 4)


def test_a_wall_clock_span_of_drops_across_a_step_back_is_still_marked() -> None:
    g = GapTracker(window_seconds=60)
    g.note(event(T0 + 50 * S))
    g.own_drop("n1", WALL + 30 * S, WALL - 30 * S, 2)  # the last drop's time before the first's
    rows = [r for r in g.drain([]) if r.image_digest == NODE_WIDE and r.window_start_ns >= WALL - 60 * S]
    assert rows and min(r.gap_start_ns for r in rows) <= WALL - 30 * S
    assert max(r.gap_end_ns for r in rows) >= WALL + 30 * S
