"""Hold hot-symbol rows while the store is down, and write them when it is back.

DESIGN.md: "a store outage buffers and retries", never silent loss. Deltas are
additive, so buffering is a merge: rows are kept per (key, window_start) and a
later delta of the same row is folded in with :meth:`HotSymbolDelta.merge`;
observation windows are kept per (image, node, window_start) with counts
added and the higher posture kept (:meth:`ObservationWindow.merged`). Memory
is bounded by ``max_pending_rows``: past it the OLDEST windows
are dropped first, and what is dropped is counted (``dropped_rows``,
``dropped_invocations``) for the agent's metrics.

:meth:`PendingWrites.flush` hands a snapshot to the store in a worker thread.
While that write runs, new rows go to a fresh buffer, so on success exactly
what was written is removed and rows added meanwhile stay pending; on failure
the snapshot is merged back. The caller (the agent loop) decides when to
flush, using :meth:`next_retry_delay` after a failure.

A "row" everywhere here is one hot-symbol (key, window) row or one
observation-window row, the unit :meth:`HotSymbolStore.write` returns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from dataclasses import dataclass, field
from typing import Protocol

from stellaops_runtime.contracts.hotsymbols import HotSymbolDelta, HotSymbolKey, ObservationWindow
from stellaops_runtime.store.engine import StoreError

INITIAL_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 30.0


class Writer(Protocol):
    def write(self, deltas: list[HotSymbolDelta], windows: list[ObservationWindow]) -> int: ...


@dataclass(slots=True)
class _Window:
    """Everything pending for one window_start."""

    deltas: dict[HotSymbolKey, HotSymbolDelta] = field(default_factory=dict)
    observations: dict[tuple[str, str], ObservationWindow] = field(default_factory=dict)  # (image, node)

    def __len__(self) -> int:
        return len(self.deltas) + len(self.observations)


_Buffer = dict[int, _Window]  # window_start_ns -> rows


def _add_delta(buf: _Buffer, d: HotSymbolDelta, *, copy: bool) -> bool:
    """Merge one delta in; True when it made a new row."""
    w = buf.get(d.window_start_ns)
    if w is None:
        w = buf[d.window_start_ns] = _Window()
    have = w.deltas.get(d.key)
    if have is None:
        w.deltas[d.key] = dataclasses.replace(d) if copy else d
        return True
    have.merge(d)
    return False


def _add_observation(buf: _Buffer, o: ObservationWindow) -> bool:
    w = buf.get(o.window_start_ns)
    if w is None:
        w = buf[o.window_start_ns] = _Window()
    k = (o.image_digest, o.node_name)
    have = w.observations.get(k)
    w.observations[k] = o if have is None else have.merged(o)
    return have is None


def _flatten(buf: _Buffer) -> tuple[list[HotSymbolDelta], list[ObservationWindow]]:
    deltas: list[HotSymbolDelta] = []
    obs: list[ObservationWindow] = []
    for start in sorted(buf):
        w = buf[start]
        deltas.extend(w.deltas.values())
        obs.extend(w.observations.values())
    return deltas, obs


class PendingWrites:
    """Bounded, merging buffer of rows on their way to the store."""

    def __init__(self, *, max_pending_rows: int = 1_000_000, rng: random.Random | None = None) -> None:
        if max_pending_rows < 1:
            raise ValueError("max_pending_rows must be >= 1")
        self.max_pending_rows = max_pending_rows
        self._buf: _Buffer = {}
        self._rows = 0
        self._inflight: _Buffer | None = None
        self._inflight_rows = 0
        self._lock: asyncio.Lock | None = None
        self._rng = rng or random.Random()
        self._failures_at_success = 0
        self.rows_flushed = 0
        self.flushes = 0
        self.failures = 0
        self.dropped_rows = 0
        self.dropped_invocations = 0
        self.last_error: str | None = None

    @property
    def pending_rows(self) -> int:
        """Rows not yet written: buffered plus the snapshot being written now."""
        return self._rows + self._inflight_rows

    # -- adding ----------------------------------------------------------------

    def add(self, deltas: list[HotSymbolDelta], windows: list[ObservationWindow]) -> None:
        """Merge rows in (the caller's objects are not modified), then enforce the bound."""
        for d in deltas:
            self._rows += _add_delta(self._buf, d, copy=True)
        for o in windows:
            self._rows += _add_observation(self._buf, o)
        self._enforce_bound()

    def _enforce_bound(self) -> None:
        excess = self.pending_rows - self.max_pending_rows
        while excess > 0 and self._buf:
            oldest = min(self._buf)
            w = self._buf[oldest]
            while excess > 0 and w.deltas:
                _, d = w.deltas.popitem()
                self.dropped_invocations += d.invocation_count
                self._drop_one()
                excess -= 1
            while excess > 0 and w.observations:
                w.observations.popitem()
                self._drop_one()
                excess -= 1
            if not len(w):
                del self._buf[oldest]

    def _drop_one(self) -> None:
        self._rows -= 1
        self.dropped_rows += 1

    # -- flushing --------------------------------------------------------------

    async def flush(self, store: Writer) -> bool:
        """Write everything pending; True on success (or nothing to write).

        On :class:`StoreError` (including ``StoreUnavailable``) all rows stay
        pending, ``failures`` is incremented, ``last_error`` says why, and
        False is returned. Concurrent calls are serialized.
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._buf:
                return True
            snapshot, self._buf = self._buf, {}
            self._inflight, self._inflight_rows, self._rows = snapshot, self._rows, 0
            deltas, obs = _flatten(snapshot)
            try:
                written = await asyncio.to_thread(store.write, deltas, obs)
            except StoreError as e:
                self._restore(snapshot)
                self.failures += 1
                self.last_error = str(e)
                return False
            except BaseException:
                self._restore(snapshot)
                raise
            self._inflight, self._inflight_rows = None, 0
            self.rows_flushed += written
            self.flushes += 1
            self._failures_at_success = self.failures
            self.last_error = None
            return True

    def _restore(self, snapshot: _Buffer) -> None:
        """Put a failed snapshot back under what was added meanwhile (older first)."""
        newer, self._buf = self._buf, snapshot
        self._inflight, self._inflight_rows = None, 0
        self._rows = sum(len(w) for w in snapshot.values())
        for w in newer.values():
            for d in w.deltas.values():
                self._rows += _add_delta(self._buf, d, copy=False)
            for o in w.observations.values():
                self._rows += _add_observation(self._buf, o)
        self._enforce_bound()

    def next_retry_delay(self) -> float:
        """Seconds to wait before the next flush attempt: capped exponential backoff with jitter.

        0.5 s after the first failure, doubling up to 30 s, each scaled by a
        random factor in [0.5, 1.0] so that many agents do not retry in step;
        back to the initial delay after a success. Failures are counted from
        ``failures`` since the last successful flush, so a caller that counts
        its own failed attempts (e.g. opening the store) there backs off too.
        """
        exp = max(self.failures - self._failures_at_success - 1, 0)
        base = min(MAX_RETRY_SECONDS, INITIAL_RETRY_SECONDS * (2 ** min(exp, 32)))
        return base * self._rng.uniform(0.5, 1.0)
