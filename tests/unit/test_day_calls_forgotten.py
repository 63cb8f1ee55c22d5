"""A day the agent forgot (hotsymbols/day_calls.py) never loses a mark it wrote.

The unwatched-container mark (``evidenced`` None on a container's first window of a UTC day) is
what takes a node's day out of the watch when a container of the image ran there without a call
seen while another did. The agent remembers the newest day and the day before, at most
``MAX_UNITS`` containers; a day it forgot cannot be judged again, so its rows keep what was
written: a kept window of it is not written again (an export file of several days read in one
drain), and a window of it written again (late events) is marked where one of its containers was
not seen with calls since. At the bound the agent keeps which containers showed calls and judges
the days whose containers it dropped the same way: marks kept, never lost.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.hotsymbols import day_calls
from stellaops_runtime.hotsymbols.container_runs import ContainerRuns
from stellaops_runtime.hotsymbols.day_calls import DAY_NS, UNWATCHED
from stellaops_runtime.hotsymbols.window_units import WindowUnits

S = 1_000_000_000
A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
DEEP, PASSIVE = Posture.EBPF_DEEP.rank, Posture.PASSIVE.rank
T1, T2 = "1f" * 32, "2e" * 32


def runs() -> ContainerRuns:
    r = ContainerRuns(60)
    r.update(10 * DAY_NS, True, [])  # the registry in sync (lifecycle on): kept windows are judged again
    return r


def drain(
    u: WindowUnits, r: ContainerRuns, windows: dict[tuple[str, str, int], int]
) -> dict[tuple[str, int], int]:
    """One drain as window_counts.py makes it: (image, window) -> the evidenced rank written."""
    out = {}
    for (img, node, w), rank in windows.items():
        out[(img, w)] = v = u.value(img, node, w, rank, r)
        u.written(img, node, w, v)
    for img, _node, w, v in u.restated(r, set(windows)):
        out[(img, w)] = v
    u.age()
    return out


def test_an_export_file_of_several_days_read_in_one_drain_keeps_every_days_mark() -> None:
    u, r = WindowUnits(), runs()
    wins = [d * DAY_NS + 60 * S for d in range(4)]
    for w in wins:  # T1's calls, T2's exec events only: each day's window is T2's first
        u.note(A, "n1", w, T1, DEEP)
        u.note(A, "n1", w, T2, PASSIVE)
    first = drain(u, r, {(A, "n1", w): DEEP for w in wins})
    assert set(first.values()) == {UNWATCHED}
    assert drain(u, r, {}) == {}  # days 0 and 1 are forgotten now: their rows keep their mark
    u.note(A, "n1", wins[0] + 5 * S, T1, DEEP)  # a late event of a forgotten day: T2 still unseen
    assert drain(u, r, {(A, "n1", wins[0]): DEEP}) == {(A, wins[0]): UNWATCHED}


def test_a_late_call_of_a_forgotten_day_does_not_clear_its_mark() -> None:
    u, r = WindowUnits(), runs()
    u.note(A, "n1", 60 * S, T1, DEEP)
    u.note(A, "n1", 60 * S, T2, PASSIVE)
    assert drain(u, r, {(A, "n1", 60 * S): DEEP}) == {(A, 60 * S): UNWATCHED}
    u.note(A, "n1", 2 * DAY_NS, T1, DEEP)  # two days on: day 0 forgotten
    drain(u, r, {(A, "n1", 2 * DAY_NS): DEEP})
    u.note(A, "n1", 120 * S, T2, DEEP)  # T2's call of day 0: the agent cannot tell its first window
    assert (A, 60 * S) not in drain(u, r, {(A, "n1", 120 * S): DEEP})


def test_past_the_bound_another_images_mark_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(day_calls, "MAX_UNITS", 50)
    u, r = WindowUnits(), runs()
    u.note(B, "n1", 60 * S, T1, DEEP)
    u.note(B, "n1", 60 * S, T2, PASSIVE)
    assert drain(u, r, {(B, "n1", 60 * S): DEEP}) == {(B, 60 * S): UNWATCHED}
    u.note(A, "n1", 120 * S, T1, DEEP)
    for i in range(200):  # a storm of short-lived containers of A without calls, the same day
        u.note(A, "n1", 120 * S, f"{i:031x}" + "f" * 33, PASSIVE)
    drain(u, r, {(A, "n1", 120 * S): DEEP})
    assert len(u.days) <= 50 and u.days.dropped > 0  # bounded, and the drop counted
    u.note(B, "n1", 60 * S, T2, PASSIVE)  # B's marked window written again: still marked
    u.note(B, "n1", 180 * S, "3d" * 32, PASSIVE)  # a new container of B without calls: marked
    got = drain(u, r, {(B, "n1", 60 * S): DEEP, (B, "n1", 180 * S): DEEP})
    assert got == {(B, 60 * S): UNWATCHED, (B, 180 * S): UNWATCHED}
    u.note(A, "n1", 240 * S, "4c" * 32, PASSIVE)  # and so in the storm's image
    assert drain(u, r, {(A, "n1", 240 * S): DEEP})[(A, 240 * S)] == UNWATCHED


def test_containers_seen_with_calls_count_against_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(day_calls, "MAX_UNITS", 50)
    u, r = WindowUnits(), runs()
    for i in range(200):  # a storm of short-lived containers of A, each with calls
        u.note(A, "n1", 60 * S, f"{i:031x}" + "f" * 33, DEEP)
    drain(u, r, {(A, "n1", 60 * S): DEEP})
    held = sum(len(c) for c in u.days._called.values())
    assert held <= 50 and u.days.dropped == 200
    u.note(A, "n1", 120 * S, "3d" * 32, PASSIVE)  # a container without calls after it: marked
    got = drain(u, r, {(A, "n1", 120 * S): DEEP})
    # and so is the storm's window: the calls seen there are forgotten (the day is lost, not a mark)
    assert got == {(A, 60 * S): UNWATCHED, (A, 120 * S): UNWATCHED}
