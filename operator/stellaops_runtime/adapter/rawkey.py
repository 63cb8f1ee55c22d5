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
from collections.abc import Container

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


_NO_TIME = (-1, -1, -1)
_TIME_HEAD = bytes((_TIME_TAG & 0x7F | 0x80, _TIME_TAG >> 7))  # the time's tag, as encoders write it
# Where a JSON export line's key ends ('"}' and blanks): a key ending otherwise is no JSON line's.
_JSON_ENDS = frozenset(b"} \t\r\n")


def _scan(buf: bytes) -> tuple[int, int, int] | None:
    """The top-level time field's (tag at, value start, value end) in ``buf``, ``_NO_TIME`` if there is
    none; None when ``buf`` is not a run of well-formed fields or holds the time twice."""
    n = len(buf)
    i = 0
    cut = _NO_TIME
    try:
        while i < n:
            at = i
            tag = buf[i]  # tags and lengths of one or two bytes inline: the common case
            i += 1
            if tag & 0x80:
                b = buf[i]
                i += 1
                tag = (tag & 0x7F) | (b << 7) if b < 0x80 else -1
                if tag < 0:
                    tag, i = _varint(buf, at)
            wire = tag & 7
            if wire == 2:
                length = buf[i]
                i += 1
                if length & 0x80:
                    length, i = _varint(buf, i - 1)
                end = i + length
                if end > n:
                    return None
                if tag == _TIME_TAG:
                    if cut is not _NO_TIME:
                        return None
                    cut = (at, i, end)
                i = end
            elif wire == 0:
                _, i = _varint(buf, i)
            elif wire == 1:
                i += 8
            elif wire == 5:
                i += 4
            else:
                return None
    except (IndexError, ValueError):
        return None
    return cut if i == n else None


def proto_key(payload: bytes, known: Container[bytes] = ()) -> tuple[bytes, int] | None:
    """(key, time) of a serialized GetEventsResponse, or None (see the module docstring).

    ``known``: keys this function gave before (and export lines' keys, which end otherwise). A payload
    that is such a key followed by its time (where Tetragon puts it) is not read field by field again:
    the key holds well-formed fields and no time, so reading would find exactly that key and time.
    """
    n = len(payload)
    j = payload.rfind(_TIME_HEAD, n - 25 if n > 25 else 0)  # a time of at most 22 bytes, last
    if j >= 0 and j + 3 <= n and payload[j + 2] == n - j - 3:
        key = payload[:j]
        if (key and key[-1] not in _JSON_ENDS and key in known) or _scan(key) is _NO_TIME:
            return _with_time(key, payload, j + 3, n)
    cut = _scan(payload)
    if cut is None or cut is _NO_TIME:
        return None
    at, start, end = cut
    return _with_time(payload[:at] if end == n else payload[:at] + payload[end:], payload, start, end)


def _with_time(key: bytes, payload: bytes, start: int, end: int) -> tuple[bytes, int] | None:
    try:
        t = _Timestamp.FromString(payload[start:end])  # exactly as the adapter reads it
    except DecodeError:
        return None
    ts = t.seconds * 1_000_000_000 + t.nanos
    if ts <= 0:
        return None
    return key, ts


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
