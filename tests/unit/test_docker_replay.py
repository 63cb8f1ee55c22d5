"""The check of Docker's replay (lifecycle/docker_replay.py): 256 events before the first one is a loss."""

from __future__ import annotations

from stellaops_runtime.lifecycle.docker_replay import REPLAY_LIMIT, ReplayCheck

T0 = 1_700_000_000_000_000_000


def test_a_replay_of_the_whole_buffer_says_events_may_be_lost_once() -> None:
    c = ReplayCheck(T0)
    arrived = T0 + 5_000_000
    said = [c.see(T0 + i, arrived + i) for i in range(REPLAY_LIMIT)]
    assert said == [False] * (REPLAY_LIMIT - 1) + [True]
    assert not c.see(T0 + 1, arrived + 999) and c.done  # said once per connection


def test_a_live_event_after_a_short_replay_ends_the_check() -> None:
    c = ReplayCheck(T0)
    arrived = T0 + 5_000_000
    assert not any(c.see(T0 + i, arrived) for i in range(REPLAY_LIMIT - 1))
    assert not c.see(arrived + 1, arrived + 2) and c.done  # stamped after the first arrived: live
    assert not any(c.see(T0, arrived + 3) for _ in range(REPLAY_LIMIT))


def test_events_without_a_usable_time_count_toward_the_limit() -> None:
    c = ReplayCheck(T0)
    assert [c.see(None, T0 + 1) for _ in range(REPLAY_LIMIT)][-1] is True


def test_the_first_arrival_is_the_bound_not_later_ones() -> None:
    """A replay delivered slowly: its events are stamped before the first arrived, however late they come."""
    c = ReplayCheck(T0)
    first = T0 + 1_000
    results = [c.see(T0 + i, first + i * 1_000_000) for i in range(REPLAY_LIMIT)]
    assert results[-1] is True
