"""What the gRPC adapter's faster slow path may not change (issue 13, docs/benchmarks.md section 1).

``from_proto.adapt`` now tells whether an event body has a ``process`` from
the second view's raw occurrences of that field (adapter/proto_parts.py), and
remembers only stack frames whose texts are clean. Both must give exactly
what reading the decoded message field by field gives: a body without a
process is counted ``no_process``; an empty or twice-given one is still a
process; a frame with a NUL is repaired (and counted) on every event that
carries it, and is never served from the table.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.adapter import common, from_proto, proto_parts
from stellaops_runtime.contracts.events import RuntimeCallEvent
from stellaops_runtime.wire.tetragon import events_pb2


def _kprobe(*, process: str = "set", symbol: str = "getaddrinfo") -> bytes:
    m = events_pb2.GetEventsResponse(node_name="node-1")
    m.time.seconds = 1_795_000_000
    k = m.process_kprobe
    k.function_name = "__x64_sys_connect"
    if process == "set":
        k.process.exec_id, k.process.pid.value, k.process.binary = "ZXhlYw==", 42, "/usr/bin/curl"
    elif process == "empty":
        k.process.SetInParent()
    f = k.user_stack_trace.add()
    f.module, f.symbol, f.offset = "/usr/lib/x86_64-linux-gnu/libc.so.6", symbol, 0x1234
    k.kernel_stack_trace.add(symbol="do_syscall_64", offset=100)
    payload = m.SerializeToString()
    if process == "twice":  # a second occurrence of the body's process field: protobuf merges the two
        again = events_pb2.GetEventsResponse()
        again.process_kprobe.process.cwd = "/tmp"
        payload += again.SerializeToString()
    return payload


def _both_ways(
    payload: bytes,
) -> tuple[RuntimeCallEvent | None, RuntimeCallEvent | None, common.AdapterStats]:
    via_parts, via_read = common.AdapterStats(), common.AdapterStats()
    d = from_proto.decode(payload, via_parts)
    assert d is not None
    a = from_proto.adapt(d, received_ns=7, stats=via_parts)
    b = from_proto.adapt(events_pb2.GetEventsResponse.FromString(payload), received_ns=7, stats=via_read)
    assert via_parts == via_read
    return a, b, via_parts


@pytest.mark.parametrize("process", ["absent", "empty", "set", "twice"])
def test_whether_a_body_has_a_process_is_what_the_message_says(
    process: str, fresh_parts: proto_parts.Parts
) -> None:
    for _ in range(2):  # cold, then served from the tables
        a, b, stats = _both_ways(_kprobe(process=process))
        assert a == b
        if process == "absent":
            assert a is None and stats.malformed["no_process"] == 1
        else:
            assert a is not None and stats.events["syscall"] == 1 and not stats.malformed
    if process == "twice":  # whatever the real decoder makes of the two, the parts key reads the same
        assert a is not None and a.process.cwd == "/tmp"


def test_a_frame_with_a_nul_is_repaired_on_every_event_and_never_remembered(
    fresh_parts: proto_parts.Parts,
) -> None:
    payload = _kprobe(symbol="getaddr\x00info")
    for _ in range(3):
        a, b, stats = _both_ways(payload)
        assert a == b and a is not None
        assert a.user_stack[0].symbol == "getaddr\ufffdinfo"
        assert stats.repaired["nul_replaced"] == 1
    # The clean kernel frame is remembered; the user frame with the NUL never is.
    assert [part[1] for part in fresh_parts.frames.values()] == ["do_syscall_64"]
