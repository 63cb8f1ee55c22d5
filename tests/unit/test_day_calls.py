"""Each container of an image judged over its UTC day on the node (hotsymbols/day_calls.py).

The first window of a container that showed no call that day, while another container of the
image did, gets ``evidenced`` None (rank 0); its other windows keep their value (one mark takes
the node's day out in the store). The mark goes (the window written again at its own rank) once
that container is seen with calls later that day, and comes once the first container of the day
is. Memory is bounded: the day of the newest window and the day before, at most ``MAX_UNITS``.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.hotsymbols import day_calls
from stellaops_runtime.hotsymbols.day_calls import DAY_NS, UNWATCHED, DayCalls

S = 1_000_000_000
A = "sha256:" + "a" * 64
DEEP, ACTIVE, PASSIVE = Posture.EBPF_DEEP.rank, Posture.ACTIVE_TRACING.rank, Posture.PASSIVE.rank
T1, T2 = "1f" * 32, "2e" * 32  # the runtime's ids; events give 31 characters


def test_a_container_without_calls_beside_one_with_marks_its_first_window_until_it_calls() -> None:
    d = DayCalls()
    d.note(A, "n1", 60 * S, T1[:31], DEEP)
    assert d.judge(A, "n1", 60 * S, PASSIVE, [T1[:31], T2]) == UNWATCHED
    assert d.judge(A, "n1", 60 * S, PASSIVE, [T1, T2]) == UNWATCHED  # written again: still marked
    assert d.judge(A, "n1", 120 * S, PASSIVE, [T1, T2]) == PASSIVE  # one window is enough
    assert list(d.restated(set())) == []  # nothing new
    d.note(A, "n1", 3600 * S, T2.upper()[:31], ACTIVE)  # no stack: still no call seen
    assert list(d.restated(set())) == []
    d.note(A, "n1", 7200 * S, T2.upper()[:31], DEEP)  # its calls, later that day: it was idle
    assert list(d.restated(set())) == [(A, "n1", 60 * S, PASSIVE)]
    assert len(d) == 0 and list(d.restated(set())) == []
    assert d.judge(A, "n1", 60 * S, PASSIVE, [T1, T2]) == PASSIVE  # both seen with calls that day


def test_the_mark_comes_when_another_container_is_first_seen_with_calls() -> None:
    d = DayCalls()
    assert d.judge(A, "n1", 0, PASSIVE, [T2]) == PASSIVE  # no container seen with calls yet
    assert d.judge(A, "n1", 60 * S, PASSIVE, [T2]) == PASSIVE
    d.note(A, "n1", 600 * S, T1, DEEP)
    assert list(d.restated(set())) == [(A, "n1", 0, UNWATCHED)]  # its first window
    d.note(A, "n1", 700 * S, "3d" * 32, DEEP)  # another container's calls change nothing of it
    assert list(d.restated(set())) == []
    other = DayCalls()  # a window written again in the same drain is not restated twice
    other.judge(A, "n1", 0, PASSIVE, [T2])
    other.note(A, "n1", 0, T1, DEEP)
    assert list(other.restated({(A, "n1", 0)})) == []


def test_a_window_stays_marked_while_one_of_its_containers_is_unseen() -> None:
    d = DayCalls()
    d.note(A, "n1", 0, "3d" * 32, DEEP)
    assert d.judge(A, "n1", 0, ACTIVE, [T1, T2]) == UNWATCHED
    d.note(A, "n1", 600 * S, T1, DEEP)
    assert list(d.restated(set())) == []  # T2 still unseen
    d.note(A, "n1", 900 * S, T2, DEEP)
    assert list(d.restated(set())) == [(A, "n1", 0, ACTIVE)]


def test_days_and_nodes_and_images_are_apart() -> None:
    d = DayCalls()
    d.note(A, "n1", 0, T1, DEEP)  # day 0 on n1
    assert d.judge(A, "n1", DAY_NS, PASSIVE, [T2]) == PASSIVE  # the next day: no call seen yet
    assert d.judge(A, "n2", 0, PASSIVE, [T2]) == PASSIVE  # another node
    assert d.judge("sha256:" + "b" * 64, "n1", 0, PASSIVE, [T2]) == PASSIVE  # another image
    assert d.judge(A, "n1", DAY_NS - 60 * S, PASSIVE, [T2]) == UNWATCHED  # the day's last window


def test_memory_is_the_newest_day_and_the_one_before(monkeypatch: pytest.MonkeyPatch) -> None:
    d = DayCalls()
    for day in range(3):
        d.note(A, "n1", day * DAY_NS, T1, DEEP)
        d.judge(A, "n1", day * DAY_NS, PASSIVE, [T2])
    d.prune()
    assert len(d) == 2  # day 0 forgotten: its row keeps what was written
    d.note(A, "n1", 10, T2, DEEP)  # a late call of day 0 finds nothing to restate
    assert list(d.restated(set())) == []
    monkeypatch.setattr(day_calls, "MAX_UNITS", 3)  # each day holds two: T1 with calls, T2 without
    d.prune()
    assert len(d) == 1 and d.dropped == 2  # past the bound: the oldest day goes first
    d.note(A, "n1", 2 * DAY_NS + 10, T2, DEEP)
    assert list(d.restated(set())) == [(A, "n1", 2 * DAY_NS, PASSIVE)]
