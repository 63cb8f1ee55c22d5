"""The gRPC adapter's shortcut: an event built from the second view alone, when its parts are known.

Why this module exists: decoding a payload with Tetragon's own schema costs
about three times what the second view (adapter/proto_parts.py ``SHADOW``)
costs, for the process description and stack entries that the second view
keeps as bytes and proto_parts already holds, read once. So
from_proto.decode decodes only the second view, and :func:`known` says when
an event can be built from it alone and accepted exactly as Tetragon's schema
would accept it; from_proto decodes the payload whole (and counts
``invalid_protobuf`` when that schema refuses it) whenever it cannot.
tests/unit/test_adapter_known_parts.py gives it every payload it could get wrong.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError

from stellaops_runtime.adapter import common, proto_parts
from stellaops_runtime.contracts.events import EventKind, StackFrame
from stellaops_runtime.wire.tetragon import events_pb2, tetragon_pb2

_ENTRY_PARSE = tetragon_pb2.StackTraceEntry.FromString
# A module global: on Python 3.11 reading an enum member through its class costs ~90 ns, a global ~7 ns.
_KPROBE = EventKind.KPROBE


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# The handled event bodies' tags as Tetragon's encoder writes them (field number, length-delimited).
TAGS = {
    name: (_varint_bytes(events_pb2.GetEventsResponse.DESCRIPTOR.fields_by_name[name].number << 3 | 2), kind)
    for name, kind in common.HANDLED_KINDS.items()
}


def known(shadow: Any, payload: bytes, max_depth: int) -> tuple[Any, ...] | None:
    """(time, node, kind, body, process part, kernel stack, user stack, clean) read from the second view
    alone, or None when the payload must be decoded whole.

    Tetragon's schema and the second view differ only in the bodies' ``process`` and stack entries, so
    the payload is what Tetragon's schema accepts when each of those is: a process part or frame found
    in proto_parts was read from a payload that schema accepted, and a frame read on its own here is
    small enough that the schema's depth limit cannot be reached inside it (MAX_ALONE_FRAME_BYTES).
    What the second view cannot show is an event body that a later one replaced (the oneof keeps the
    last): so the payload must be that body, first, followed by its node name and time alone
    (:func:`alone`). Anything else (an unhandled kind, no process, an unknown process, no time, more
    entries than ``max_depth``, a larger or malformed frame) is decoded whole, as before.
    """
    kind_name = shadow.WhichOneof("event")
    tagged = TAGS.get(kind_name) if kind_name else None
    if tagged is None:
        return None
    body = getattr(shadow, kind_name)
    raws = body.process
    n = len(raws)
    if not n:
        return None
    part = proto_parts.PARTS.processes.get(raws[0] if n == 1 else tuple(raws))
    if part is None:
        return None
    t = shadow.time
    seconds, nanos = t.seconds, t.nanos
    node = shadow.node_name
    if not alone(payload, tagged[0], node, seconds, nanos):
        return None
    ts = seconds * 1_000_000_000 + nanos
    kind = tagged[1]
    if kind is not _KPROBE:
        return ts, node, kind, body, part, [], [], part[3]
    stacks = checked_stacks(body.kernel_stack_trace, body.user_stack_trace, max_depth)
    if stacks is None:
        return None
    return ts, node, kind, body, part, stacks[0], stacks[1], part[3] and stacks[2]


def alone(payload: bytes, tag: bytes, node: str, seconds: int, nanos: int) -> bool:
    """Whether ``payload`` is one occurrence of the event body (tag ``tag``), then the node name and a
    time of ``seconds`` (> 0) and ``nanos`` (>= 0) alone.

    Encoded anew, the node name and time take at most the bytes they were read from (a field given
    twice, a default value given, an overlong varint, an unknown field take more), so the bytes after
    the body add up to the two exactly only when nothing else is there: no second body, cluster name,
    labels or unknown field.
    """
    if seconds <= 0 or nanos < 0 or not payload.startswith(tag):
        return False
    i = len(tag)  # the body's length follows: a varint the second view has read
    try:
        b = payload[i]
        length = b & 0x7F
        shift = 7
        while b & 0x80:
            i += 1
            b = payload[i]
            length |= (b & 0x7F) << shift
            shift += 7
    except IndexError:  # cannot be (the second view read it), and costs nothing: decoded whole then
        return False
    # time: tag of field 1001, length (< 128), seconds (field 1), nanos (field 2) when not 0
    rest = len(payload) - i - 1 - length - 4 - (seconds.bit_length() + 6) // 7
    if nanos:
        rest -= 1 + (nanos.bit_length() + 6) // 7
    if node:
        size = len(node) if node.isascii() else len(node.encode())
        rest -= 2 + (size.bit_length() + 6) // 7 + size  # tag of field 1000, length, text
    return rest == 0


def checked_stacks(
    kernel: Any, user: Any, max_depth: int
) -> tuple[list[StackFrame], list[StackFrame], bool] | None:
    """The two stacks' entries by their raw bytes, known (proto_parts) or read alone, and whether all are
    clean; None: decode the payload whole (more than ``max_depth`` entries, one too large or malformed).
    Both stacks in one call: a kprobe event makes one Python call fewer."""
    if len(kernel) > max_depth or len(user) > max_depth:
        return None
    # Sliced into lists first: a loop over upb's repeated field reads it item by item until an
    # IndexError, formatted (~1k instructions per loop); a slice is read in one call.
    kernel, user = kernel[:], user[:]
    parts = proto_parts.PARTS
    get = parts.frames.get
    clean = True
    k: list[StackFrame] = []
    u: list[StackFrame] = []
    for raws, out in ((kernel, k), (user, u)):
        for raw in raws:
            f = get(raw)
            if f is None:
                if len(raw) > proto_parts.MAX_ALONE_FRAME_BYTES:
                    return None
                f = parts.shaped(raw)  # a known entry's shape at another offset: what reading it gives
                if f is None:
                    try:
                        entry = _ENTRY_PARSE(raw)
                    except DecodeError:
                        return None
                    f, ok = parts.new_frame(raw, entry)
                    if not ok:
                        clean = False
            out.append(StackFrame(*f))
    return k, u, clean
