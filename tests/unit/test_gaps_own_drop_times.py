"""Gaps at odd times (hotsymbols/gaps.py): the agent's own drops before any event and across a
wall-clock step back, and a throttle that stops "before" it started.

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


def test_a_throttle_stop_before_its_start_marks_its_own_window() -> None:
    """Tetragon stamps each event with the wall clock as it sends it: a throttle that stops after the
    clock stepped back stops "before" it started. The part after the step was marked nowhere; the
    STOP's own window up to the STOP is marked, as for a STOP whose START was never seen."""
    from stellaops_runtime.contracts.drops import DropKind
    from tests.unit.test_gaps import IMG, throttle

    g = GapTracker(window_seconds=60)
    g.note(event(T0))
    g.signal(throttle(DropKind.THROTTLE_START, T0 + 30 * S))
    g.drain([])
    g.signal(throttle(DropKind.THROTTLE_STOP, T0 + 30 * S - 3600 * S))  # an hour back
    assert gaps_of(g.drain([]))[(IMG, -60)] == (-3600, -3570, 0, 0)
    assert not g.open_throttles
