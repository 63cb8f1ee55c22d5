"""The gRPC adapter's shortcut past Tetragon's schema accepts and refuses exactly what that schema does.

``from_proto.decode`` decodes only the second view (adapter/proto_parts.py), and
``adapt`` builds the event from it when the process and every stack entry are
known or small enough to be read alone, and the payload is that one event body
followed by its node name and time (adapter/known_parts.py); anything else is
decoded whole with Tetragon's schema, as before. Each case here is a payload
the shortcut could get wrong, given after a clean payload of the same process
(so the process is known): an event body that a later one replaces (the
replaced one holding a broken process or frame), extra or repeated top-level
fields, stack entries with invalid UTF-8, broken bytes, or groups nested up to
and past the schema's depth limit. Each must give what reading the message that
Tetragon's schema decodes gives: the same event, or ``invalid_protobuf``.
"""

from __future__ import annotations

import pytest
from google.protobuf.internal import encoder
from google.protobuf.timestamp_pb2 import Timestamp

from stellaops_runtime.adapter import common, from_proto, proto_parts
from stellaops_runtime.contracts.events import RuntimeCallEvent
from stellaops_runtime.wire.tetragon import events_pb2, tetragon_pb2


def _ld(field: int, data: bytes) -> bytes:
    """One length-delimited field: tag, length, bytes."""
    out = bytearray()
    encoder._EncodeVarint(out.extend, field << 3 | 2)
    encoder._EncodeVarint(out.extend, len(data))
    return bytes(out) + data


def _process() -> bytes:
    p = tetragon_pb2.Process(exec_id="ZXhlYw==", binary="/usr/bin/curl", arguments="-s x")
    p.pid.value = 42
    p.pod.namespace, p.pod.name = "shop", "curl-1"
    p.pod.container.id = "containerd://abc"
    return p.SerializeToString()


def _frame(module: str = "/usr/lib/libc.so.6", symbol: str = "connect", offset: int = 0x1234) -> bytes:
    return tetragon_pb2.StackTraceEntry(module=module, symbol=symbol, offset=offset).SerializeToString()


_KPROBE = events_pb2.GetEventsResponse.DESCRIPTOR.fields_by_name["process_kprobe"].number
_EXEC = events_pb2.GetEventsResponse.DESCRIPTOR.fields_by_name["process_exec"].number
_K = tetragon_pb2.ProcessKprobe.DESCRIPTOR.fields_by_name
_NODE = _ld(1000, b"node-1")
_TIME = _ld(1001, Timestamp(seconds=1_795_000_000, nanos=7).SerializeToString())


def _kprobe(*, user: list[bytes] | None = None, process: bytes | None = None) -> bytes:
    body = _ld(_K["process"].number, _process() if process is None else process)
    body += _ld(_K["function_name"].number, b"__x64_sys_connect")
    body += _ld(_K["kernel_stack_trace"].number, _frame("", "do_syscall_64", 100))
    for f in [_frame()] if user is None else user:
        body += _ld(_K["user_stack_trace"].number, f)
    return _ld(_KPROBE, body)


def _nested_groups(n: int) -> bytes:
    """An empty stack entry of ``n`` nested unknown groups (field 15): 2 * n bytes."""
    return b"\x7b" * n + b"\x7c" * n


def _both(payload: bytes) -> tuple[RuntimeCallEvent | None, RuntimeCallEvent | None, common.AdapterStats]:
    """``payload`` through decode() and adapt() after a clean event of its process, and read field by field
    from what Tetragon's schema decodes (or counted invalid_protobuf)."""
    short, whole = common.AdapterStats(), common.AdapterStats()
    warm = _kprobe() + _NODE + _TIME
    d = from_proto.decode(warm, short)
    assert d is not None and from_proto.adapt(d, received_ns=3, stats=short) is not None
    from_proto.adapt(events_pb2.GetEventsResponse.FromString(warm), received_ns=3, stats=whole)
    d = from_proto.decode(payload, short)
    a = None if d is None else from_proto.adapt(d, received_ns=3, stats=short)
    try:
        msg = events_pb2.GetEventsResponse.FromString(payload)
    except Exception:
        whole.malformed["invalid_protobuf"] += 1
        b = None
    else:
        b = from_proto.adapt(msg, received_ns=3, stats=whole)
    assert short == whole
    return a, b, short


BROKEN = b"\x0a\x05ab"  # a length running past the end of its message
CASES = {
    "plain": _kprobe() + _NODE + _TIME,
    "a new frame": _kprobe(user=[_frame(offset=0x999), _frame()]) + _NODE + _TIME,
    "no time, no node": _kprobe(),
    "time first": _TIME + _kprobe() + _NODE,
    "node given twice": _kprobe() + _NODE + _NODE + _TIME,
    "time given twice": _kprobe() + _NODE + _TIME + _ld(1001, b"\x10\x09"),
    "cluster name": _kprobe() + _NODE + _TIME + _ld(1003, b"c1"),
    "unknown top-level field": _kprobe() + _NODE + _TIME + b"\xf8\x3e\x01",
    "body given twice": _kprobe() + _kprobe(user=[_frame(offset=0x777)]) + _NODE + _TIME,
    "replaced exec with a broken process": _ld(_EXEC, _ld(1, BROKEN)) + _kprobe() + _NODE + _TIME,
    "replaced kprobe with a broken frame": (
        _kprobe(user=[BROKEN]) + _ld(_EXEC, _ld(1, _process())) + _kprobe() + _NODE + _TIME
    ),
    "exec with a broken process between": _kprobe() + _ld(_EXEC, _ld(1, BROKEN)) + _kprobe() + _NODE + _TIME,
    "replaced kprobe, valid": _kprobe(user=[_frame(offset=1)]) + _ld(_EXEC, b"") + _kprobe() + _NODE + _TIME,
    "a broken new frame": _kprobe(user=[BROKEN]) + _NODE + _TIME,
    "invalid UTF-8 in a new frame": _kprobe(user=[_ld(3, b"\xff\xfe")]) + _NODE + _TIME,
    "NUL in a new frame": _kprobe(user=[_frame(symbol="con\x00nect")]) + _NODE + _TIME,
    "98 nested groups in a new frame": _kprobe(user=[_nested_groups(98)]) + _NODE + _TIME,
    "99 nested groups in a new frame": _kprobe(user=[_nested_groups(99)]) + _NODE + _TIME,
    "a large new frame": _kprobe(user=[_frame(symbol="x" * 300)]) + _NODE + _TIME,
    "a broken large frame": _kprobe(user=[_ld(3, b"\xff" * 300)]) + _NODE + _TIME,
    "no process": _ld(_KPROBE, _ld(_K["function_name"].number, b"f")) + _NODE + _TIME,
    "an unknown process": _kprobe(process=_process() + _ld(5, b"/tmp")) + _NODE + _TIME,
    "a broken process": _kprobe(process=BROKEN) + _NODE + _TIME,
    "300 frames": _kprobe(user=[_frame(offset=i) for i in range(300)]) + _NODE + _TIME,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_shortcut_gives_what_tetragons_schema_gives(name: str, fresh_parts: proto_parts.Parts) -> None:
    for _ in range(2):  # the second time, new frames are known
        a, b, stats = _both(CASES[name])
        assert a == b
    if "broken" in name or "UTF-8" in name or "99 nested" in name:
        assert a is None and stats.malformed["invalid_protobuf"] == 1
    elif name == "no process":
        assert a is None and stats.malformed["no_process"] == 1
    else:
        assert a is not None


def test_the_depth_limit_is_where_max_alone_frame_bytes_assumes() -> None:
    """98 nested groups fit in MAX_ALONE_FRAME_BYTES, and are what a payload's stack entry accepts at most
    (if the decoder's limit moved, an entry read alone could be accepted where its payload is refused)."""
    parse = events_pb2.GetEventsResponse.FromString
    assert len(_nested_groups(98)) == proto_parts.MAX_ALONE_FRAME_BYTES
    parse(_kprobe(user=[_nested_groups(98)]))
    with pytest.raises(Exception, match=r"(?i)pars|decod"):
        parse(_kprobe(user=[_nested_groups(99)]))
    tetragon_pb2.StackTraceEntry.FromString(_nested_groups(99))  # alone, deeper still is accepted


def test_the_shortcut_is_taken_for_a_known_process(
    fresh_parts: proto_parts.Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the process known and nothing unusual, Tetragon's schema does not decode the payload at all."""
    stats = common.AdapterStats()
    d = from_proto.decode(CASES["plain"], stats)
    assert d is not None and from_proto.adapt(d, stats=stats) is not None

    def refuse(payload: bytes) -> None:
        raise AssertionError("decoded whole")

    monkeypatch.setattr(from_proto, "_PARSE", refuse)
    for name in ("plain", "a new frame", "98 nested groups in a new frame", "NUL in a new frame"):
        assert from_proto.adapt_payload(CASES[name], 3, stats) is not None
