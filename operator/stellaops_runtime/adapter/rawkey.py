"""What identifies an event in its raw encoding, apart from its time: the agent's fast-path key.

Tetragon sends the same observation over and over (the same process, probed
function and stack); only the event's time differs between two such events.
The fast path (agent/fastpath.py) recognises a repeat before decoding it, so
this module splits a raw message into

- the **key**: every byte of the message except the top-level time's value
  (the bytes are compared exactly, never hashed down to a digest, so two
  events share a key only when they are byte-for-byte the same event), and
- the **time** in ns since the epoch, computed exactly as the adapters compute
  it (adapter/from_proto.py, adapter/from_json.py).

Anything unusual gives ``None`` and the event takes the ordinary path: a
message that is not well-formed at the top level, a time field that appears
twice (protobuf merges repeated message fields, so the last occurrence alone
would not be the time), a time that does not decode, a negative, zero or
absent time, a JSON line whose last member is not a plain
RFC 3339 ``"time"``. Pure functions over bytes: no decoding of the event itself.
"""

from __future__ import annotations

import re

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from stellaops_runtime.adapter.common import rfc3339_to_ns

# GetEventsResponse.time: field 1001, length-delimited (tetragon events.proto).
TIME_FIELD = 1001
_TIME_TAG = TIME_FIELD << 3 | 2
_Timestamp = Timestamp


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    """(value, next index); raises IndexError past the end, ValueError past 10 bytes."""
    b = buf[i]
    if b < 0x80:
        return b, i + 1
    value = b & 0x7F
    shift = 7
    i += 1
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def proto_key(payload: bytes) -> tuple[bytes, int] | None:
    """(key, time) of a serialized GetEventsResponse, or None (see the module docstring)."""
    n = len(payload)
    i = 0
    cut = None
    try:
        while i < n:
            at = i
            tag = payload[i]  # tags and lengths of one or two bytes inline: the common case
            i += 1
            if tag & 0x80:
                b = payload[i]
                i += 1
                tag = (tag & 0x7F) | (b << 7) if b < 0x80 else -1
                if tag < 0:
                    tag, i = _varint(payload, at)
            wire = tag & 7
            if wire == 2:
                length = payload[i]
                i += 1
                if length & 0x80:
                    length, i = _varint(payload, i - 1)
                end = i + length
                if end > n:
                    return None
                if tag == _TIME_TAG:
                    if cut is not None:
                        return None
                    cut = (at, i, end)
                i = end
            elif wire == 0:
                _, i = _varint(payload, i)
            elif wire == 1:
                i += 8
            elif wire == 5:
                i += 4
            else:
                return None
        if i != n or cut is None:
            return None
        at, start, end = cut
        t = _Timestamp.FromString(payload[start:end])  # exactly as the adapter reads it
    except (IndexError, ValueError, DecodeError):
        return None
    ts = t.seconds * 1_000_000_000 + t.nanos
    if ts <= 0:
        return None
    return payload[:at] + payload[end:], ts


# The last member of a Tetragon export line: "time":"<RFC 3339>"}. Plain characters only: a
# value with escapes or other text takes the ordinary path.
_JSON_TIME = re.compile(
    rb',"time":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d))"\}[ \t\r\n]*\Z'
)


def json_key(line: bytes) -> tuple[bytes, int] | None:
    """(key, time) of one export line whose last member is its time, or None.

    The key is the line without the time's value. Whether that member really is
    the object's ``time`` (and the line valid JSON) is checked by the fast path
    when it first decodes a line of that key: every line of one key has the
    same bytes around the value.
    """
    m = _JSON_TIME.search(line, max(0, len(line) - 96))
    if m is None:
        return None
    try:
        ts = rfc3339_to_ns(m.group(1).decode("ascii"))
    except (ValueError, OverflowError):
        return None
    if ts <= 0:
        return None
    return line[: m.start(1)] + line[m.end(1) :], ts
