"""How far back in time the events Tetragon still holds for a stream reach.

Tetragon stamps every event with its kernel time (``GetEventsResponse.time``,
field 1001) but does not always send it at once:

- its event cache (``pkg/eventcache``) keeps an event whose process or pod
  info is not known yet and retries it every ``--event-cache-retry-delay``
  (2 s) up to ``--event-cache-retries`` (15) times, then sends it anyway: an
  event may reach the stream up to 15 ticks, 30 s, after it was cached, plus
  up to one tick before the first retry;
- a Tetragon behind (its ring-buffer queue, the stream's own channel of
  ``--event-queue-size``) sends every event late by the backlog.

When a stream breaks, or the agent stops or dies, Tetragon drains that
stream's channel and sends its cache to the listeners present then: all of it
is lost to us, and it carries times *before* the stream's last message. So an
outage (sources/tetragon_grpc.py) and the watch record's last watching moment
(agent/watch_record.py) start :meth:`EventHold.ns` before the last message:
the cache's hold at Tetragon's defaults, plus the largest lag of the stream's
recent messages (a backlog). A lag over :data:`MAX_LAG_NS` is not taken for a
backlog: Tetragon's queues are bounded (65535 and 10000 events), so a Tetragon
that far behind overflows them and says so in its lost-event counters
(sources/tetragon_metrics.py); such a stamp is another clock's (a recorded
stream replayed, a node clock stepped, a hostile stamp). A time ahead of the
arrival is no lag. Events that arrive after a reconnect may likewise
carry times inside the outage's gap: they are counted all the same, once, as
every event is (a gap only says that absence proves nothing there).

The receive loop keeps only the last payload; :meth:`EventHold.sample` reads
its time about once a second (the outage marker's tick), so the loop's cost
does not grow. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import deque

S = 1_000_000_000
# Tetragon's event cache at its defaults: 15 retries, 2 s apart, and the wait for the first tick.
CACHE_HOLD_NS = (15 * 2 + 2) * S
MAX_LAG_NS = 600 * S  # a larger lag is another clock's stamp, not a backlog (see above)
LAG_SAMPLES = 60  # about a minute of ticks: a backlog seen lately still counts

_TIME_FIELD = 1001  # GetEventsResponse.time (google.protobuf.Timestamp)
# Top-level fields walked at most: a response has its event, node name and time first (then its
# aggregation info, cluster name and node labels, one field per label: a node may have hundreds);
# a hostile payload of millions of tiny fields would otherwise hold the event loop for seconds.
MAX_FIELDS = 64
_MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z, as Timestamp allows
_MIN_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    """The varint at ``i`` and the index after it; ValueError if cut short or over 10 bytes."""
    value = shift = 0
    for j in range(i, min(i + 10, len(buf))):
        b = buf[j]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, j + 1
        shift += 7
    raise ValueError("bad varint")


def _skip(buf: bytes, i: int, wire: int) -> int:
    if wire == 0:
        return _varint(buf, i)[1]
    if wire == 1:
        return i + 8
    if wire == 2:
        n, i = _varint(buf, i)
        return i + n
    if wire == 5:
        return i + 4
    raise ValueError(f"wire type {wire}")


def _timestamp_ns(buf: bytes) -> int | None:
    seconds = nanos = 0
    i = 0
    for _ in range(MAX_FIELDS):
        if i >= len(buf):
            break
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if field in (1, 2) and wire == 0:
            value, i = _varint(buf, i)
            value = value - (1 << 64) if value >= 1 << 63 else value  # int64 / int32, two's complement
            if field == 1:
                seconds = value
            else:
                nanos = value
        else:
            i = _skip(buf, i, wire)
    if i != len(buf) or not _MIN_SECONDS <= seconds <= _MAX_SECONDS or not 0 <= nanos < S:
        return None
    return seconds * S + nanos


def payload_time_ns(payload: bytes) -> int | None:
    """The ``time`` of a raw GetEventsResponse in Unix ns; None if it has none or is malformed.

    Walks the top-level fields only (the event itself is skipped by its length), at most
    :data:`MAX_FIELDS` of them: past them, the time found so far (the node's labels come after it,
    one field each, and Tetragon puts them on every event), None if none was."""
    found = None
    try:
        i = fields = 0
        while i < len(payload):
            fields += 1
            if fields > MAX_FIELDS:
                return found
            key, i = _varint(payload, i)
            field, wire = key >> 3, key & 7
            if field == _TIME_FIELD and wire == 2:
                n, i = _varint(payload, i)
                if i + n > len(payload):
                    return None
                found = _timestamp_ns(payload[i : i + n])  # the last one wins, as in protobuf
                i += n
            else:
                i = _skip(payload, i, wire)
        return found if i == len(payload) else None
    except ValueError:
        return None


class EventHold:
    """How far before the stream's last message the events Tetragon still holds may reach."""

    __slots__ = ("_lags",)

    def __init__(self) -> None:
        self._lags: deque[int] = deque(maxlen=LAG_SAMPLES)

    def sample(self, payload: bytes | None, arrived_ns: int) -> None:
        """Note the lag of a message that arrived at ``arrived_ns`` (wall ns); no time, no sample."""
        t = payload_time_ns(payload) if payload else None
        if t is not None and arrived_ns - t <= MAX_LAG_NS:
            self._lags.append(max(arrived_ns - t, 0))

    def ns(self) -> int:
        """The event cache's hold plus the largest recent lag."""
        return CACHE_HOLD_NS + max(self._lags, default=0)
