"""Hold hot-symbol rows while the store is down, and write each exactly once when it is back.

DESIGN.md: "a store outage buffers and retries", never silent loss. Deltas are
additive, so buffering is a merge: rows are kept per (key, window_start) and a
later delta of the same row is folded in with :meth:`HotSymbolDelta.merge`;
observation windows are kept per (image, node, window_start) with counts
added and the higher posture kept (:meth:`ObservationWindow.merged`).

:meth:`PendingWrites.flush` freezes the buffer into a
:class:`~stellaops_runtime.store.batches.Batch` with this agent's id and the
next flush sequence number, and hands it to the store in a worker thread.
While that write runs, new rows go to a fresh buffer. A batch that fails
stays frozen, exactly as it was, and is retried first with the same sequence
number: its COMMIT may have gone through with the acknowledgement lost, and
the store's flush ledger turns such a retry into a no-op. Rows are never
merged back into a batch that may already be stored. A write that takes longer
than ``write_timeout`` is abandoned: the store's connections are aborted, the
failure is counted and the batch is retried later on a new connection.

A batch whose write passes the server's statement timeout is written in
halves by the store (store/ledger.py), each part once, so it makes progress
instead of being retried whole for ever (``timeout_splits``).

A frozen batch holds at most ``max_batch_rows`` rows (a larger buffer makes
several, each with its own sequence): a batch is one transaction that must
end within ``write_timeout``, and a long outage's backlog as one batch (up to
a million rows) was abandoned at the timeout and retried whole, for ever.

Memory is bounded by ``max_pending_rows``: past it the OLDEST windows are
dropped first, from the buffer or from frozen batches (as tombstones, so a
batch keeps its shape), and what is dropped is counted (``dropped_rows``,
``dropped_invocations``) for the agent's metrics. A dropped count is never a
silent loss: a dropped hot-symbol row becomes a *gap* on its image, node and
window (an observation-window row whose gap covers the whole window, with the
lost invocations as ``dropped_events``), so no "not observed" can rest on the
window it was in. A row dropped from a frozen batch gets its gap in its place
in that batch (stored with the batch's observation of the window, under the
same ledger range); a buffered row's gap joins its window in the buffer. Gap
rows themselves are never dropped: when only gap rows are left the buffer may
exceed the bound by them (in the buffer one row per image, node and window at
most; in a frozen batch one per dropped row, in its place). A dropped
observation-window row without a gap only removes evidence of watching, which
can turn a "not observed" into "unknown", never the other way; one carrying the
unwatched-container mark (``evidenced`` None, hotsymbols/day_calls.py) is the
one that says a day was not watched, so it leaves a gap over its window too.
An ``unprobed`` fact (agent/unprobed.py, 0 calls) or a ``listed`` JAR
(agent/listed_jars.py) is kept as a gap row is: it answers for every period and
is sent once, so no gap over its window would stand for it (batches.never_dropped).

The caller (the agent loop) decides when to flush, using
:meth:`next_retry_delay` after a failure.

A "row" everywhere here is one hot-symbol (key, window) row or one
observation-window row, the unit :meth:`HotSymbolStore.write` returns.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Protocol

from stellaops_runtime.contracts.hotsymbols import HotSymbolDelta, ObservationWindow
from stellaops_runtime.random_id import uuid4_text
from stellaops_runtime.store.batches import Batch, BatchResult, Unit, never_dropped
from stellaops_runtime.store.engine import StoreError
from stellaops_runtime.store.pending_buffer import (
    Buffer,
    add_delta,
    add_observation,
    dropped_gap,
    freeze,
    gap_rows,
    oldest_droppable_window,
    pop_droppable,
)
from stellaops_runtime.store.pending_write import write_timed

log = logging.getLogger(__name__)

INITIAL_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 30.0
# Rows per frozen batch: ~2 s of one agent's writing on the benchmark's shared core (26,000 rows/s),
# ~8 s at a fleet's saturation (6,700 rows/s), well within the default 30 s flush and statement timeouts.
MAX_BATCH_ROWS = 50_000


class Writer(Protocol):
    def write_batch(self, batch: Batch) -> BatchResult: ...

    def abort(self) -> None: ...


class PendingWrites:
    """Bounded, merging buffer of rows on their way to the store, written exactly once."""

    def __init__(
        self,
        *,
        max_pending_rows: int = 1_000_000,
        rng: random.Random | None = None,
        agent_id: str = "",
        window_seconds: int = 60,
        max_batch_rows: int = MAX_BATCH_ROWS,
    ) -> None:
        if max_pending_rows < 1 or max_batch_rows < 1:
            raise ValueError("max_pending_rows and max_batch_rows must be >= 1")
        self.max_pending_rows = max_pending_rows
        self.max_batch_rows = max_batch_rows
        self.window_seconds = max(1, int(window_seconds))  # the aggregation window: a dropped row's gap
        self.agent_id = agent_id or f"agent-{uuid4_text()}"
        self._next_seq = 1
        self._buf: Buffer = {}
        self._rows = 0
        self._batches: list[Batch] = []  # frozen, oldest first; written before the buffer
        self._lock: asyncio.Lock | None = None
        self._rng = rng or random.Random()
        self._failures_at_success = 0
        self.inflight_since: float | None = None  # time.monotonic() when the running write began
        self.rows_flushed = 0
        self.flushes = 0
        self.failures = 0
        self.timeouts = 0  # writes abandoned after store.flushTimeout: rows (pending_write), and the
        # start row, proofs of life and pairings (agent/flusher.py _timed_out)
        self.abandoned = 0
        self.duplicate_rows = 0
        self._timeout_splits_done = 0  # of batches no longer pending (see timeout_splits)
        self.quarantined_rows = 0
        self.quarantined_invocations = 0
        # Observation windows not stored: their day store.retentionDays removed (store/late_rows.py).
        self.expired_rows = 0
        self.dropped_rows = 0
        self.dropped_invocations = 0
        self.gap_rows_from_drops = 0  # gaps marked because hot-symbol rows were dropped
        self.spool_loaded_rows = 0
        self.spool_replayed_rows = 0
        # Spooled rows stored as gaps: another agent's counts cover their lines (store/export_spans.py).
        self.spool_recounted_rows = 0
        # Spooled rows stored as gaps: their lines cannot be checked and another agent of the node
        # stored counts of the export file (store/export_spans.py ``guard``).
        self.spool_unverified_rows = 0
        # A live batch's rows stored as gaps: held unacknowledged longer than the flush ledger keeps
        # its rows, whether it was stored cannot be told (store/spool_age.py).
        self.outlived_rows = 0
        self.last_error: str | None = None
        self.last_failure: StoreError | None = None  # the error of the last flush's failed write
        # Where the export file's lines drained so far may reach (agent/export_resume.py), given
        # to each batch frozen from the buffer and written with its counts (store/export_position.py).
        self.position_of: Callable[[], dict[str, Any] | None] | None = None
        # Whether a spooled batch of export counts may be written now (agent/watch_record.py: once
        # this agent holds the export lock, so no other agent's counts of the file are in flight
        # while its spans are checked, store/export_spans.py); None: always.
        self.spool_gate: Callable[[], bool] | None = None
        # Whether this agent replays spooled export counts without holding the export lock (no
        # export source, or its lock cannot be taken: agent/watch_record.py), so another agent's
        # counts of the same lines may be in flight while they are checked; None: never.
        self.spool_unlocked: Callable[[], bool] | None = None

    @property
    def pending_rows(self) -> int:
        """Rows not yet written: buffered plus frozen batches (including the one being written)."""
        return self._rows + sum(b.rows for b in self._batches)

    @property
    def timeout_splits(self) -> int:
        """Ranges written in halves because their write passed the statement timeout (store/ledger.py)."""
        return self._timeout_splits_done + sum(b.timeout_splits for b in self._batches)

    @property
    def spool_batches_left(self) -> int:
        """Batches loaded from a spool file that the store has not confirmed yet."""
        return sum(b.from_spool for b in self._batches)

    # -- adding ----------------------------------------------------------------

    def add(
        self, deltas: list[HotSymbolDelta], windows: list[ObservationWindow], *, owned: bool = False
    ) -> None:
        """Merge rows in, then enforce the bound.

        The caller's objects are not modified, unless ``owned``: a drain's deltas are
        the caller's alone and are kept as they are (a later drain's rows of the same
        key and window merge into them) instead of copied, so that a 100,000-key drain
        does not hold two copies of its rows at once (issue 13: the flush's peak).
        """
        copy = not owned
        for d in deltas:
            self._rows += add_delta(self._buf, d, copy=copy)
        for o in windows:
            self._rows += add_observation(self._buf, o)
        self._enforce_bound()

    def load(self, batches: list[Batch]) -> None:
        """Queue batches read back from a spool file; they keep their own agent id and sequence."""
        for b in batches:
            b.from_spool = True
            self.spool_loaded_rows += b.rows
        self._batches[:0] = batches
        self._enforce_bound()

    def take_all(self) -> list[Batch]:
        """Everything pending as frozen batches (for the spool file); the buffer is frozen first."""
        self._freeze_buffer()
        out, self._batches = self._batches, []
        return [b for b in out if b.rows]

    def _freeze_buffer(self) -> None:
        if not self._buf:
            return
        buf, self._buf, self._rows = self._buf, {}, 0
        position = self.position_of() if self.position_of is not None else None
        for units in freeze(buf, self.max_batch_rows):
            self._batches.append(Batch(self.agent_id, self._next_seq, units, export_position=position))
            self._next_seq += 1

    def _enforce_bound(self) -> None:
        """Drop the oldest droppable rows until at most ``max_pending_rows`` of them are left.

        Gap rows do not count against the bound and are never dropped (see the
        module docstring); each dropped hot-symbol row may add one.
        """
        if self.pending_rows <= self.max_pending_rows:
            return
        excess = self.pending_rows - self._gap_rows() - self.max_pending_rows
        while excess > 0:
            oldest_buf = oldest_droppable_window(self._buf)
            fronts = [
                (w, i) for i, b in enumerate(self._batches) if (w := b.oldest_droppable_window()) is not None
            ]
            oldest_batch = min(fronts) if fronts else None
            if oldest_batch is not None and (oldest_buf is None or oldest_batch[0] <= oldest_buf):
                batch = self._batches[oldest_batch[1]]
                i, dropped = batch.drop_oldest_droppable()
                self._count_drop(dropped, batch=batch, index=i)
                excess -= 1  # a tombstone, or a gap row in its place (gap rows do not count)
                continue
            if oldest_buf is None:
                return
            dropped = pop_droppable(self._buf, oldest_buf)
            self._rows -= 1
            excess -= 1 + self._count_drop(dropped)

    def _gap_rows(self) -> int:
        """Live gap rows and facts (batches.never_dropped) in the buffer and the batches."""
        n = gap_rows(self._buf)
        for b in self._batches:
            n += sum(map(never_dropped, b.units))
        return n

    def _count_drop(self, u: Unit, *, batch: Batch | None = None, index: int = 0) -> int:
        """Count a dropped row and mark its gap; 1 when that turned a droppable buffered row into a gap row.

        A row dropped from a frozen batch (``batch``, at ``index``) gets its gap in
        its place there, never in the buffer: the batch also holds the window's
        observation, which, stored without the gap, said the image was watched
        in the window without the dropped calls until (or, after a failure and
        a stop, for good instead of until) a later batch was stored.
        """
        self.dropped_rows += 1
        if isinstance(u, HotSymbolDelta):
            self.dropped_invocations += u.invocation_count
        gap = dropped_gap(u, self.window_seconds)  # a count or an unwatched-container mark
        if gap is None:
            return 0
        if batch is not None:
            batch.put_gap(index, gap)
            self.gap_rows_from_drops += 1
            return 0
        return self._mark_gap(gap)

    def _mark_gap(self, gap: ObservationWindow) -> int:
        """The dropped buffered row's gap, merged into its window in the buffer.

        1 when the gap was merged into a buffered observation row that had none
        (one droppable row fewer), else 0.
        """
        w = self._buf.get(gap.window_start_ns)
        had = w.observations.get((gap.image_digest, gap.node_name)) if w is not None else None
        if add_observation(self._buf, gap):
            self._rows += 1
            self.gap_rows_from_drops += 1
        return int(had is not None and not had.has_gap)

    # -- flushing --------------------------------------------------------------

    async def flush(
        self, store: Writer, *, write_timeout: float | None = None, deadline: float | None = None
    ) -> bool:
        """Write everything pending; True on success (or nothing to write).

        Frozen batches go first, each exactly as it was frozen; the buffer is
        frozen into a new batch only once they are all stored, but for spooled
        export counts that wait for the export lock (:attr:`spool_gate`): they
        stay, False is returned, and the batches behind them are written (a
        node-wide gap of the very time nobody watched must not wait). On
        :class:`StoreError` (including ``StoreUnavailable``) or a timeout the
        failed batch and everything after it stay pending, ``failures`` is
        incremented, ``last_error`` says why, and False is returned.
        Concurrent calls are serialized. Cancelling a flush loses nothing:
        the batch stays frozen and its retry is a no-op if it was stored.
        With ``deadline`` (a ``time.monotonic()`` value) no write runs past
        it: each gets at most the time left.
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            buffer_frozen = False
            self.last_failure = None
            while True:
                batch = next((b for b in self._batches if not self._gated(b)), None)
                if batch is None:
                    if buffer_frozen or not self._buf:
                        break
                    self._freeze_buffer()  # once per flush (maybe several batches): later rows wait
                    buffer_frozen = True
                    continue
                if deadline is not None and deadline - time.monotonic() <= 0:
                    self.failures += 1
                    self.last_error = "no time left before the shutdown deadline"
                    return False
                try:
                    result = await self._write(store, batch, write_timeout, deadline)
                except StoreError as e:
                    self.failures += 1
                    self.last_error, self.last_failure = str(e), e
                    return False
                self._done(batch, result)
            if self._batches:  # only spooled export counts waiting for the export lock are left
                self.failures += 1
                self.last_error = (
                    "spooled counts of the export file wait until this agent holds the export lock "
                    "(another agent may be storing counts of the same lines)"
                )
                return False
            self._failures_at_success = self.failures
            self.last_error = None
            return True

    @property
    def waits_for_lock(self) -> bool:
        """All that is pending is spooled export counts the gate holds back (:attr:`spool_gate`)."""
        return not self._buf and bool(self._batches) and all(self._gated(b) for b in self._batches)

    def _gated(self, batch: Batch) -> bool:
        """A spooled batch of export counts this agent may not write yet (:attr:`spool_gate`); one of
        an agent before the spans (``export_known`` False) may hold such counts, so it waits too."""
        if not batch.from_spool or self.spool_gate is None:
            return False
        if batch.export_position is None and batch.export_known:  # says it holds no export counts
            return False
        return not self.spool_gate()

    async def _write(
        self, store: Writer, batch: Batch, write_timeout: float | None, deadline: float | None
    ) -> BatchResult:
        """Write one batch; abandon it once ``write_timeout`` passes without a part committed
        (store/pending_write.py)."""
        own = [b.seq for b in self._batches if b.agent_id == self.agent_id]
        # Of this agent's own sequences only: a batch of another agent (spooled) or under a derived
        # identity (store/batch_identity.py storable_identity) has its own; the floor deleted its parts.
        batch.ledger_floor = min(own) if own and batch.agent_id == self.agent_id else 0
        batch.unlocked = batch.from_spool and self.spool_unlocked is not None and self.spool_unlocked()
        return await write_timed(self, store, batch, write_timeout, deadline)

    def _done(self, batch: Batch, result: BatchResult) -> None:
        self._batches.remove(batch)
        self._timeout_splits_done += batch.timeout_splits
        self.rows_flushed += result.written
        self.duplicate_rows += result.duplicate
        self.quarantined_rows += result.quarantined
        self.quarantined_invocations += result.quarantined_invocations
        self.expired_rows += result.expired
        self.flushes += 1
        if batch.from_spool:
            self.spool_replayed_rows += result.written + result.duplicate + result.quarantined
            self.spool_recounted_rows += result.recounted
            self.spool_unverified_rows += result.unverified
        else:
            self.outlived_rows += result.unverified
        if result.duplicate:
            log.warning(
                "flush %s/%d: %d rows were already stored (a retry after a lost acknowledgement); "
                "not counted again", batch.agent_id, batch.seq, result.duplicate,
            )  # fmt: skip
        for err in result.errors:
            log.error(
                "flush %s/%d: a row the store refused was quarantined: %s", batch.agent_id, batch.seq, err
            )

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
