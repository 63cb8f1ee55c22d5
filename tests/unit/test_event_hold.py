"""sources/event_hold.py: reading a raw GetEventsResponse's time, and the hold an outage starts by.

Hostile payloads (cut, wrong wire types, out-of-range times, garbage) give no time and
never raise: the receive loop's last payload may be anything the server sent.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.sources.event_hold import CACHE_HOLD_NS, MAX_LAG_NS, EventHold, payload_time_ns
from stellaops_runtime.wire.tetragon import events_pb2

S = 1_000_000_000


def _payload(time_ns: int | None, *, binary: str = "/usr/bin/app") -> bytes:
    msg = events_pb2.GetEventsResponse(node_name="n1")
    msg.process_kprobe.process.binary = binary
    if time_ns is not None:
        msg.time.FromNanoseconds(time_ns)
    return msg.SerializeToString()


@pytest.mark.parametrize("t", [0, 1, 1_796_000_000 * S + 123, -5 * S, 253_402_300_799 * S])
def test_the_time_is_read_without_decoding_the_event(t: int) -> None:
    assert payload_time_ns(_payload(t, binary="a\x00b" * 1000)) == t


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xff" * 11,  # a varint that never ends
        b"\xca\x3e",  # the time field's key, then nothing
        b"\xca\x3e\x05\x08",  # its length past the end
        b"\xca\x3e\x02\x08\xff",  # a Timestamp cut in its seconds
        b"\xc8\x3e\x05",  # field 1001 as a varint: not a Timestamp
        b"\x0f",  # wire type 7
        b"garbage\x00bytes",
    ],
)
def test_malformed_payloads_give_no_time(payload: bytes) -> None:
    assert payload_time_ns(payload) is None


def test_no_time_field_and_out_of_range_times_give_none() -> None:
    assert payload_time_ns(_payload(None)) is None
    huge = events_pb2.GetEventsResponse()
    huge.time.seconds = 1 << 62  # past 9999: no time a Tetragon stamps
    assert payload_time_ns(huge.SerializeToString()) is None
    bad_nanos = events_pb2.GetEventsResponse()
    bad_nanos.time.nanos = -1
    assert payload_time_ns(bad_nanos.SerializeToString()) is None


def test_the_hold_is_the_cache_plus_the_largest_recent_lag_of_a_backlog() -> None:
    hold = EventHold()
    assert hold.ns() == CACHE_HOLD_NS >= 30 * S  # Tetragon's event cache: 15 retries, 2 s apart
    now = 1_796_000_000 * S
    hold.sample(_payload(now - 200 * S), now)
    hold.sample(_payload(now), now)  # caught up: the backlog seen lately still counts
    assert hold.ns() == CACHE_HOLD_NS + 200 * S
    hold.sample(_payload(now + 3_600 * S), now)  # ahead of its arrival: no lag
    hold.sample(_payload(0), now)  # 1970: another clock's stamp (a replayed recording, a hostile one)
    hold.sample(_payload(now - MAX_LAG_NS - 1), now)
    assert hold.ns() == CACHE_HOLD_NS + 200 * S
    hold.sample(_payload(now - MAX_LAG_NS), now)  # the largest lag taken for a backlog
    assert hold.ns() == CACHE_HOLD_NS + MAX_LAG_NS
    for _ in range(60):  # a minute of samples on time: the old lag is forgotten
        hold.sample(_payload(now), now)
    assert hold.ns() == CACHE_HOLD_NS
    hold.sample(None, now)
    hold.sample(b"\xff" * 20, now)
    assert hold.ns() == CACHE_HOLD_NS


def test_the_walk_is_bounded_on_a_payload_of_countless_tiny_fields() -> None:
    """A hostile server's 20 MB of two-byte unknown fields before the time: the tick reads it on the
    event loop, so the walk stops after a few dozen top-level fields (a real response has about 3
    before its time) instead of walking ten million of them; no time is read from it."""
    tail = _payload(1_796_000_000 * S)
    assert payload_time_ns(b"\x10\x00" * 10_000_000 + tail) is None
    assert payload_time_ns(b"\x10\x00" * 10 + tail) == 1_796_000_000 * S


def test_the_time_is_read_before_a_node_s_many_labels() -> None:
    """Tetragon (since cilium/tetragon#3759) puts the Kubernetes node's labels on every event, one
    top-level map entry each, after its time. A node with node-feature-discovery or a GPU operator
    has well over 64 labels: the walk's bound gave no time for every event there, so a Tetragon
    behind never widened the hold. The labels after the time are not walked."""
    msg = events_pb2.GetEventsResponse(node_name="n1", cluster_name="prod")
    msg.process_kprobe.process.binary = "/usr/bin/app"
    msg.time.FromNanoseconds(1_796_000_000 * S)
    for i in range(300):
        msg.node_labels[f"feature.node.kubernetes.io/cpu-cpuid.F{i}"] = "true"
    assert payload_time_ns(msg.SerializeToString()) == 1_796_000_000 * S
    hold = EventHold()
    hold.sample(msg.SerializeToString(), 1_796_000_000 * S + 200 * S)  # 200 s behind
    assert hold.ns() == CACHE_HOLD_NS + 200 * S
