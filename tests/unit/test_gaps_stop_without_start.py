"""A throttle whose START this agent never saw covers the agent's whole watch up to its STOP.

Tetragon stops sending a throttled cgroup's events from its START to its STOP. An agent that
started mid-throttle (a restart, a crash, an upgrade: the last agent saw the START) or whose
START was lost in an outage receives only the STOP. It marked only the STOP's own window, so
the windows from the agent's first event up to it answered "watched" for the image while
Tetragon sent none of its events. The throttle was on since before the agent could have seen
it start: the gap now runs from the earliest event the agent saw to the STOP.
"""

from __future__ import annotations

from stellaops_runtime.contracts.drops import DropKind
from stellaops_runtime.contracts.hotsymbols import NODE_WIDE
from stellaops_runtime.hotsymbols.gaps import GapTracker
from tests.unit.test_gaps import IMG, T0, S, event, gaps_of, throttle


def test_a_stop_without_start_covers_every_window_since_the_agent_began_watching() -> None:
    g = GapTracker(window_seconds=60)
    g.note(event(T0 + 30 * S))  # the agent's first event (it started mid-throttle)
    g.note(event(T0 + 200 * S))
    g.signal(throttle(DropKind.THROTTLE_STOP, T0 + 250 * S))
    gaps = gaps_of(g.drain([]))
    assert {k for k in gaps if k[0] == IMG} == {(IMG, 0), (IMG, 1), (IMG, 2), (IMG, 3), (IMG, 4)}, gaps
    assert gaps[(IMG, 0)][0] == 30 and gaps[(IMG, 4)][1] == 250


def test_a_stop_before_any_event_marks_its_own_window() -> None:
    g = GapTracker(window_seconds=60)
    g.signal(throttle(DropKind.THROTTLE_STOP, T0 + 70 * S))  # nothing seen yet: no earlier watch
    assert gaps_of(g.drain([])) == {(NODE_WIDE, 1): (60, 70, 0, 0)}  # a container never seen
    g2 = GapTracker(window_seconds=60)
    g2.note(event(T0 + 65 * S))
    g2.signal(throttle(DropKind.THROTTLE_STOP, T0 + 70 * S))
    assert gaps_of(g2.drain([])) == {(IMG, 1): (60, 70, 0, 0)}


def test_a_matched_throttle_and_a_clock_step_keep_their_spans() -> None:
    g = GapTracker(window_seconds=60)
    g.note(event(T0))
    g.signal(throttle(DropKind.THROTTLE_START, T0 + 130 * S))
    g.signal(throttle(DropKind.THROTTLE_STOP, T0 + 150 * S))
    assert gaps_of(g.drain([])) == {(IMG, 2): (130, 150, 1, 0)}
    g.signal(throttle(DropKind.THROTTLE_START, T0 + 190 * S))
    g.signal(throttle(DropKind.THROTTLE_STOP, T0 + 185 * S))  # stamped before its START: a step back
    gaps = gaps_of(g.drain([]))
    assert gaps[(IMG, 3)][:2] == (180, 190), gaps
    assert (IMG, 0) not in gaps and (IMG, 1) not in gaps
