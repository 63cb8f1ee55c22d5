"""sources/open_outage.py: the open outage both Tetragon sources keep, piece by piece."""

from __future__ import annotations

from stellaops_runtime.hotsymbols.clock_span import now_pair
from stellaops_runtime.sources.open_outage import OpenOutage

S = 1_000_000_000


def test_pieces_while_open_then_closed_at_the_watching_moment() -> None:
    o = OpenOutage()
    assert o.take(None) is None  # nothing open
    wall, boot = now_pair()
    o.open(wall - 10 * S, boot - 10 * S)
    o.open(wall - 5 * S, boot - 5 * S)  # already open: it started earlier
    first = o.take(None)
    assert first is not None and first[0] == wall - 10 * S and first[1] >= wall
    second = o.take((first[1] + S, boot + S))  # a source watches again one second later
    assert second == (first[1], first[1] + S)
    assert o.take(None) is None  # closed


def test_resume_keeps_the_earliest_start_and_forget_drops_it() -> None:
    o = OpenOutage()
    wall, boot = now_pair()
    o.open(wall - 5 * S, boot - 5 * S)
    o.resume(wall - 60 * S, None)  # the last agent's record, of another boot: boottime unknown
    o.resume(wall - 30 * S, boot - 30 * S)  # later than the start: no change
    assert (o.start, o.boot) == (wall - 60 * S, None)
    span = o.take((wall, boot))
    assert span == (wall - 60 * S, wall)
    o.open(wall, boot)
    o.forget()
    assert o.take(None) is None


def test_a_step_back_inside_the_outage_widens_the_span_instead_of_dropping_it() -> None:
    o = OpenOutage()
    wall, boot = now_pair()
    o.open(wall, boot)
    # Ten seconds later on the boot clock, the wall clock reads an hour earlier.
    span = o.take((wall - 3600 * S + 10 * S, boot + 10 * S))
    assert span is not None
    start, end = span
    assert start <= wall - 3600 * S and end >= wall + 10 * S
