"""The event times of raw payloads nobody processed: the span a shutdown's dropped events cover.

At the shutdown deadline the agent drops what is still queued (agent/shutdown.py). Those
events were never decoded, yet the gap they leave must cover their own event times: a
replayed or delayed stream's are not the wall-clock time they arrived at, and lie after the
last processed event, in later windows or the next day. This module reads each payload's
time the way the fast path does (adapter/rawkey.py), with the full decode of only the time
for a payload it cannot split. A time the adapter would replace by the arrival time (none,
before ``validate.MIN_EVENT_NS``, more than ``validate.MAX_FUTURE_SECONDS`` ahead) or a
payload that does not decode is left out: the wall-clock span of the drops covers it.

A read costs ~3 us a payload, and ``queueSize`` may be 10,000,000 (~30 s): the read runs on
the pipeline thread ahead of the last drain, so :func:`read_event_times` stops at a budget
(``until_ns`` on the caller's clock) and says how many payloads it left unread. It reads the
queue from both ends inwards (first, last, second, second to last, ...): the queue is FIFO,
so a replayed or delayed stream's earliest and latest dropped times are at its ends, and a
read cut short still spans them; an unread payload's time may lie outside them (a stream out of
time order).
Pure: no I/O; ``now_ns`` and the clock are given.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

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


MIN_READ = 64  # payloads read whatever the budget (both ends first): ~0.2 ms
CHECK_EVERY = 1_024  # payloads read between two looks at the clock (~3 ms)


@dataclass(frozen=True, slots=True)
class TimesRead:
    """What :func:`read_event_times` read: the span of the times kept, and how far it got."""

    span: tuple[int, int] | None  # (earliest, latest) of the times read and kept, or None
    read: int  # payloads whose time was read
    unread: int  # payloads left unread: the budget ran out


def _ends_first(n: int) -> Iterator[int]:
    """0, n-1, 1, n-2, ...: each index of ``range(n)`` once, from both ends inwards."""
    for i in range((n + 1) // 2):
        yield i
        if n - 1 - i != i:
            yield n - 1 - i


def read_event_times(
    payloads: Sequence[bytes],
    *,
    json_lines: bool,
    now_ns: int,
    until_ns: int | None = None,
    clock: Callable[[], int] | None = None,
) -> TimesRead:
    """The (earliest, latest) event time of ``payloads`` (export lines if ``json_lines``, else
    serialized GetEventsResponse messages), read from both ends inwards; with ``until_ns``, the
    read stops once ``clock()`` reaches it (looked at after the first :data:`MIN_READ` payloads,
    then every :data:`CHECK_EVERY`), and :attr:`TimesRead.unread` says how many were left."""
    read = _json_time if json_lines else _proto_time
    top = now_ns + validate.MAX_FUTURE_SECONDS * 1_000_000_000
    low, high = 0, 0
    n = len(payloads)

    def spent() -> bool:
        return until_ns is not None and clock is not None and clock() >= until_ns

    done = 0
    for i in _ends_first(n):
        if done >= MIN_READ and (done - MIN_READ) % CHECK_EVERY == 0 and spent():
            break
        done += 1
        ts = read(payloads[i])
        if ts < validate.MIN_EVENT_NS or ts > top:
            continue
        if not low or ts < low:
            low = ts
        if ts > high:
            high = ts
    return TimesRead(span=(low, high) if low else None, read=done, unread=n - done)


def event_time_span(payloads: Sequence[bytes], *, json_lines: bool, now_ns: int) -> tuple[int, int] | None:
    """(earliest, latest) event time of every one of ``payloads``, or None when none holds a time
    the adapter would keep. Unbounded: the shutdown reads through :func:`read_event_times`."""
    return read_event_times(payloads, json_lines=json_lines, now_ns=now_ns).span
