"""The event times of raw payloads nobody processed: the span a shutdown's dropped events cover.

At the shutdown deadline the agent drops what is still queued (agent/shutdown.py). Those
events were never decoded, yet the gap they leave must cover their own event times: a
replayed or delayed stream's are not the wall-clock time they arrived at, and lie after the
last processed event, in later windows or the next day. This module reads each payload's
time the way the fast path does (adapter/rawkey.py), with the full decode of only the time
for a payload it cannot split. A time the adapter would replace by the arrival time (none,
before ``validate.MIN_EVENT_NS``, more than ``validate.MAX_FUTURE_SECONDS`` ahead) or a
payload that does not decode is left out: the wall-clock span of the drops covers it.
Pure: no I/O; ``now_ns`` is given.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from stellaops_runtime.adapter import rawkey, validate
from stellaops_runtime.adapter.common import rfc3339_to_ns


def _proto_time(payload: bytes) -> int:
    split = rawkey.proto_key(payload)
    if split is not None:
        return split[1]
    from stellaops_runtime.wire.tetragon import events_pb2

    try:
        msg = events_pb2.GetEventsResponse.FromString(payload)
    except Exception:  # not a message: nothing the adapter would count either
        return 0
    if not msg.HasField("time"):
        return 0
    return msg.time.seconds * 1_000_000_000 + msg.time.nanos


def _json_time(line: bytes) -> int:
    split = rawkey.json_key(line)
    if split is not None:
        return split[1]
    try:
        value = json.loads(line).get("time")
        return rfc3339_to_ns(value) if isinstance(value, str) else 0
    except (ValueError, AttributeError, OverflowError, RecursionError):
        return 0


def event_time_span(payloads: Iterable[bytes], *, json_lines: bool, now_ns: int) -> tuple[int, int] | None:
    """(earliest, latest) event time of ``payloads`` (export lines if ``json_lines``, else serialized
    GetEventsResponse messages), or None when none holds a time the adapter would keep."""
    read = _json_time if json_lines else _proto_time
    top = now_ns + validate.MAX_FUTURE_SECONDS * 1_000_000_000
    low, high = 0, 0
    for p in payloads:
        ts = read(p)
        if ts < validate.MIN_EVENT_NS or ts > top:
            continue
        if not low or ts < low:
            low = ts
        if ts > high:
            high = ts
    return (low, high) if low else None
