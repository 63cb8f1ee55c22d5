"""adapter/rawkey.py: the fast path's key is the raw event without its time, and never a guess."""

from __future__ import annotations

import random

import orjson
from google.protobuf import json_format

from stellaops_runtime.adapter import rawkey
from stellaops_runtime.adapter.common import rfc3339_to_ns
from stellaops_runtime.wire.tetragon import events_pb2
from tests.wire_bytes import varint as _varint

S = 1_000_000_000
T = 1_795_000_000 * S + 123_456_789


def _msg(t_ns: int = T, fn: str = "__x64_sys_write") -> events_pb2.GetEventsResponse:
    m = events_pb2.GetEventsResponse()
    k = m.process_kprobe
    k.process.exec_id, k.process.arguments = "ZXhlYy0x", "--password=hunter2"
    k.process.pid.value = 42
    k.function_name = fn
    f = k.user_stack_trace.add()
    f.module, f.offset = "/usr/lib/libc.so.6", 0x1234
    m.node_name = "node-a"
    m.time.FromNanoseconds(t_ns)
    return m


def _line(m: events_pb2.GetEventsResponse) -> bytes:
    return orjson.dumps(
        orjson.loads(json_format.MessageToJson(m, preserving_proto_field_name=True, indent=None))
    )


def test_the_time_is_all_that_is_left_out() -> None:
    a, b = _msg(T).SerializeToString(), _msg(T + 7 * S + 1).SerializeToString()
    ka, kb = rawkey.proto_key(a), rawkey.proto_key(b)
    assert ka is not None and kb is not None
    assert ka[0] == kb[0] and (ka[1], kb[1]) == (T, T + 7 * S + 1)
    other = rawkey.proto_key(_msg(T, fn="__x64_sys_read").SerializeToString())
    assert other is not None and other[0] != ka[0]
    # The key is the message with its time field removed, byte for byte.
    no_time = _msg(T)
    no_time.ClearField("time")
    assert ka[0] == no_time.SerializeToString()


def test_the_time_anywhere_among_the_fields() -> None:
    m = _msg(T)
    t = m.time.SerializeToString()
    no_time = _msg(T)
    no_time.ClearField("time")
    first = b"\xca\x3e" + bytes([len(t)]) + t + no_time.SerializeToString()
    got = rawkey.proto_key(first)
    assert got == (no_time.SerializeToString(), T)
    assert events_pb2.GetEventsResponse.FromString(first) == m


def test_what_takes_the_ordinary_path() -> None:
    raw = _msg(T).SerializeToString()
    assert rawkey.proto_key(raw + raw[-14:]) is None  # the time twice: protobuf would merge them
    no_time = _msg(T)
    no_time.ClearField("time")
    assert rawkey.proto_key(no_time.SerializeToString()) is None
    assert rawkey.proto_key(_msg(-5 * S).SerializeToString()) is None  # before 1970: clamped there
    assert rawkey.proto_key(_msg(0).SerializeToString()) is None
    assert rawkey.proto_key(b"\x0b\x0c") is None  # a group: not Tetragon's
    assert rawkey.proto_key(b"\xca\x3e\x02\x08") is None  # a length past the end
    assert rawkey.proto_key(b"\xca\x3e\x03\x08\xff\xff") is None  # a varint past the end
    assert rawkey.proto_key(b"\xca\x3e\x01\x99") is None  # a time that does not decode
    assert rawkey.proto_key(b"\xff" * 11) is None  # a tag longer than 10 bytes
    assert rawkey.proto_key(b"") is None


def test_unknown_fields_in_the_time_are_read_as_the_adapter_reads_them() -> None:
    m = _msg(T)
    t = m.time.SerializeToString() + b"\x18\x05"  # field 3: unknown to Timestamp
    no_time = _msg(T)
    no_time.ClearField("time")
    raw = no_time.SerializeToString() + b"\xca\x3e" + bytes([len(t)]) + t
    decoded = events_pb2.GetEventsResponse.FromString(raw)
    assert rawkey.proto_key(raw) == (no_time.SerializeToString(), decoded.time.ToNanoseconds())


def test_every_prefix_and_random_corruption_never_raises() -> None:
    raw = _msg(T).SerializeToString()
    for i in range(len(raw)):
        got = rawkey.proto_key(raw[:i])
        assert got is None or got[1] == T  # a prefix ending right after a complete time field
    rng = random.Random(7)
    for _ in range(3000):
        b = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        got = rawkey.proto_key(bytes(b))
        assert got is None or (isinstance(got[0], bytes) and got[1] > 0)


def test_json_lines() -> None:
    a, b = _line(_msg(T)), _line(_msg(T + S))
    ka, kb = rawkey.json_key(a), rawkey.json_key(b)
    assert ka is not None and kb is not None
    assert ka[0] == kb[0] and ka[1] == T and kb[1] == T + S
    text = orjson.loads(a)["time"]
    assert ka[1] == rfc3339_to_ns(text) and text.encode() not in ka[0]
    assert rawkey.json_key(a + b"\n") is not None  # trailing newline of an export file


def test_json_lines_that_take_the_ordinary_path() -> None:
    line = _line(_msg(T))
    obj = orjson.loads(line)
    moved = orjson.dumps({"time": obj["time"], **{k: v for k, v in obj.items() if k != "time"}})
    assert rawkey.json_key(moved) is None  # the time not last
    nested = orjson.dumps({"process_kprobe": {**obj["process_kprobe"], "time": obj["time"]}})
    assert rawkey.json_key(nested) is None  # a "time" that closes an inner object
    escaped = line.replace(b'"time":"2026', b'"time":"\\u00326')
    assert rawkey.json_key(escaped) is None
    assert rawkey.json_key(line.replace(b"T", b"\x00", 1)[:-30] + b',"time":"2026-13-45T99:99:99Z"}') is None
    assert rawkey.json_key(b'{"time":"1969-12-31T23:59:59Z"}') is None  # before 1970
    assert rawkey.json_key(b"x" * 10_000_000) is None
    assert rawkey.json_key(b"") is None


def _field(rng: random.Random) -> bytes:
    """One field of a would-be Timestamp: seconds or nanos in and out of range, unknown, or junk."""
    kind = rng.randrange(9)
    if kind == 0:
        return b"\x08" + _varint(rng.randrange(1 << 64))
    if kind == 1:
        return b"\x08" + _varint(rng.choice([0, 1, 1_795_000_000, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]))
    if kind == 2:
        return b"\x10" + _varint(rng.choice([0, 999_999_999, 1 << 30, (1 << 31) - 1, 1 << 31, (1 << 64) - 1]))
    if kind == 3:
        return b"\x10" + _varint(rng.randrange(1 << 40))
    if kind == 4:  # the same value spelled with redundant continuation bytes
        return b"\x08" + bytes([0x81, 0x80, 0x80, 0x00])
    if kind == 5:
        return b"\x18" + _varint(rng.randrange(1000))  # unknown field 3
    if kind == 6:
        return b"\x22\x02ab"  # unknown length-delimited field 4
    if kind == 7:
        return bytes([0x08, 0xFF])  # a varint cut short
    return bytes([rng.randrange(256) for _ in range(rng.randrange(1, 4))])


def test_the_time_is_read_as_protobuf_reads_it_whatever_its_encoding() -> None:
    """proto_key's time is the one protobuf reads from the whole message (seconds and nanos in and
    out of range, repeated, reordered, unknown fields, redundant varint bytes), or both refuse."""
    rng = random.Random(11)
    no_time = _msg(T)
    no_time.ClearField("time")
    body = no_time.SerializeToString()
    for _ in range(6000):
        t = b"".join(_field(rng) for _ in range(rng.randrange(0, 4)))
        raw = body + b"\xca\x3e" + _varint(len(t)) + t
        try:
            decoded = events_pb2.GetEventsResponse.FromString(raw)
        except Exception:
            assert rawkey.proto_key(raw) is None, t.hex()
            continue
        want = decoded.time.seconds * S + decoded.time.nanos
        got = rawkey.proto_key(raw)
        assert got == ((body, want) if want > 0 else None), t.hex()
