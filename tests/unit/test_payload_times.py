"""The event times of payloads dropped at the shutdown deadline (sources/payload_times.py), and the
gap the tracker makes of them (hotsymbols/gaps.py ``own_drop(event_span=...)``)."""

from __future__ import annotations

import json
import random

from stellaops_runtime.adapter import validate
from stellaops_runtime.contracts.hotsymbols import NODE_WIDE
from stellaops_runtime.hotsymbols.gaps import GapTracker
from stellaops_runtime.sources.payload_times import (
    CHECK_EVERY,
    MIN_READ,
    TimesRead,
    event_time_span,
    read_event_times,
)
from stellaops_runtime.wire.tetragon import events_pb2
from tests.unit.test_gaps import event

NOW = 1_796_515_200 * 10**9  # 2026-12-06T00:00:00Z
S = 10**9


def _proto(ts: int, node: str = "n") -> bytes:
    msg = events_pb2.GetEventsResponse(node_name=node)
    msg.time.FromNanoseconds(ts)
    return msg.SerializeToString()


def _line(ts_text: str, *, time_first: bool = False) -> bytes:
    obj = {"time": ts_text, "node_name": "n"} if time_first else {"node_name": "n", "time": ts_text}
    return json.dumps(obj, separators=(",", ":")).encode()


def test_proto_payloads_give_their_earliest_and_latest_time_in_any_order() -> None:
    times = [NOW - 5 * S, NOW - 3600 * S, NOW - 60 * S]
    assert event_time_span([_proto(t) for t in times], json_lines=False, now_ns=NOW) == (
        NOW - 3600 * S,
        NOW - 5 * S,
    )


def test_a_proto_payload_with_its_time_first_is_read_by_the_full_decode() -> None:
    ts = NOW - 7 * S
    msg = events_pb2.GetEventsResponse()
    msg.time.FromNanoseconds(ts)
    time_first = msg.SerializeToString() + events_pb2.GetEventsResponse(node_name="n").SerializeToString()
    twice = _proto(ts - S) + _proto(ts)  # the time field twice: protobuf merges, as the adapter reads it
    assert event_time_span([time_first], json_lines=False, now_ns=NOW) == (ts, ts)
    assert event_time_span([twice], json_lines=False, now_ns=NOW) == (ts, ts)


def test_times_the_adapter_would_replace_and_undecodable_payloads_are_left_out() -> None:
    bad = [
        b"",
        b"\x00" * 64,
        b"\xff" * 40,  # not a message
        _proto(validate.MIN_EVENT_NS - 1),  # before 2020: stamped with the arrival time
        _proto(NOW + (validate.MAX_FUTURE_SECONDS + 1) * S),  # more than a day ahead: stamped too
        events_pb2.GetEventsResponse(node_name="n").SerializeToString(),  # no time
    ]
    assert event_time_span(bad, json_lines=False, now_ns=NOW) is None
    assert event_time_span([*bad, _proto(NOW - S)], json_lines=False, now_ns=NOW) == (NOW - S, NOW - S)
    assert event_time_span([], json_lines=False, now_ns=NOW) is None


def test_export_lines_fast_and_slow_and_hostile() -> None:
    lines = [
        _line("2026-12-05T23:59:59.5Z"),
        _line("2026-12-05T22:00:00Z", time_first=True),  # not the last member: json decoded
        b"[1, 2]",
        b'{"time": 5}',
        b'{"time": "not a time"}',
        b"\xff\xfe{",
        b"{" * 100_000,  # nesting past the decoder's recursion limit
        b'{"node_name":"n","time":"2026-12-05T23:00:00Z"}\x00',
    ]
    assert event_time_span(lines, json_lines=True, now_ns=NOW) == (NOW - 7200 * S, NOW - S // 2)


def _rows(t: GapTracker) -> list[tuple[str, str, int, int, int]]:
    return sorted(
        (w.image_digest, w.node_name, w.gap_start_ns, w.gap_end_ns, w.dropped_events)
        for w in t.drain([])
        if w.gap_end_ns
    )


def test_a_shutdown_drop_with_its_event_span_is_a_gap_over_every_window_to_the_latest_dropped() -> None:
    """Across midnight: processed events end at 23:59:50, the dropped ones run to 00:00:40 the next
    day. Before, the event-time gap was the one instant 23:59:50."""
    t = GapTracker(window_seconds=10)
    t.note(event(NOW - 10 * S))
    t.after_batch()
    wall = NOW + 3600 * S  # the drops' arrival, an hour later (a replayed stream)
    t.own_drop("n1", wall, wall + S, 9, event_span=(NOW + 40 * S, NOW - 5 * S))
    rows = _rows(t)
    event_rows = [r for r in rows if r[2] < wall]
    starts = {r[2] - r[2] % (10 * S) for r in event_rows}
    assert starts == {NOW + k * 10 * S for k in range(-1, 5)}, event_rows  # 23:59:50 .. 00:00:40
    assert min(r[2] for r in event_rows) == NOW - 10 * S
    assert max(r[3] for r in event_rows) > NOW + 40 * S  # the latest dropped event inside
    assert sum(r[4] for r in rows) == 9 and all(r[0] == NODE_WIDE for r in rows)


def _replayed_queue(n: int) -> tuple[list[int], list[bytes]]:
    """A replayed stream's queue, oldest first (the queue is FIFO): event ``i`` at ``NOW - (n - i)`` s."""
    times = [NOW - (n - i) * S for i in range(n)]
    return times, [_proto(t) for t in times]


def test_a_read_cut_short_by_its_budget_stops_and_says_how_many_times_were_not_read() -> None:
    """queueSize may be 10,000,000: reading every dropped payload's time (~3 us each) would hold the
    pipeline thread ~30 s, past the deadline of the last drain. Given a budget (a deadline on a clock
    the caller passes), the read stops there and reports the payloads left unread. Both ends of the
    queue are read first, so a replayed stream's span is whole even when cut short."""
    times, payloads = _replayed_queue(20_000)
    calls = 0

    def clock() -> int:  # one tick a call: past the budget at the third look
        nonlocal calls
        calls += 1
        return calls

    got = read_event_times(payloads, json_lines=False, now_ns=NOW, until_ns=3, clock=clock)
    assert got.read == MIN_READ + 2 * CHECK_EVERY < len(payloads), got  # looks: 64, then every 1,024
    assert got.unread == len(payloads) - got.read
    assert calls == 3  # it stopped at the first look past the budget
    assert got.span == (times[0], times[-1])  # the ends: the earliest and the latest of this stream


def test_a_budget_already_spent_still_reads_both_ends_and_never_less_than_the_times_read() -> None:
    """Hostile order (times shuffled): the span is that of the payloads read, never narrower."""
    times, payloads = _replayed_queue(5_000)
    order = list(range(len(times)))
    random.Random(7).shuffle(order)
    times, payloads = [times[i] for i in order], [payloads[i] for i in order]
    got = read_event_times(payloads, json_lines=False, now_ns=NOW, until_ns=0, clock=lambda: 1)
    assert got.read == MIN_READ and got.unread == len(payloads) - got.read
    assert got.span is not None
    low, high = got.span
    assert low <= min(times[0], times[-1]) and high >= max(times[0], times[-1])
    assert min(times) <= low and high <= max(times)
    # Everything read lies inside the span: read the same payloads whole and compare.
    for n in (0, 1, 2, 3):
        small = read_event_times(payloads[:n], json_lines=False, now_ns=NOW, until_ns=0, clock=lambda: 1)
        assert small.unread == 0 and small.read == n
        assert small.span == (event_time_span(payloads[:n], json_lines=False, now_ns=NOW) if n else None)


def test_with_no_budget_every_time_is_read() -> None:
    times, payloads = _replayed_queue(3_000)
    random.Random(3).shuffle(payloads)
    got = read_event_times(payloads, json_lines=False, now_ns=NOW)
    assert got == TimesRead(span=(times[0], times[-1]), read=len(payloads), unread=0)
