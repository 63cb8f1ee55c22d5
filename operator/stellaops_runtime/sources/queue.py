"""A bounded hand-off between receiving and processing that never blocks the receiver.

Tetragon drops events silently when a gRPC client falls behind (a per-stream
queue of 10,000 events, and a reconnect replays nothing). So the receiver
must keep reading the socket whatever processing does: it appends raw
payloads here and, when the queue is full, the event is dropped and counted
by us, where an operator can see it, instead of by Tetragon where nobody
does.

A source that can wait (the JSON export file keeps what is not read yet) asks
:meth:`EventQueue.has_room` first and waits in :meth:`EventQueue.wait_room`
instead of dropping.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

# Bytes of raw payloads held at most, queued or taken by the consumer and not
# yet processed: a burst of huge events (a hostile workload's 4 MiB arguments,
# 10,000-frame stacks) must not take the agent's memory with it. A large
# payload that would pass it is dropped and counted (``dropped_oversize``);
# ordinary events are bounded by ``capacity`` alone, so a flood of huge events
# never pushes out the good ones around it. When nothing is held, one payload
# of any size is taken: a single large event is processed, not dropped.
DEFAULT_MAX_BYTES = 16 << 20
LARGE_PAYLOAD = 64 << 10


class EventQueue:
    """Raw payloads with their arrival time (monotonic ns); single consumer.

    Bounded twice: by ``capacity`` payloads and by ``max_bytes`` of payload,
    counting what the consumer took (:meth:`take`) until it hands the batch
    back with :meth:`done`, because the batch's payloads stay in memory while
    it is processed.
    """

    def __init__(self, capacity: int, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.bytes = 0  # queued payload bytes
        self.in_flight_bytes = 0  # taken and not yet done
        self._items: deque[tuple[bytes, int]] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()  # set whenever the consumer takes or hands back payloads
        self.dropped = 0
        self.dropped_oversize = 0  # of ``dropped``: refused because of max_bytes
        self.enqueued = 0
        self.last_arrival = time.monotonic()
        # Drops not yet reported as an observation gap (take_drops): wall-clock span and count.
        self._gap_first_ns = 0
        self._gap_last_ns = 0
        self._gap_count = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, payload: bytes) -> bool:
        """Append without waiting; False (and counted) when full."""
        now = time.monotonic_ns()
        self.last_arrival = now / 1e9
        if len(self._items) >= self.capacity:
            self._dropped_one()
            return False
        size = len(payload)
        held = self.bytes + self.in_flight_bytes
        if size > LARGE_PAYLOAD and held and held + size > self.max_bytes:
            self._dropped_one()
            self.dropped_oversize += 1
            return False
        self.bytes += size
        self._items.append((payload, now))
        self.enqueued += 1
        if not self._ready.is_set():
            self._ready.set()
        return True

    def has_room(self, size: int) -> bool:
        """Whether :meth:`put` would take a payload of ``size`` bytes now (never counts a drop)."""
        if len(self._items) >= self.capacity:
            return False
        held = self.bytes + self.in_flight_bytes
        return not (size > LARGE_PAYLOAD and held and held + size > self.max_bytes)

    async def wait_room(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until the consumer takes or hands back payloads, or ``timeout`` seconds."""
        self._room.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._room.wait(), timeout)

    def drop_oversize(self) -> None:
        """Count a payload the source itself had to drop for its size (never queued).

        Counted as the queue's own byte-bound drops are (``events_dropped_total``
        ``{reason="queue_bytes"}``), and a node-wide gap like every drop (:meth:`take_drops`).
        """
        self._dropped_one()
        self.dropped_oversize += 1
        self._ready.set()  # wake the consumer: it hands drops to the gap tracker after each wake

    def _dropped_one(self) -> None:
        self.dropped += 1
        now = time.time_ns()
        if not self._gap_count:
            self._gap_first_ns = now
        self._gap_last_ns = now
        self._gap_count += 1

    def take_drops(self) -> tuple[int, int, int] | None:
        """(first, last, count) of the drops since the last call (wall-clock ns), or None.

        A dropped event is an event nobody counted: the agent records it as a
        node-wide observation gap, so no "not observed" covers it.
        """
        if not self._gap_count:
            return None
        out = (self._gap_first_ns, self._gap_last_ns, self._gap_count)
        self._gap_count = 0
        return out

    async def wait(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until something is queued; False on timeout."""
        if self._items:
            return True
        self._ready.clear()
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def take(self, max_items: int) -> list[tuple[bytes, int]]:
        """Up to ``max_items`` payloads, oldest first; their bytes count until :meth:`done`."""
        items = self._items
        n = min(max_items, len(items))
        out = [items.popleft() for _ in range(n)]
        size = sum(len(p) for p, _ in out)
        self.bytes -= size
        self.in_flight_bytes += size
        if n:
            self._room.set()
        return out

    def done(self, batch: list[tuple[bytes, int]]) -> None:
        """The consumer has finished with a batch from :meth:`take`: its bytes no longer count."""
        self.in_flight_bytes = max(0, self.in_flight_bytes - sum(len(p) for p, _ in batch))
        self._room.set()

    def discard_queued(self) -> list[bytes]:
        """Empty the queue at the shutdown deadline: the payloads left are dropped, as a gap.

        Counted apart from :attr:`dropped` (the runner reports them as
        ``reason="shutdown_deadline"``), but reported by :meth:`take_drops` like every drop,
        over the wall-clock span from the oldest one's arrival to now, so that no window the
        agent stores claims it watched while these events went uncounted. The payloads are
        returned, so that the gap also covers their own event times (sources/payload_times.py).
        """
        n = len(self._items)
        if not n:
            return []
        payloads = [p for p, _ in self._items]
        now_wall, now_mono = time.time_ns(), time.monotonic_ns()
        oldest = now_wall - max(0, now_mono - self._items[0][1])
        self._items.clear()
        self.bytes = 0
        self._room.set()
        if not self._gap_count or oldest < self._gap_first_ns:
            self._gap_first_ns = oldest
        self._gap_last_ns = now_wall
        self._gap_count += n
        return payloads
