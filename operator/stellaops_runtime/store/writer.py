"""The hot-symbol store: one object per database, used from a worker thread.

The bridge hands over :class:`HotSymbolDelta` rows (what one window added for
one key) and :class:`ObservationWindow` rows. :meth:`HotSymbolStore.write`
adds them in one transaction (tools, tests);
:meth:`HotSymbolStore.write_batch` is what the agent uses: a frozen batch
written exactly once through the flush ledger, with refused rows quarantined
(:mod:`stellaops_runtime.store.ledger`). The SQL itself is in
:mod:`stellaops_runtime.store.upsert`.

The class is synchronous; the agent calls it through a worker thread and,
when a write hangs past its timeout, calls :meth:`HotSymbolStore.abort` from
the event loop: every connection the store opened is shut down at the socket
(SQLite: interrupted), so the hung call returns with an error and the batch
is retried on a new connection.
Open one with :func:`stellaops_runtime.store.engine.open_store`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from stellaops_runtime.contracts.hotsymbols import HotSymbolDelta, ObservationWindow
from stellaops_runtime.store.batches import Batch, BatchResult
from stellaops_runtime.store.dbconn import Database, cut
from stellaops_runtime.store.engine import (
    StoreError,
    StoreNotInitialized,
    StoreUnavailable,
    create_store_engine,
    first_line,
    has_schema,
    is_database_error,
    is_unavailable,
    open_store,
    safe_url,
)
from stellaops_runtime.store.fact_builds import prune_gone_nodes_builds
from stellaops_runtime.store.image_pairs import PairsToRecord, record_pairs
from stellaops_runtime.store.ledger import prune_ledger, write_batch
from stellaops_runtime.store.node_liveness import prune_liveness
from stellaops_runtime.store.partitions import (
    DEFAULT_RETENTION_DAYS,
    Maintenance,
    check_retention_days,
    is_missing_partition,
    maintain,
)
from stellaops_runtime.store.retention_clock import LocalClock
from stellaops_runtime.store.upsert import merge_by_key, merge_by_window, merge_observations, write_rows

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)
_SUMS = frozenset({"invocation_count", "total_latency_ns"})  # sum() of a bigint: numeric on PostgreSQL
PRUNE_EVERY_BATCHES = 1_000
MAINTAIN_EVERY_SECONDS = 3_600.0  # day partitions ahead and retention (store/partitions.py)

__all__ = [
    "HotSymbolStore",
    "StoreError",
    "StoreNotInitialized",
    "StoreUnavailable",
    "merge_by_key",
    "merge_by_window",
    "merge_observations",
    "open_store",
]

# -- the store ----------------------------------------------------------------


class HotSymbolStore:
    """The hot-symbol store on one database (PostgreSQL or SQLite).

    Writes go over plain DB-API connections (``db``,
    :class:`~stellaops_runtime.store.dbconn.Database`); :attr:`engine` is a
    SQLAlchemy engine on the same database, created on first use, for the
    readers that share the process (the witness part, tools, tests).
    """

    def __init__(self, db: Database, *, retention_days: int = DEFAULT_RETENTION_DAYS) -> None:
        self.db = db
        self.retention_days = check_retention_days(retention_days)
        self._maintained_at: float | None = None  # time.monotonic() of the last maintenance attempt
        self._local_clock = LocalClock()  # SQLite's retention: no step of the wall clock ahead
        self.url = safe_url(db.url)
        self._engine: Engine | None = None
        # DBAPI connections of the SQLAlchemy engine (if one was made): abort() reaches them too.
        self._sa_raw: dict[int, Any] = {}
        self._engine_lock = threading.Lock()
        self._batches = 0
        self.aborts = 0
        # The agent sets it: a write it times out must not include housekeeping (see write_batch).
        self.defer_maintenance = False
        self._maintenance_due: bool | None = None  # deferred: None, or whether to apply retention

    @property
    def _raw(self) -> dict[int, Any]:
        """Every DB-API connection the store opened and has not closed (what :meth:`abort` reaches)."""
        with self._engine_lock:
            return {**self.db._raw, **self._sa_raw}

    @property
    def engine(self) -> Engine:
        """A SQLAlchemy engine on the store's database (imports SQLAlchemy on first use)."""
        with self._engine_lock:
            if self._engine is None:
                from sqlalchemy import event

                engine = create_store_engine(self.db.url, timeouts=self.db.timeouts)
                event.listen(engine, "connect", self._on_connect)
                event.listen(engine, "close", self._on_close)
                event.listen(engine, "close_detached", self._on_close_detached)
                self._engine = engine
            return self._engine

    def _on_connect(self, dbapi_conn: Any, _record: Any) -> None:
        with self._engine_lock:
            self._sa_raw[id(dbapi_conn)] = dbapi_conn

    def _on_close(self, dbapi_conn: Any, _record: Any) -> None:
        with self._engine_lock:
            self._sa_raw.pop(id(dbapi_conn), None)

    def _on_close_detached(self, dbapi_conn: Any) -> None:
        self._on_close(dbapi_conn, None)

    def write(self, deltas: list[HotSymbolDelta], windows: list[ObservationWindow]) -> int:
        """Add deltas and observation windows in one transaction.

        Returns the number of rows written: distinct (key, window) hot-symbol
        rows plus distinct observation-window rows (the unit
        :class:`~stellaops_runtime.store.pending.PendingWrites` counts in).
        Raises :class:`StoreUnavailable` when the database is down or
        unreachable (retry later) and :class:`StoreError` otherwise.
        No ledger: a retry after a lost acknowledgement may count twice;
        the agent uses :meth:`write_batch`.
        """
        try:
            with self.db.begin() as conn:
                return write_rows(conn, deltas, windows)
        except Exception as e:
            raise self._wrap(e, "write to") from e

    def record_pairs(self, pairs: list[tuple[str, str]], into: PairsToRecord | None = None) -> int:
        """Store ``(config digest, manifest digest)`` pairings (store/image_pairs.py), idempotently;
        each part kept in ``into`` as it commits, a refused pairing counted there."""
        try:
            return record_pairs(self.db, pairs, into)
        except Exception as e:
            raise self._wrap(e, "write to") from e

    def write_batch(self, batch: Batch) -> BatchResult:
        """Write a frozen batch exactly once (see :mod:`stellaops_runtime.store.ledger`).

        Rows the database refuses are quarantined and reported in the
        result, and so are observation windows older than the retention's
        cutoff, which are not stored (``expired``: store/late_rows.py);
        anything else raises :class:`StoreUnavailable` or
        :class:`StoreError`, and the same batch may be retried as it is.
        """
        batch.retention_days = self.retention_days  # rows of days it removed: not in the history
        try:
            result = write_batch(self.db, batch)
        except Exception as e:
            if not (is_missing_partition(e) and self._repair_partitions()):
                raise self._wrap(e, "write to") from e
            try:  # the DEFAULT partition is back: every row has a partition now
                result = write_batch(self.db, batch)
            except Exception as again:
                raise self._wrap(again, "write to") from again
        if result.expired:
            log.warning(
                "flush %s/%s: %d observation windows start on days the retention removed "
                "(store.retentionDays %d): neither they nor their calls' history rows are stored; "
                "the calls' counts are added to their cumulative rows (hot_symbols), where retention "
                "keeps them",
                batch.agent_id, batch.seq, result.expired, self.retention_days,
            )  # fmt: skip
        self._batches += 1
        now = time.monotonic()
        if self._maintained_at is None or now - self._maintained_at >= MAINTAIN_EVERY_SECONDS:
            # Partitions from the first batch on; retention from an hour after it (a start-up,
            # often a spool replay, is no time for a large DELETE).
            retention = self._maintained_at is not None
            self._maintained_at = now
            if self.defer_maintenance:
                # The batch is committed: a slow maintenance (a table lock waited for, a large
                # DELETE) inside the caller's timed write made it look hung, so it was abandoned,
                # retried and counted as a duplicate instead of as flushed.
                self._maintenance_due = retention
            else:
                self._maintain_quietly(retention)
        if self._batches % PRUNE_EVERY_BATCHES == 1:
            try:
                pruned = prune_ledger(self.db, local_now=self._local_clock.now)  # SQLite: bounded
            except Exception as e:  # pruning is housekeeping: never fail a write for it
                log.warning("cannot prune the flush ledger of %s: %s", self.url, first_line(e))
            else:
                if pruned:
                    log.info("pruned %d flush-ledger rows older than the retention", pruned)
        return result

    @property
    def maintenance_due(self) -> bool:
        """A maintenance :meth:`write_batch` deferred (``defer_maintenance``) is waiting to run."""
        return self._maintenance_due is not None

    def run_due_maintenance(self) -> None:
        """Run the deferred maintenance, if any (errors are logged: it is housekeeping)."""
        retention, self._maintenance_due = self._maintenance_due, None
        if retention is not None:
            self._maintain_quietly(retention)

    def _repair_partitions(self) -> bool:
        """A row met no partition of the history: create its DEFAULT partition again (and the days ahead).

        Returns whether the store was repaired (the write may be retried at once).
        """
        log.warning(
            "store %s: a row met no partition of the history (its DEFAULT partition is gone); "
            "creating it again", self.url,
        )  # fmt: skip
        try:
            return self.maintain(retention=False).default_created
        except Exception as e:  # the write is retried later, and so is this
            log.warning("cannot repair the history partitions of %s: %s", self.url, first_line(e))
            return False

    def _maintain_quietly(self, retention: bool) -> None:
        try:
            self.maintain(retention=retention)
        except Exception as e:  # housekeeping: the next attempt is in an hour, rows go to DEFAULT
            log.warning("cannot maintain the history partitions of %s: %s", self.url, first_line(e))

    def maintain(self, *, now: dt.datetime | None = None, retention: bool = True) -> Maintenance:
        """Create the coming day partitions of the history and (``retention``) apply ``retention_days``.

        :meth:`write_batch` creates partitions after its first batch and then
        hourly, with the retention from the second run on (an hour after the
        first batch); see :mod:`stellaops_runtime.store.partitions`.
        """
        done = maintain(
            self.db, retention_days=self.retention_days, now=now, retention=retention,
            local_now=self._local_clock.now,
        )  # fmt: skip
        if retention and done.ran and done.cutoff is not None:
            self._prune_liveness(done.cutoff)
            if done.deleted_rows or done.dropped:  # a node loses its last window only where rows went
                prune_gone_nodes_builds(self.db, self.url)  # after the windows it removed; never raises
        if done.skipped:
            log.warning(
                "history maintenance: day partitions %s not created: too many of their rows are in the "
                "DEFAULT partition to move them under the table's lock in time (they stay there)",
                done.skipped,
            )
        if done.default_created:
            log.warning("history maintenance: the DEFAULT partition was missing; created it again")
        if done.created or done.dropped or done.deleted_rows:
            log.info(
                "history maintenance: created %s, dropped %s, deleted %d rows older than %s",
                done.created, done.dropped, done.deleted_rows, done.cutoff,
            )  # fmt: skip
        return done

    def _prune_liveness(self, cutoff: dt.datetime) -> None:
        """The proofs of life of nodes not heard of since before the retention's ``cutoff``
        (store/node_liveness.py ``prune_liveness``), after the windows it removed; logged, never raised."""
        try:
            pruned = prune_liveness(self.db, cutoff)
        except Exception as e:  # housekeeping: tried again at the next retention
            log.warning("cannot prune the proofs of life of %s: %s", self.url, first_line(e))
            return
        if pruned:
            log.info("pruned the proofs of life of %d nodes not heard of since before %s", pruned, cutoff)

    def abort(self) -> None:
        """Make every call in progress on this store fail now; safe from any thread.

        PostgreSQL connections are shut down at the socket (a hung peer
        cannot hold them: the blocked read returns at once), SQLite
        connections are interrupted. The pool is then emptied, so the next
        call opens a new connection.
        """
        self.aborts += 1
        self.db.abort()
        with self._engine_lock:
            conns = list(self._sa_raw.values())
            engine = self._engine
        for raw in conns:
            cut(raw, self.db.dialect)
        if engine is not None:
            with contextlib.suppress(Exception):
                engine.pool.dispose()

    def _wrap(self, e: Exception, what: str) -> StoreError:
        detail = first_line(e)
        if is_unavailable(e):
            return StoreUnavailable(f"cannot {what} store {self.url}: {detail}")
        if is_database_error(e):
            try:
                with self.db.connect() as conn:
                    missing = not has_schema(conn)
            except Exception as check:  # the store went away while we looked
                if is_unavailable(check):
                    return StoreUnavailable(f"cannot {what} store {self.url}: {detail}")
                missing = False
            if missing:
                return StoreNotInitialized(f"no hot-symbol tables in {self.url}: run the migrations")
            return StoreError(f"cannot {what} store {self.url}: {detail}")
        raise e

    # -- reading back (tests, tools) -----------------------------------------

    def read_hot_symbols(self) -> list[dict[str, Any]]:
        """Every cumulative row, ordered by key."""
        from stellaops_runtime.store.schema import hot_symbols

        return self._read(
            hot_symbols,
            hot_symbols.c.image_digest,
            hot_symbols.c.module,
            hot_symbols.c.function_name,
            hot_symbols.c.evidence_kind,
        )

    def read_windows(self) -> list[dict[str, Any]]:
        """The per-window history, one row per (key, window) (appended rows summed), ordered by both."""
        import sqlalchemy as sa

        from stellaops_runtime.store.schema import hot_symbol_windows

        c = hot_symbol_windows.c
        group = (c.image_digest, c.module, c.function_name, c.evidence_kind, c.window_start)
        stmt = (
            sa.select(
                *group,
                sa.func.sum(c.invocation_count).label("invocation_count"),
                sa.func.max(c.unique_callers).label("unique_callers"),
                sa.func.sum(c.total_latency_ns).label("total_latency_ns"),
                sa.func.max(c.max_latency_ns).label("max_latency_ns"),
                sa.func.min(c.first_seen).label("first_seen"),
                sa.func.max(c.last_seen).label("last_seen"),
            )
            .group_by(*group)
            .order_by(*group)
        )
        try:
            with self.engine.connect() as conn:
                return [
                    {k: int(v) if k in _SUMS else v for k, v in r._mapping.items()}
                    for r in conn.execute(stmt)
                ]
        except sa.exc.SQLAlchemyError as e:
            raise self._wrap(e, "read from") from e

    def read_observation_windows(self) -> list[dict[str, Any]]:
        from stellaops_runtime.store.schema import observation_windows

        c = observation_windows.c
        return self._read(observation_windows, c.image_digest, c.node_name, c.window_start)

    def _read(self, table: sa.Table, *order: sa.ColumnElement[Any]) -> list[dict[str, Any]]:
        import sqlalchemy as sa

        try:
            with self.engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(*order))]
        except sa.exc.SQLAlchemyError as e:
            raise self._wrap(e, "read from") from e

    def release(self) -> None:
        """Close the idle write connections (the agent calls it after each flush).

        An agent that kept its connection between flushes held it for life: a
        fleet larger than the server's connection limit left the agents past it
        refused ("too many connections") for good. Given back after each flush,
        the connections go round; the next write opens a new one.
        """
        self.db.dispose()

    def close(self) -> None:
        self.db.dispose()
        with self._engine_lock:
            engine = self._engine
        if engine is not None:
            engine.dispose()

    def __enter__(self) -> HotSymbolStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
