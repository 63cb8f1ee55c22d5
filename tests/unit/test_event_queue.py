"""sources/queue.py: the receive queue's two bounds, and large payloads counted until processed."""

from __future__ import annotations

from stellaops_runtime.sources.queue import LARGE_PAYLOAD, EventQueue

MIB = 1 << 20


def test_capacity_drops_and_counts_the_newest() -> None:
    q = EventQueue(2)
    assert [q.put(b"a"), q.put(b"b"), q.put(b"c")] == [True, True, False]
    assert (q.dropped, q.dropped_oversize, q.enqueued, len(q)) == (1, 0, 2, 2)


def test_a_single_payload_of_any_size_is_taken_when_nothing_is_held() -> None:
    q = EventQueue(10, max_bytes=1 * MIB)
    assert q.put(b"x" * 8 * MIB)
    assert not q.put(b"y" * (LARGE_PAYLOAD + 1))  # held 8 MiB: past the bound
    assert q.put(b"small")  # ordinary events are bounded by capacity alone
    assert (q.dropped, q.dropped_oversize) == (1, 1)


def test_a_taken_batch_counts_against_the_byte_bound_until_done() -> None:
    q = EventQueue(10, max_bytes=3 * MIB)
    assert q.put(b"a" * 2 * MIB)
    batch = q.take(10)
    assert (q.bytes, q.in_flight_bytes) == (0, 2 * MIB)
    assert not q.put(b"b" * 2 * MIB)  # 2 MiB still being processed + 2 MiB > 3 MiB
    assert q.put(b"c" * MIB)  # exactly at the bound
    q.done(batch)
    assert (q.bytes, q.in_flight_bytes) == (MIB, 0)
    assert q.put(b"d" * 2 * MIB)
    assert [len(p) for p, _ in q.take(10)] == [MIB, 2 * MIB]
    assert q.dropped_oversize == 1


def test_drops_are_reported_once_with_their_wall_clock_span() -> None:
    import time

    q = EventQueue(1)
    assert q.take_drops() is None
    before = time.time_ns()
    q.put(b"a")
    assert [q.put(b"b"), q.put(b"c")] == [False, False]
    first, last, count = q.take_drops() or (0, 0, 0)
    assert count == 2 and before <= first <= last <= time.time_ns()
    assert q.take_drops() is None  # reported once
