"""agent/native_hold.py: a native record whose cgroup the lookup does not know waits for it, bounded.

And native/events.cgroup_of reads the cgroup id a record names without decoding it, as the
decoder itself reads it.
"""

from __future__ import annotations

from stellaops_runtime.agent.native_hold import NativeHold
from stellaops_runtime.native import records
from stellaops_runtime.native.events import cgroup_of

MS = 1_000_000


def rec(cg: int, t: int) -> tuple[bytes, int]:
    return (cg.to_bytes(8, "little"), t)


def cg_of(payload: bytes) -> int:
    return int.from_bytes(payload, "little")


def test_a_record_waits_until_a_newer_lookup_names_its_cgroup() -> None:
    h = NativeHold(hold_ns=2000 * MS)
    known = {1}
    now = [rec(1, 0), rec(7, 0), rec(0, 0)]  # known, unknown, no cgroup at all
    assert h.sort(now, cg_of, known.__contains__) == [rec(1, 0), rec(0, 0)]
    assert len(h) == 1
    assert h.release(500 * MS, known.__contains__) == []  # not named yet, not expired
    known.add(7)  # the observer learned the container
    assert h.release(600 * MS, known.__contains__) == [rec(7, 0)]
    assert (h.held_total, h.named_late, len(h)) == (1, 1, 0)


def test_a_cgroup_still_unknown_after_the_wait_is_the_hosts_and_waits_no_more() -> None:
    h = NativeHold(hold_ns=2000 * MS)
    none: set[int] = set()
    assert h.sort([rec(9, 0)], cg_of, none.__contains__) == []
    assert h.release(1999 * MS, none.__contains__) == []
    assert h.release(2000 * MS, none.__contains__) == [rec(9, 0)]  # decoded: host
    assert h.sort([rec(9, 3000 * MS)], cg_of, none.__contains__) == [rec(9, 3000 * MS)]  # no wait
    # but the lookup is still asked first: a late-learned container of that id is named (the
    # pipeline decodes with the lookup); the hold only skips the wait


def test_the_hold_is_bounded_and_a_stop_releases_everything() -> None:
    h = NativeHold(hold_ns=2000 * MS, max_held=3)
    none: set[int] = set()
    out = h.sort([rec(100 + i, 0) for i in range(5)], cg_of, none.__contains__)
    assert out == [rec(103, 0), rec(104, 0)] and h.overflow == 2 and len(h) == 3
    assert h.release(1, none.__contains__, everything=True) == [rec(100 + i, 0) for i in range(3)]
    assert len(h) == 0


def test_cgroup_of_reads_the_header_as_the_decoder_does() -> None:
    s = records.STRUCTS[records.KIND_EXEC]
    n = len(s.unpack_from(bytes(s.size)))
    fields = [records.KIND_EXEC, 0, 0, 4242, 4242, 0, 123, 0xDEADBEEF12345678, b"prog"] + [0] * (n - 9)
    fields[-1] = b"/bin/prog"
    payload = s.pack(*fields)
    assert s.unpack_from(payload)[7] == 0xDEADBEEF12345678
    assert cgroup_of(payload) == 0xDEADBEEF12345678
    assert cgroup_of(payload[:10]) == 0 and cgroup_of(b"\xff" + payload[1:]) == 0  # short, unknown kind


def test_an_unchanged_lookup_before_the_wait_is_over_releases_nothing_and_reads_nothing() -> None:
    h = NativeHold(hold_ns=2000 * MS)
    asked: list[int] = []

    def known(cg: int) -> bool:
        asked.append(cg)
        return cg == 7

    lookup = object()
    assert h.sort([rec(7, 0), rec(8, 0)], cg_of, lambda cg: False) == []
    assert h.release(100 * MS, known, lookup=lookup) == [rec(7, 0)]  # a new lookup: both checked
    asked.clear()
    assert h.release(200 * MS, known, lookup=lookup) == []  # the same snapshot: nothing can change
    assert asked == []
    assert h.release(2000 * MS, known, lookup=lookup) == [rec(8, 0)]  # but the wait still ends
