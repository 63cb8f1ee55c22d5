"""The gRPC adapter's remembered parts (adapter/proto_parts.py) give exactly what reading the message gives.

``from_proto.adapt`` takes an event's process description and stack entries
from tables keyed by their raw bytes when it gets what ``from_proto.decode``
returns, and reads them out of the message when it gets a bare message. Every
payload of every fixture stream, the never-repeating-stacks stream, the
hostile stream and the crafted payloads of tests/integration/test_adapter_golden.py
(repeated and merged fields, invalid UTF-8, groups past the decoder's depth
limit, wrong wire types) goes both ways, with the tables empty, warm, and
bounded so small that they start over all the time: the same events, the same
counters. The tables stay within their bounds, never hold a part too large
to remember, and never hand one event an object another event can change.
"""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2

from stellaops_runtime.adapter import common, from_proto, proto_parts
from stellaops_runtime.contracts.events import RuntimeCallEvent
from stellaops_runtime.wire.tetragon import events_pb2
from tests.integration import test_adapter_golden as golden


@pytest.fixture(scope="module")
def payloads() -> list[bytes]:
    s = golden._streams(with_json=False)
    return [p for name in ("stream-a", "upstream", "never-repeating", "hostile") for p in s[name][0]]


def _both(payloads: list[bytes]) -> tuple[list[RuntimeCallEvent | None], list[RuntimeCallEvent | None]]:
    """Each payload through decode() (remembered parts) and as a bare message (read field by field)."""
    st_parts, st_read = common.AdapterStats(), common.AdapterStats()
    via_parts: list[RuntimeCallEvent | None] = []
    via_read: list[RuntimeCallEvent | None] = []
    for p in payloads:
        d = from_proto.decode(p, st_parts)
        via_parts.append(None if d is None else from_proto.adapt(d, received_ns=5, stats=st_parts))
        try:
            msg = events_pb2.GetEventsResponse.FromString(p)
        except Exception:
            st_read.malformed["invalid_protobuf"] += 1
            via_read.append(None)
            continue
        via_read.append(from_proto.adapt(msg, received_ns=5, stats=st_read))
    assert st_parts == st_read
    return via_parts, via_read


def test_every_payload_gives_the_same_event_cold_and_warm(
    payloads: list[bytes], fresh_parts: proto_parts.Parts
) -> None:
    for _ in range(2):  # the first pass fills the tables, the second reads from them
        via_parts, via_read = _both(payloads)
        differ = [i for i, (a, b) in enumerate(zip(via_parts, via_read, strict=True)) if a != b]
        assert differ == []
    assert sum(e is not None for e in via_parts) > len(payloads) // 2
    assert len(fresh_parts.processes) > 0 and len(fresh_parts.frames) > 0


def test_tables_that_start_over_all_the_time_change_nothing(
    payloads: list[bytes], fresh_parts: proto_parts.Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proto_parts, "MAX_PROCESSES", 2)
    monkeypatch.setattr(proto_parts, "MAX_FRAMES", 3)
    via_parts, via_read = _both(payloads[::3] + payloads[1::3])
    assert via_parts == via_read
    assert len(fresh_parts.processes) <= 2 and len(fresh_parts.frames) <= 3


def test_the_tables_keep_their_bounds(fresh_parts: proto_parts.Parts) -> None:
    st = common.AdapterStats()

    def kprobe(pid: int, args: str, symbol: str) -> bytes:
        m = events_pb2.GetEventsResponse(node_name="n")
        k = m.process_kprobe
        k.process.exec_id, k.process.pid.value, k.process.arguments = f"e{pid}", pid, args
        k.function_name = "__x64_sys_read"
        f = k.user_stack_trace.add()
        f.module, f.symbol, f.offset = "/lib/x.so", symbol, pid
        return m.SerializeToString()

    for pid in range(proto_parts.MAX_PROCESSES + 10):
        d = from_proto.decode(kprobe(pid, "--x", "f"), st)
        assert from_proto.adapt(d, stats=st) is not None
        assert len(fresh_parts.processes) <= proto_parts.MAX_PROCESSES
        assert len(fresh_parts.frames) <= proto_parts.MAX_FRAMES
    # Too large to remember: a 4 MiB argument list, a 700-character symbol; read (and cut) every time.
    fresh_parts.processes.clear()
    fresh_parts.frames.clear()
    huge = kprobe(1, "A" * (4 << 20), "s" * 700)
    read = common.AdapterStats()
    want = from_proto.adapt(events_pb2.GetEventsResponse.FromString(huge), stats=read)
    assert want is not None and len(want.process.arguments) < 70_000
    for _ in range(3):
        assert from_proto.adapt(from_proto.decode(huge, st), stats=st) == want
    assert not fresh_parts.processes and not fresh_parts.frames


def test_no_event_shares_an_object_another_event_can_change(fresh_parts: proto_parts.Parts) -> None:
    st = common.AdapterStats()
    payload = golden.crafted()[0]  # a kprobe of a pod, with both stacks
    a = from_proto.adapt(from_proto.decode(payload, st), stats=st)
    b = from_proto.adapt(from_proto.decode(payload, st), stats=st)
    assert a is not None and b is not None and a == b
    assert a.pod is not None and b.pod is not None and a.container is not None
    # What the privacy filter, the container lookup and the canonicalizer change in place.
    a.process.arguments = "[REDACTED]"
    a.pod.labels["x"] = "y"
    a.pod.annotations["k"] = "v"
    a.container.image_digest = "sha256:" + "0" * 64
    a.user_stack[0].symbol = "resolved"
    a.kernel_stack[0].function_id = "id"
    c = from_proto.adapt(from_proto.decode(payload, st), stats=st)
    assert c == b and c != a


def test_the_second_view_differs_from_tetragons_schema_only_where_it_says() -> None:
    """proto_parts.SHADOW reads the same wire format: the same messages, fields, numbers and types, but the
    event bodies' ``process`` and the kprobe's two stacks, which it keeps as raw bytes."""
    real = descriptor_pb2.FileDescriptorProto.FromString(events_pb2.DESCRIPTOR.dependencies[-1].serialized_pb)
    shadow_file = proto_parts.SHADOW.DESCRIPTOR.file.dependencies[-1]
    shadow = descriptor_pb2.FileDescriptorProto.FromString(shadow_file.serialized_pb)
    assert real.name == shadow.name == "tetragon/tetragon.proto"
    changed = set()
    for rm, sm in zip(real.message_type, shadow.message_type, strict=True):
        assert rm.name == sm.name
        for rf, sf in zip(rm.field, sm.field, strict=True):
            assert (rf.name, rf.number, rf.oneof_index) == (sf.name, sf.number, sf.oneof_index)
            if rf != sf:
                assert (
                    sf.type == sf.TYPE_BYTES and sf.label == sf.LABEL_REPEATED and rf.type == rf.TYPE_MESSAGE
                )
                changed.add(f"{rm.name}.{rf.name}")
    bodies = {
        events_pb2.GetEventsResponse.DESCRIPTOR.fields_by_name[k].message_type.name
        for k in common.HANDLED_KINDS
    }
    assert changed == {f"{b}.process" for b in bodies} | {
        "ProcessKprobe.kernel_stack_trace",
        "ProcessKprobe.user_stack_trace",
    }
