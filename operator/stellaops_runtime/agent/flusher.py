"""The agent's path to the store: drain, flush exactly once, time out, spool at shutdown.

Split from :mod:`stellaops_runtime.agent.runner` so the agent's lifecycle and
its store handling can each be read on their own.

- Every ``flushIntervalSeconds`` (or early, when too many keys are held) the
  aggregator is drained on the pipeline thread into the outage buffer
  (:class:`~stellaops_runtime.store.pending.PendingWrites`), which writes it
  as frozen batches through the flush ledger: a retried batch never counts
  twice.
- A write still running after ``store.flushTimeout`` is abandoned: the
  store's connections are shut down and the batch is retried later on a new
  connection; ``/readyz`` reports the failure meanwhile.
- After each flush the store's idle connections are closed: an agent holds
  a connection only while it writes, so a fleet larger than the server's
  connection limit takes turns instead of leaving the agents past the
  limit refused for good.
- At shutdown, what the store cannot take before the grace deadline is
  written to ``store.spoolPath`` and replayed by the next agent on the node
  (:mod:`stellaops_runtime.agent.spool_keeper`).
- After every flush, empty ones included, and after the final one, the node's
  proof of life is written (:meth:`Flusher.prove_alive`, store/node_liveness.py,
  by :mod:`stellaops_runtime.agent.proof_of_life`): the store-clock moment up to
  which the agent watched and stored everything; before the agent's first
  rows, its start row. A failed proof is counted and logged and never fails the
  flush; after a flush that found the store unreachable (its open failed, its
  start row or pairings met a store down or hung, its rows' write a store down)
  it is not tried (counted as failed). A start row the store is out of reach
  for fails its flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from stellaops_runtime.agent.proof_of_life import ProofOfLife
from stellaops_runtime.agent.spool_keeper import SpoolKeeper
from stellaops_runtime.agent.store_open import StoreOpener
from stellaops_runtime.agent.store_wait import out_of_reach, wait_seconds, wait_written
from stellaops_runtime.contracts.config import AgentConfig
from stellaops_runtime.contracts.redact import redact
from stellaops_runtime.store.engine import (
    StoreConfigError,
    StoreError,
    Timeouts,
    prepare_sqlite_directory,
    refuse_in_memory,
    safe_url,
)
from stellaops_runtime.store.image_pairs import PairsToRecord
from stellaops_runtime.store.pending import PendingWrites
from stellaops_runtime.store.store_url import parse_store_url
from stellaops_runtime.store.threads import run_detached
from stellaops_runtime.store.writer import HotSymbolStore

log = logging.getLogger(__name__)

ABORT_WAIT_SECONDS = 1.0  # at shutdown, at most half the spool's reserve (agent/shutdown.py)
CLOSE_WAIT_SECONDS = 2.0


class Flusher:
    """Moves drained counts to the store; ``drain`` runs the aggregator's drain on the pipeline thread."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        agent_id: str,
        drain: Callable[[], Awaitable[bool | None]],
        stop: Callable[[str], None],
        node: str = "",
    ) -> None:
        self.config = config
        self.node = node  # the node's name: its proof of life's key (store/node_liveness.py)
        st = config.store
        self.timeouts = Timeouts(
            connect=st.connect_timeout,
            statement=st.statement_timeout,
            idle_in_transaction=st.idle_in_transaction_timeout,
            keepalive=st.tcp_keepalive,
        )
        self.pending = PendingWrites(
            max_pending_rows=config.hot_symbols.max_pending_rows,
            agent_id=agent_id,
            window_seconds=config.hot_symbols.window_seconds,
        )
        self.store: HotSymbolStore | None = None
        self._drain_fn = drain
        self._stop = stop
        self.config_error = ""  # a store configuration error met after start-up (exit 2)
        # An image's config digest beside the manifest digest it is filed under, from the lifecycle
        # registry (agent/lifecycle_part.py); stored before the rows of a flush, once each
        # (store/image_pairs.py), and spooled with the rows at shutdown (agent/spool_pairs.py).
        self.pairs = PairsToRecord()
        self.spool = SpoolKeeper(config.store.spool_path, self.pending, self._why, self.pairs)
        self.stored_through = 0.0  # time.monotonic() when the last flush that stored everything began
        self.failed_at = 0.0  # time.monotonic() when the last failed flush ended
        self.drain_held = False  # the running flush's drain was held (agent/draining.py)
        # On the opening thread, before anything is written to it (agent/node_history.py).
        self.on_open: Callable[[HotSymbolStore], None] | None = None
        self.opener = StoreOpener(config, self.timeouts, lambda: self.on_open)
        # the start row and the proofs of life (store/node_liveness.py), written by agent/proof_of_life.py
        self.proof = ProofOfLife(config, agent_id=agent_id, label=self.label, on_timeout=self._timed_out)
        # the last flush found the store unreachable: its open failed, its start row or pairings met a
        # store down or hung, or its rows' write a store down (the proof after it does not try: it
        # would wait as long again)
        self.unreachable = False

    @property
    def label(self) -> str:
        return safe_url(self.config.store.url)

    @property
    def liveness_failures(self) -> int:
        """Proofs of life not written, the start row's included (agent/store_metrics.py)."""
        return self.proof.failures

    def _timed_out(self) -> None:
        """A small write (start row, proof of life, pairings) abandoned after store.flushTimeout: counted
        with the rows' writes abandoned so (store_flush_timeouts_total, agent/store_metrics.py)."""
        self.pending.timeouts += 1

    def _why(self) -> str:
        """Why rows are left at shutdown: the last error, else what was still running at the deadline.

        A store whose opening (or first write) was still waiting at the deadline (a SQLite file
        another process holds locked, a database that does not answer) left no error: the log said
        "could not store 189 hot-symbol rows before shutdown: None".
        """
        if self.pending.last_error:
            return self.pending.last_error
        doing = "writing to" if self.store is not None else "opening"
        return f"{doing} store {self.label} did not finish before the shutdown deadline"

    # -- store ----------------------------------------------------------------------

    def check_config(self) -> None:
        """Raise StoreConfigError for a store configuration that can never work (bad URL, no directory).

        Cheap and offline, so the agent can refuse a mistake at start-up while
        the store itself is opened in the background.
        """
        st = self.config.store
        parse_store_url(st.url)  # without SQLAlchemy: the agent never loads it (issue 13)
        refuse_in_memory(st.url)
        prepare_sqlite_directory(st.url, create=st.create_directories)

    async def open(self, *, deadline: float | None = None) -> bool:
        """Open (and migrate) the store if it is not open; False while it is unusable.

        One attempt runs at a time: a caller that finds one running (its
        earlier caller gave up waiting) waits for that one instead of
        starting another connection (agent/store_open.py; a store not at the
        newest revision is migrated in a child process).
        """
        if self.store is not None:
            return True
        try:
            store = await self.opener.attempt(deadline)
        except StoreConfigError:
            raise
        except TimeoutError:
            self.pending.last_error = f"opening store {self.label} timed out"
            log.warning("%s (will retry)", self.pending.last_error)
            return False
        except StoreError as e:  # down, or not migratable yet: keep counting, retry at the next flush
            self.pending.last_error = str(e)
            log.warning("store %s not usable (will retry): %s", self.label, e)
            return False
        if self.store is None:  # two waiters on one attempt: the first keeps it
            store.defer_maintenance = True  # run after a flush, outside its timeout (_maintain)
            self.store = store
            log.info("hot-symbol store ready: %s", self.label)
        return True

    def _open(self) -> HotSymbolStore:
        """One attempt to open the store, on the calling thread (agent/store_open.py)."""
        return self.opener.open_now()

    async def drain(self) -> None:
        """Move the aggregator's counts into the outage buffer (see ``Agent._drain``); a drain
        held (the export position not recorded) makes the flush that runs it not store everything."""
        if await self._drain_fn() is False:
            self.drain_held = True

    async def flush(self, *, deadline: float | None = None, proof_follows: bool = False) -> bool:
        """Drain, then write everything pending; with ``deadline`` (monotonic), never past it.

        ``stored_through`` becomes the start of a flush that stored everything (all counted
        before it is in the store), ``failed_at`` the end of one that did not (``--exit-when-idle``).
        ``proof_follows``: the caller writes the proof of life next (:meth:`prove_alive`, which
        gives the connection back): a flush that stored keeps its connection for it, so a busy
        node opens one connection a flush, not two.
        """
        started = time.monotonic()
        ok = False
        self.drain_held = False
        self.unreachable = False
        try:
            ok = await self._flush(deadline=deadline) and not self.drain_held
        finally:
            if ok:
                self.stored_through = started
            else:
                self.failed_at = time.monotonic()
            if self.store is not None and not (ok and proof_follows):  # between flushes, another
                # agent may need the connection
                run_detached(self.store.release, name="store-release").add_done_callback(_retrieved)
        return ok

    async def _flush(self, *, deadline: float | None = None) -> bool:
        await self.drain()
        if not self.pending.pending_rows:
            self.spool.done()
            return True
        try:
            opened = await self.open(deadline=deadline)
        except StoreConfigError as e:
            self.pending.failures += 1
            self.pending.last_error = str(e)
            self.config_error = str(e)
            log.error("%s; stopping", e)
            self._stop("store configuration error")
            return False
        if not opened:
            self.pending.failures += 1
            self.unreachable = True  # the proof after it does not try again (_prove_alive)
            return False
        assert self.store is not None
        if self.node:  # before this agent's first rows, its start row (agent/proof_of_life.py)
            start = await self.proof.write_start(self.store, self.node, deadline)
            if start.unreachable:  # down or hung: the rows' write would wait as long again,
                self.pending.failures += 1
                self.pending.last_error = start.why
                self.unreachable = True  # and so would the proof after it
                log.warning("store write failed (%d rows kept for retry): %s", self.pending.pending_rows,
                            start.why)  # fmt: skip
                return False
        if not await self._record_pairs(deadline):  # before the rows they pair: never rows without it
            self.pending.failures += 1
            return False
        timeouts = self.pending.timeouts
        ok = await self.pending.flush(
            self.store, write_timeout=self.config.store.flush_timeout, deadline=deadline
        )
        failure = self.pending.last_failure  # one that found the store out of reach: the proof after it
        # would wait as long again (not one that timed out: a slow store may still take the proof)
        self.unreachable = failure is not None and self.pending.timeouts == timeouts and out_of_reach(failure)
        if ok:
            self.spool.done()
            if deadline is None:  # not at shutdown: no time for housekeeping then
                await self._maintain()
        else:
            log.warning("store write failed (%d rows kept for retry): %s", self.pending.pending_rows,
                        self.pending.last_error)  # fmt: skip
        return ok

    async def prove_alive(
        self, node: str, claimed: tuple[int, int] | None, deadline: float | None = None
    ) -> bool:
        """Write the node's proof of life (store/node_liveness.py) for the moment ``claimed`` (wall ns,
        boottime ns; the watch record's, agent/watch_record.py): the store's clock less the boot
        clock's time since it. Opens the store if need be (an idle agent's empty flushes write it
        too), but not right after a flush that found the store out of reach (:attr:`unreachable`: it
        would fail as well, after as long again); waited for at most ``store.flushTimeout``, never past
        ``deadline``. False, counted in :attr:`liveness_failures` and logged, when not written; never
        raises. Gives the store's idle connections back after it (the flush's too: :meth:`flush`
        ``proof_follows``)."""
        try:
            return await self._prove_alive(node, claimed, deadline)
        finally:
            if self.store is not None:
                run_detached(self.store.release, name="store-release").add_done_callback(_retrieved)

    async def _prove_alive(self, node: str, claimed: tuple[int, int] | None, deadline: float | None) -> bool:
        if claimed is None:  # nothing watched and stored yet: nothing to vouch for
            return True
        if self.proof.busy:  # the last one's write has not returned
            return self.proof.failed("the last write has not finished")
        if self.unreachable:  # the flush just found the store out of reach: this proof would too,
            # after as long again (a store that is down doubled the flush loop's retry period)
            return self.proof.failed(f"the flush found the store unreachable: {self.pending.last_error}")
        try:
            if not await self.open(deadline=deadline):
                return self.proof.failed(self.pending.last_error or "store not open")
        except Exception as e:
            return self.proof.failed(redact(repr(e)))
        store = self.store
        assert store is not None
        return await self.proof.write_alive(store, node, claimed, deadline)

    async def _record_pairs(self, deadline: float | None) -> bool:
        """Store the pairings not stored yet (store/image_pairs.py), before the rows they pair: until
        a pairing is in, a question by one digest reads that digest's rows alone, and the windows of
        rows stored first said "watched" while the calls under the other digest went unread (a "not
        observed" about called code). False, with ``last_error``, when the write fails or does not
        finish within ``store.flushTimeout``: the flush then stores no rows, and all wait for the
        next one (the parts stored meanwhile are not written again; a write not done in time is cut
        with the store's connections). A pairing the database refuses as data can never be written:
        counted (``PairsToRecord.refused``), it holds no rows."""
        store, pairs = self.store, self.pairs.unstored()
        if store is None or not pairs:
            return True
        # each part kept as stored when it commits, a refused pairing counted (never tried again)
        fut = run_detached(store.record_pairs, pairs, self.pairs, name="store-pairs")
        timeout = wait_seconds(self.config.store.flush_timeout, deadline)
        done = await wait_written(store, fut, seconds=timeout, deadline=deadline, label=self.label)
        if not done.why:
            return True
        if done.timed_out:
            self._timed_out()
        self.unreachable = done.unreachable  # the proof after it does not try either
        self.pending.last_error = f"image digest pairings not stored (rows kept for retry): {done.why}"
        log.warning("%s", self.pending.last_error)
        return False

    async def _maintain(self) -> None:
        """The history's partitions and retention, after a flush and outside its write timeout.

        Bounded by the store's own timeouts (lock, statement); waited for at most
        ``store.flushTimeout``, and left to finish on its thread after that.
        """
        store = self.store
        if store is None or not store.maintenance_due:
            return
        fut = run_detached(store.run_due_maintenance, name="store-maintain")
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout=self.config.store.flush_timeout)
        except Exception as e:  # housekeeping (a timeout included): never a failed flush
            log.warning("history maintenance of %s still running or failed: %r", self.label, e)

    def flush_stuck(self) -> float:
        """Seconds the running write is past ``store.flushTimeout`` (0 when none is)."""
        since = self.pending.inflight_since
        if since is None:
            return 0.0
        return max(0.0, time.monotonic() - since - self.config.store.flush_timeout)

    def abort(self) -> None:
        if self.store is not None:
            self.store.abort()

    async def final_flush(self, deadline: float) -> bool:
        """Flush until everything is stored or ``deadline`` (monotonic) comes; then spool the rest.

        True when every row was stored or spooled. Entered with no time left (earlier shutdown steps
        used it), it still drains once before it spools: the counts read since the last drain are
        otherwise in neither the store nor the spool (a drain not done in time is reported lost by
        agent/shutdown.py).
        """
        if deadline <= time.monotonic():
            with contextlib.suppress(Exception):  # as a failed drain in a flush: the spool is written
                await self.drain()
        while True:
            try:
                if deadline > time.monotonic() and await self.flush(deadline=deadline):
                    return True
                if self.drain_held and not self.pending.pending_rows:  # nothing a retry could store
                    return True  # the held counts are the caller's to report (agent/shutdown.py)
                if self.pending.waits_for_lock:  # nor for spooled counts waiting for the export lock,
                    return self.spool.save()  # which a stopping agent does not take (store/pending.py)
            except Exception as e:
                self.pending.failures += 1
                self.pending.last_error = f"unexpected error: {redact(repr(e))}"
                log.exception("final hot-symbol flush failed unexpectedly")
            remaining = deadline - time.monotonic()
            if remaining <= 0.05 or self.config_error:
                return self.spool.save()
            await asyncio.sleep(min(self.pending.next_retry_delay(), remaining))

    async def close(self, deadline: float | None = None) -> None:
        """Close the store, waited for at most :data:`CLOSE_WAIT_SECONDS` and never past the shutdown
        ``deadline`` (monotonic): a close hung in a black hole is left on its daemon thread. A
        migration still running in its child process is killed first: nothing outlives the agent."""
        self.opener.stop()
        if self.store is not None:
            fut = run_detached(self.store.close, name="store-close")
            timeout = CLOSE_WAIT_SECONDS
            if deadline is not None:
                timeout = min(timeout, max(0.0, deadline - time.monotonic()))
            try:
                await asyncio.wait_for(asyncio.shield(fut), timeout=timeout)
            except Exception as e:  # closing is best effort at exit (a timeout included)
                log.debug("closing the store: %r", e)


def _retrieved(fut: asyncio.Future[None]) -> None:
    """Closing idle connections is best effort: its outcome is retrieved, never raised."""
    if not fut.cancelled() and (e := fut.exception()) is not None:
        log.debug("releasing the store's idle connections: %r", e)
