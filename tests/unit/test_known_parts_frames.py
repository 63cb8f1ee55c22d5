"""The gRPC shortcut's per-event code written inline gives what the functions it stands for give.

Why it exists: on the stream whose stacks never repeat (issue 13) the shortcut reads an unknown
entry's leading offset inside ``Parts.shaped`` (adapter/proto_parts.py) without calling
``_leading_offset`` for its one- to three-byte cases, and ``known_parts.checked_stacks`` slices
upb's repeated fields before its loop. This test holds them to the plain functions: ``shaped``
gives, for random entries of every varint length (overlong, truncated, too long, not an offset
first), exactly what the rule through ``_leading_offset`` gives, and remembers the same frames;
``checked_stacks`` gives frames equal to ``StackFrame(*part)``, one object each.
"""

from __future__ import annotations

import random
from dataclasses import fields

from stellaops_runtime.adapter import known_parts, proto_parts
from stellaops_runtime.contracts.events import StackFrame
from stellaops_runtime.wire.tetragon import tetragon_pb2
from tests.wire_bytes import varint

_REST = b"\x1a\x0bgetaddrinfo" + b'"\x23/usr/lib/x86_64-linux-gnu/libc.so.6'


def _reference(parts: proto_parts.Parts, raw: bytes) -> proto_parts.FramePart | None:
    """Parts.shaped as it was: every offset read by ``_leading_offset``."""
    value, start = proto_parts._leading_offset(raw)
    if not start:
        return None
    got = parts.shapes.get(raw[start:])
    if got is None:
        return None
    part = (got[0], got[1], value, got[2])
    parts.frames[raw] = part
    return part


def _entries(rng: random.Random) -> list[bytes]:
    out = []
    for _ in range(6000):
        n = rng.randint(0, 11)
        body = bytes(rng.choice((rng.randrange(0x80, 0x100), rng.randrange(0x80))) for _ in range(n))
        if rng.random() < 0.5:  # a varint as an encoder writes it, of 1 to 7 bytes
            body = varint(rng.randrange(2 ** rng.randint(1, 49)))
        first = rng.choice((b"\x10", b"\x10", b"\x10", b"\x18", b""))
        rest = rng.choice((_REST, _REST, _REST[:5], b"", _REST + b"\x10\x00", b"x" * 200))
        out.append(first + body + rest)
    out += [b"\x10" + varint(v) + _REST for v in (0, 1, 127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**40)]
    return out


def test_shaped_reads_the_offset_as_leading_offset_does() -> None:
    rng = random.Random(17)
    known = b"\x10" + varint(4660) + _REST
    part, clean = proto_parts.read_frame(tetragon_pb2.StackTraceEntry.FromString(known))
    assert clean
    ours, ref = proto_parts.Parts(), proto_parts.Parts()
    for p in (ours, ref):
        p._learn_shape(known, part)
    assert ours.shapes == ref.shapes and len(ours.shapes) == 1
    found = 0
    for raw in _entries(rng):
        got = ours.shaped(raw)
        assert got == _reference(ref, raw), raw
        found += got is not None
    assert ours.frames == ref.frames
    assert found > 400, found


def test_checked_stacks_frames_are_what_the_dataclass_makes() -> None:
    parts = proto_parts.PARTS
    parts.clear()
    kernel = [b"\x10" + varint(9) + b"\x1a\x11__x64_sys_connect", b"\x10\x64\x1a\x0ddo_syscall_64"]
    user = [b"\x10" + varint(v) + _REST for v in (4660, 4661, 4660)]
    got = known_parts.checked_stacks(kernel, user, 10)
    assert got is not None
    k, u, clean = got
    assert clean and len(k) == 2 and len(u) == 3
    for raw, frame in zip(kernel + user, k + u, strict=True):
        want = StackFrame(*proto_parts.read_frame(tetragon_pb2.StackTraceEntry.FromString(raw))[0])
        assert type(frame) is StackFrame
        assert [getattr(frame, f.name) for f in fields(StackFrame)] == [
            getattr(want, f.name) for f in fields(StackFrame)
        ]
        assert frame == want
    assert len({id(f) for f in k + u}) == 5  # one object each, though two entries are equal
    parts.clear()
