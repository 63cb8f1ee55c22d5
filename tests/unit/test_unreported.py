"""Changes a backstop list found, waiting for their events (lifecycle/unreported.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from stellaops_runtime.lifecycle.unreported import Unreported

SINCE = datetime(2026, 12, 6, tzinfo=UTC)
LIST_NS = 1_800_000_000_000_000_000


def test_a_change_whose_event_comes_is_no_loss() -> None:
    u = Unreported(2.0)
    u.found({"a", "b"}, 100.0, SINCE, LIST_NS)
    u.heard("a")
    u.heard("b")
    assert u.wait(101.0) is None and u.lost(200.0) == (False, None)


def test_a_change_without_its_event_is_lost_once_due() -> None:
    u = Unreported(2.0)
    u.found({"a", "b"}, 100.0, SINCE, LIST_NS)
    u.heard("a")
    assert u.wait(101.0) == 1.0 and u.lost(101.0) == (False, None)
    assert u.lost(102.0) == (True, SINCE)
    assert u.lost(300.0) == (False, None)  # said once


def test_a_stream_catching_up_postpones_and_a_later_stamp_settles_it() -> None:
    u = Unreported(2.0)
    u.found({"a"}, 100.0, SINCE, LIST_NS)
    u.event(LIST_NS - 5, 101.9)  # an event stamped before the list: the reader is behind
    assert u.lost(102.5) == (False, None)
    u.event(LIST_NS + 1, 103.0)  # stamped after the list, but a change may be stamped late: waits on
    assert u.lost(103.5) == (False, None)
    u.event(LIST_NS + 2_500_000_000, 104.0)  # past the list by more than in_flight: all came
    assert u.lost(104.0) == (True, SINCE)


def test_nothing_found_waits_for_nothing() -> None:
    u = Unreported(2.0)
    u.found(set(), 100.0, SINCE, LIST_NS)
    u.event(LIST_NS * 2, 100.0)
    assert u.wait(100.0) is None and u.lost(1e9) == (False, None)


def test_a_wall_clock_stepped_back_postpones_no_longer_than_the_catch_up_bound() -> None:
    """After the list the wall clock steps back an hour: every event is stamped before the list, as from a
    reader behind, and a busy stream (an event a second) put the verdict off for that hour, the change's
    container unknown to the registry while the agent said in sync. The wait has a bound."""
    u = Unreported(2.0, catch_up=30.0)
    u.found({"a"}, 100.0, SINCE, LIST_NS)
    now = 100.0
    while now < 160.0 and not u.lost(now)[0]:
        u.event(LIST_NS - 3600 * 10**9 + int((now - 100.0) * 1e9), now)
        now += 1.0
    assert now <= 131.0, "a stream stamped behind the list put the loss off for good"
