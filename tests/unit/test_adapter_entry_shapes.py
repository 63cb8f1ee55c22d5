"""A stack entry known by its shape gives what decoding it gives (adapter/proto_parts.py ``Parts.shaped``).

A stack whose frames never repeat holds the functions of earlier stacks at other
offsets: the entry's bytes differ from a known entry's only in the leading offset
field. ``Parts.shaped`` reads that varint and looks the rest up instead of decoding
the entry. These tests give it entries as Tetragon writes them and entries a
hostile writer could: the offset given again after the rest (with the same value,
another one, or 0), a leading offset of 0 or written overlong, a varint too long to
read here, the address first, a NUL in a text, invalid UTF-8. Each payload goes
through ``from_proto.decode``/``adapt`` (the shortcut) and through Tetragon's schema
field by field: the same events and counters, and the hostile shapes are never
remembered (they take the old path: the entry decoded).
"""

from __future__ import annotations

import random

import pytest

from stellaops_runtime.adapter import common, from_proto, known_parts, proto_parts
from stellaops_runtime.contracts.events import RuntimeCallEvent
from stellaops_runtime.wire.tetragon import events_pb2, tetragon_pb2
from tests.wire_bytes import varint

_SYMBOL, _MODULE = b"getaddrinfo", b"/usr/lib/x86_64-linux-gnu/libc.so.6"


def _text(field: int, value: bytes) -> bytes:
    return bytes((field << 3 | 2,)) + varint(len(value)) + value


REST = _text(3, _SYMBOL) + _text(4, _MODULE)  # symbol, module: what follows Tetragon's offset field


def _entry(offset: int) -> bytes:
    return b"\x10" + varint(offset) + REST


def _payload(*entries: bytes, seconds: int = 1_795_000_000) -> bytes:
    """A kprobe of one process whose user stack is ``entries`` (raw bytes, as given)."""
    p = tetragon_pb2.Process(exec_id="ZXhlYw==", binary="/usr/bin/curl", arguments="-s x")
    p.pid.value = 42
    m = proto_parts.SHADOW(node_name="node-1")
    m.time.seconds = seconds
    k = m.process_kprobe
    k.process.append(p.SerializeToString())
    k.function_name = "__x64_sys_connect"
    k.kernel_stack_trace.append(
        tetragon_pb2.StackTraceEntry(symbol="do_syscall_64", offset=100).SerializeToString()
    )
    k.user_stack_trace.extend(entries)
    return m.SerializeToString()


def _both(payload: bytes) -> RuntimeCallEvent | None:
    """The payload through the shortcut and through Tetragon's schema: the same event and counters."""
    via_parts, via_read = common.AdapterStats(), common.AdapterStats()
    d = from_proto.decode(payload, via_parts)
    a = None if d is None else from_proto.adapt(d, received_ns=7, stats=via_parts)
    try:
        msg = events_pb2.GetEventsResponse.FromString(payload)
    except Exception:
        via_read.malformed["invalid_protobuf"] += 1
        b = None
    else:
        b = from_proto.adapt(msg, received_ns=7, stats=via_read)
    assert a == b
    assert via_parts == via_read
    return a


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The stack entries the shortcut decoded on their own (not known, not known by shape)."""
    seen: list[bytes] = []
    real = known_parts._ENTRY_PARSE

    def parse(raw: bytes) -> object:
        seen.append(raw)
        return real(raw)

    monkeypatch.setattr(known_parts, "_ENTRY_PARSE", parse)
    return seen


def test_an_entry_at_a_new_offset_is_read_by_its_shape(
    fresh_parts: proto_parts.Parts, parses: list[bytes]
) -> None:
    first = _both(_payload(_entry(0x1234)))  # the process is learnt: the whole payload is decoded
    assert first is not None and first.user_stack[0].offset == 0x1234
    _both(_payload(_entry(0x1235)))  # read alone, its shape learnt
    assert REST in fresh_parts.shapes
    parses.clear()
    for offset in (1, 0x7F, 0x80, 0x3FFF, 0x4000, 0x2555632, 2**62, 2**63 - 2):  # offset + 1: 9 bytes at most
        ev = _both(_payload(_entry(offset), _entry(offset + 1)))
        assert ev is not None
        assert [(f.module, f.symbol, f.offset, f.address) for f in ev.user_stack] == [
            (_MODULE.decode(), _SYMBOL.decode(), offset, 0),
            (_MODULE.decode(), _SYMBOL.decode(), offset + 1, 0),
        ]
    assert parses == []  # every one by its shape: the shortcut was taken
    # A leading offset of 0, and one written overlong (5 in three bytes), are what the schema reads.
    for raw in (b"\x10\x00" + REST, b"\x10\x85\x80\x00" + REST):
        ev = _both(_payload(raw))
        assert ev is not None and ev.user_stack[0].offset == (0 if raw[1] == 0 else 5)
    assert parses == []


@pytest.mark.parametrize(
    "raw",
    [
        _entry(7) + b"\x10\x05",  # the offset given again, another value: the last one counts
        _entry(7) + b"\x10\x07",  # ... the same value
        _entry(7) + b"\x10\x00",  # ... 0
        b"\x10\x00" + REST + b"\x10\x07",
        b"\x08\x01" + _entry(7),  # the address first
        _entry(7) + b"\x08\x09",  # an address after the rest
        b"\x10" + b"\xff" * 9 + b"\x01" + REST,  # a 10-byte varint: not read here
        b"\x10\xff\xff\xff\xff\xff\xff\xff\xff\x7f" + REST,  # 2**63 - 1 in 10 bytes... and 9 continuation
        b"\x10\x05" + _text(3, b"get\x00addrinfo") + _text(4, _MODULE),  # a NUL: repaired every time
        b"\x10\x05" + _text(3, b"get\xffaddrinfo") + _text(4, _MODULE),  # invalid UTF-8: refused
        b"\x10\x05" + _text(3, _SYMBOL) + b"\x22\x40" + _MODULE,  # a length past the end
        b"\x10",  # a tag alone
        b"\x10\x85",  # a truncated varint
    ],
)
def test_a_hostile_entry_takes_the_old_path_and_gives_the_old_answer(
    raw: bytes, fresh_parts: proto_parts.Parts
) -> None:
    _both(_payload(_entry(0x1234)))  # the process, and REST's shape, learnt
    _both(_payload(_entry(0x1235)))
    assert REST in fresh_parts.shapes
    for _ in range(3):  # cold, then whatever was learnt from it
        _both(_payload(raw))
        # Other offsets before the same rest: still what the schema reads.
        for offset in (3, 0x4000):
            start = known_parts.proto_parts._leading_offset(raw)[1]
            _both(_payload(b"\x10" + varint(offset) + raw[start:] if start else raw))
    for rest in fresh_parts.shapes:
        assert rest == REST or (b"\x10" not in rest and b"\x00" not in rest), rest


def test_shapes_are_remembered_within_their_bound(
    fresh_parts: proto_parts.Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proto_parts, "MAX_SHAPES", 3)
    _both(_payload(_entry(1)))
    for i in range(10):
        rest = _text(3, f"f{i}".encode()) + _text(4, _MODULE)
        for offset in (5, 6):
            ev = _both(_payload(b"\x10" + varint(offset) + rest))
            assert ev is not None and ev.user_stack[0].symbol == f"f{i}" and ev.user_stack[0].offset == offset
        assert len(fresh_parts.shapes) <= 3
    # A large entry is never read by its shape (nor alone): the payload is decoded whole, as before.
    big = _text(3, b"s" * 300) + _text(4, _MODULE)
    for offset in (5, 6, 7):
        _both(_payload(b"\x10" + varint(offset) + big))
    assert big not in fresh_parts.shapes


@pytest.mark.parametrize(
    ("node", "function"),
    [
        ("node-1", "__x64_sys_connect"),  # clean: no check of the texts at all (from_proto._clean_payload)
        ("no\x00de", "__x64_sys_connect"),  # a NUL: the payload holds a byte 0, the texts are checked
        ("node-1", "__x64_sys_\x00connect"),
        ("node-1", "f" * 70_000),  # too long: cut and counted
        ("node-1", "f" * 40_000),  # a payload over half the limit: checked, found clean
    ],
)
def test_an_events_own_texts_are_checked_unless_its_payload_shows_them_clean(
    node: str, function: str, fresh_parts: proto_parts.Parts
) -> None:
    def payload() -> bytes:
        m = events_pb2.GetEventsResponse.FromString(_payload(_entry(0x1234)))
        m.node_name = node
        m.process_kprobe.function_name = function
        return m.SerializeToString()

    for _ in range(2):  # the process learnt, then the shortcut
        via_parts = common.AdapterStats()
        d = from_proto.decode(payload(), via_parts)
        a = None if d is None else from_proto.adapt(d, received_ns=7, stats=via_parts)
        via_read = common.AdapterStats()
        msg = events_pb2.GetEventsResponse.FromString(payload())
        b = from_proto.adapt(msg, received_ns=7, stats=via_read)
        assert a == b and via_parts == via_read
        assert a is not None and "\x00" not in a.node_name + a.function_name
        assert len(a.function_name) <= 64 * 1024
        repaired = dict(via_parts.repaired)
        if "\x00" in node + function:
            assert repaired == {"nul_replaced": 1}
        elif len(function) > 64 * 1024:
            assert repaired == {"text_truncated": 1}
        else:
            assert repaired == {}


def test_the_leading_offset_is_what_protobuf_reads() -> None:
    """``_leading_offset`` against upb on random varints of 1 to 11 bytes (overlong, truncated, too long):
    whenever it reads one, the entry cut after it decodes to that offset."""
    rng = random.Random(13)
    read = 0
    for _ in range(20_000):
        n = rng.randint(1, 11)
        body = bytes(rng.choice((rng.randrange(0x80, 0x100), rng.randrange(0x80))) for _ in range(n))
        raw = b"\x10" + body + REST
        value, start = proto_parts._leading_offset(raw)
        if not start:
            continue
        read += 1
        assert tetragon_pb2.StackTraceEntry.FromString(raw[:start]).offset == value
        assert start <= 10 and value < 2**63
    assert read > 10_000
