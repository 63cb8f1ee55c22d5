"""The agent's drains and periodic flushes: counts move from the aggregator to the store exactly once.

Split from :mod:`stellaops_runtime.agent.runner` (the ``Agent``'s store side, a mixin of it):

- a drain moves the aggregator's counts into the outage buffer (agent/flusher.py) from a
  done-callback of the pipeline thread's future, so a cancelled caller never drops them;
- an early drain runs when ``hotSymbols.maxKeys`` rows are held, so a key storm cannot grow the
  aggregator while a slow store is written;
- the flush loop writes the buffer every ``flushIntervalSeconds`` (sooner after an early drain),
  marks witness claims due only once the write holding their counts succeeded, gives freed
  memory back to the kernel after ``TRIM_AFTER_ROWS`` stored rows, and writes the node's proof
  of life after each flush (agent/flusher.py ``prove_alive``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from stellaops_runtime.agent.allocator import release_free_memory
from stellaops_runtime.contracts.redact import redact

if TYPE_CHECKING:
    from stellaops_runtime.agent.flusher import Flusher
    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.agent.watch_record import WatchRecord
    from stellaops_runtime.store.pending import PendingWrites

log = logging.getLogger("stellaops_runtime.agent.runner")

TRIM_AFTER_ROWS = 10_000  # rows stored between two returns of freed memory to the kernel


class Draining:
    """The ``Agent``'s drains and flush loop (a mixin: the attributes are the Agent's)."""

    pipeline: Pipeline
    flusher: Flusher
    witness: Any
    watch: WatchRecord
    drains_running: set[asyncio.Future[Any]]
    rows_in_transit: int
    drain_deadline: float | None
    early_drains: int
    _worker: ThreadPoolExecutor
    _flush_now: asyncio.Event
    _flush_stop: asyncio.Event
    _rows_at_trim: int
    in_pipeline: Callable[..., Any]
    config: Any

    @property
    def pending(self) -> PendingWrites:
        """The outage buffer: rows drained and not yet stored."""
        return self.flusher.pending

    async def _early_drain(self) -> bool:
        """``hotSymbols.maxKeys`` rows are held: hand them to the outage buffer now.

        Not left to the flush loop: while it writes (a slow store, or one that is
        down and retried) the aggregator would keep growing under a key storm.
        The counts move exactly as in a periodic drain (nothing dropped); the
        buffer is bounded by ``maxPendingRows``, its drops counted.
        """
        self.early_drains += 1
        if not await self._drain():
            return False
        self._flush_now.set()
        return True

    async def _drain(self) -> bool:
        """Move the aggregator's counts into the outage buffer.

        The rows join the buffer in a done-callback of the pipeline thread's
        future, not after the ``await``: if the caller is cancelled while the
        drain runs (attribution can take seconds on a cold cache), the counts
        still reach the buffer instead of vanishing with the cancelled task.

        Once shutdown has set :attr:`drain_deadline`, the wait ends there: the drain
        goes on, and shutdown reports its counts as lost if it is still running
        when shutdown must end (agent/shutdown.py), instead of exiting as if
        nothing had been held.

        False: the drain is held, nothing moved (the export source's position could not be
        recorded first: agent/watch_record.py ``drain_starts``); the next drain tries again.
        """
        if self.drain_deadline is None:  # shutdown marks them before its last drain (agent/shutdown.py)
            await self._mark_outages()
        if not self.watch.drain_starts():  # an export checkpoint in flight is recorded before its rows move
            return False  # held: the record cannot be written (agent/watch_record.py)
        fut = asyncio.get_running_loop().run_in_executor(self._worker, self._drain_counted)
        self.drains_running.add(fut)
        fut.add_done_callback(self._keep_drained)
        if self.drain_deadline is None:
            await asyncio.shield(fut)
        else:
            await asyncio.wait({fut}, timeout=max(0.0, self.drain_deadline - time.monotonic()))
        return True

    async def _mark_outages(self) -> None:
        """The source's unwatched spans reach the pipeline before a drain takes the counts read after
        them (agent/outages.py ``mark``). The span about the first line of an export file read from
        its start is known from the moment that line is queued, and was marked only by the next
        1 s tick: a drain in between stored the line's counts, and an agent killed before its next
        flush lost the span, so the time before the node's first agent read the file read watched
        (tests/e2e/test_export_resume.py, sigkill). Only while that span is due
        (sources/export_restart.py ``first_span_due``): every other span keeps the tick's pieces
        (an open outage is marked piecewise up to each tick, tests/e2e/test_grpc_loop_stall.py).
        A failure is left to the tick (retried there)."""
        outages = getattr(self, "outages", None)
        if outages is None or not getattr(outages.source, "first_span_due", False):
            return
        try:
            await outages.mark()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("marking a source outage as a gap before a drain failed (retried)")

    def _drain_counted(self) -> tuple[Any, Any]:
        """The pipeline's drain (on its thread), its rows counted as in transit until the buffer has
        them: a /metrics rendering queued behind the drain runs before the event loop's callback
        below, and read "nothing in memory, nothing pending" while the rows were in neither."""
        deltas, windows = self.pipeline.drain()
        self.rows_in_transit += len(deltas)
        return deltas, windows

    def _keep_drained(self, fut: asyncio.Future[Any]) -> None:
        self.drains_running.discard(fut)
        if fut.cancelled():
            return
        if (e := fut.exception()) is not None:
            log.error("draining the hot-symbol aggregator failed: %r", e)
            return
        deltas, windows = fut.result()
        if deltas or windows:
            self.pending.add(deltas, windows, owned=True)  # fresh rows: kept, not copied
        self.rows_in_transit -= len(deltas)  # after the buffer counts them (hot_symbols_pending)
        if self.witness is not None and deltas:
            self.witness.observe(deltas)

    async def _trim_after_flush(self) -> None:
        """Once ``TRIM_AFTER_ROWS`` rows were stored since the last time, give the memory their
        drain and write freed back to the kernel (agent/allocator.py), on a worker thread."""
        done = self.pending.rows_flushed
        if done - self._rows_at_trim >= TRIM_AFTER_ROWS:
            self._rows_at_trim = done
            await self.in_pipeline(self.pipeline.shed_caches)
            await asyncio.to_thread(release_free_memory)

    async def _flush_loop(self) -> None:
        interval = self.config.hot_symbols.flush_interval_seconds
        delay = interval
        while not self._flush_stop.is_set():
            await _wait_any(self._flush_now, self._flush_stop, seconds=delay)
            if self._flush_stop.is_set():
                return  # the final flush takes over
            self._flush_now.clear()
            taken = self.watch.flush_starts()  # agent/watch_record.py
            # Claims whose counts were drained before this write: the buffer it freezes holds them.
            # Counts drained while it runs (an early drain under a key storm) wait for the next.
            claims = self.witness.take_staged() if self.witness is not None else set()
            ok = False
            try:
                ok = await self.flusher.flush(proof_follows=True)  # one connection for both
                await self._trim_after_flush()
            except Exception as e:  # never let one bad flush end periodic flushing
                self.pending.failures += 1
                self.pending.last_error = f"unexpected error: {redact(repr(e))}"
                log.exception("hot-symbol flush failed unexpectedly (rows kept for retry)")
                ok = False
            finally:  # cancelled too (shutdown): the claims wait for the final flush
                if self.witness is not None:
                    if ok:
                        self.witness.stored(claims)
                    else:
                        self.witness.restage(claims)
            self.watch.flushed(taken, ok)
            # every flush, an empty or failed one too: a live node never reads as down (its moment
            # moves only with a flush that stored everything: agent/watch_record.py ``claimed``)
            await self._prove_unless_stopped()
            delay = interval if ok else min(interval, self.pending.next_retry_delay())

    async def _prove_unless_stopped(self) -> None:
        """The proof of life after a flush, given up once the agent stops: it holds no count, and the
        shutdown waits for the flush loop with the grace the final flush and the spool need
        (agent/shutdown.py); against a black-holed store the proof's connect alone spent 2 s of a
        4 s grace. Its open and write are shielded on their threads, so giving up the wait is safe."""
        proof = asyncio.ensure_future(self.flusher.prove_alive(self.watch.node, self.watch.claimed))
        stop = asyncio.ensure_future(self._flush_stop.wait())
        try:
            await asyncio.wait({proof, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not proof.done():
                proof.cancel()


async def _wait_any(*events: asyncio.Event, seconds: float) -> None:
    """Return when any of ``events`` is set or ``seconds`` have passed."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
