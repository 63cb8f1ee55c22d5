"""Write one frozen batch exactly once, and never let one refused row block the rest.

Every transaction that adds counts also inserts its (agent id, flush
sequence, part) into ``flush_ledger``. A retry of a batch whose COMMIT went
through but whose acknowledgement was lost finds its ledger row and adds
nothing. On PostgreSQL a transaction-scoped advisory lock on (agent id,
sequence) serializes attempts at one batch, so an abandoned attempt that is
still alive on the server (a hung connection) cannot commit the same rows
beside its retry: the retry waits for it (bounded by ``statement_timeout``),
then sees what it did. SQLite has one writer at a time, and the ledger insert
comes first, so the same holds there.

The ledger stays small: an agent retries only batches it has not seen
confirmed, so each write also deletes the agent's own ledger rows below its
oldest pending sequence (:attr:`Batch.ledger_floor`). Rows of agents that
died with batches pending are kept until :data:`LEDGER_RETENTION`, for their
spool file, by the server's clock on PostgreSQL (:func:`ledger_now`).

When the database refuses a row (a data, integrity or size error, SQLSTATE
classes 22, 23 and 54), the range is split in halves and each half written in
its own transaction, down to the single row, which goes to
``quarantined_rows`` with its error instead. A refused hot-symbol row whose
sample holds what PostgreSQL's jsonb cannot (a NUL, a lone surrogate, an
infinite number) is first tried once more with those replaced (U+FFFD,
null): the sample is an illustration, the counts are the evidence.

A batch whose agent id or sequence the database cannot take (a NUL, a lone
surrogate, a sequence beyond bigint) is written under one derived from it
(:func:`storable_identity`): its ledger row was refused on every attempt, so
it blocked every later flush for ever.

A row read back from a spool file is checked before the database sees it
(store/rowcheck.py: a count that is not a non-negative integer, a sample that
is no JSON, ...), and a row with a problem is handled as a refused row; so is
a ``TypeError`` or ``ValueError`` raised while a row's values are converted
(not a database's error, but no retry could change it).

A range whose write passes the server's ``statement_timeout`` (SQLSTATE
57014), or the agent's own flush timeout (store/pending.py), is written in
halves the same way, down to one row (retried later as it is): the same
bisection, so its parts are recorded in the ledger as above and a retry
stores each once. Ranges at least as large are not tried again for that
batch (:attr:`Batch.timed_out_span`), a range this process saw committed is
not asked about again (:attr:`Batch.stored_ranges`), and an attempt the agent
abandoned stops at its next range (:attr:`Batch.attempt`). Before, such a
batch was retried whole for ever and nothing after it was stored.

Any other error (connection lost, lock) means "try the whole batch again
later" and is raised. So does a row no partition of the history takes (its
DEFAULT partition gone, store/partitions.py): the store is repaired and the
row retried, never quarantined.

Which errors are refusals, and the cleaning of what a refused row keeps, are in
store/row_refusal.py; the identity derived for a batch the database cannot key, in
store/batch_identity.py (both split from here, unchanged).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable

from stellaops_runtime.contracts.hotsymbols import HotSymbolDelta
from stellaops_runtime.store.agent_sql import STATEMENTS
from stellaops_runtime.store.batch_identity import storable_identity
from stellaops_runtime.store.batches import (
    Batch,
    BatchResult,
    Coverage,
    boot_clock,
    coverage,
    parse_part,
    part_name,
    unit_to_json,
)
from stellaops_runtime.store.dbconn import Conn, Database
from stellaops_runtime.store.export_position import write_position
from stellaops_runtime.store.export_spans import as_gaps, guard
from stellaops_runtime.store.late_rows import history_from, keep_current
from stellaops_runtime.store.row_refusal import (
    error_text,
    is_conversion_refusal,
    is_row_refusal,
    is_statement_timeout,
    range_problem,
    storable_sample,
)
from stellaops_runtime.store.spool_age import outlived_ledger
from stellaops_runtime.store.upsert import write_rows

log = logging.getLogger(__name__)

LEDGER_RETENTION = dt.timedelta(days=30)


class _Rollback(Exception):
    """Leave a transaction without writing (already applied, or split needed)."""

    def __init__(self, outcome: Coverage) -> None:
        self.outcome = outcome


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _lock(conn: Conn, batch: Batch) -> dt.datetime:
    """Serialize attempts at one batch (PostgreSQL); returns the ledger's clock (see :func:`ledger_now`)."""
    if conn.dialect == "postgresql":
        now = conn.execute(
            "SELECT now() FROM pg_advisory_xact_lock(hashtextextended(%s, 0))",
            (f"stellaops-flush/{batch.agent_id}/{batch.seq}",),
        ).scalar()
        assert isinstance(now, dt.datetime)
        return now
    return _now()


def ledger_now(conn: Conn) -> dt.datetime:
    """The clock of the ledger's ``committed_at``: the server's on PostgreSQL, one for the whole fleet.

    Each agent's own clock made one node's skew everyone's loss: an agent
    whose clock was a month behind wrote rows the next prune by any other
    agent removed, and one a month ahead pruned every agent's fresh rows, so
    a batch retried after a lost acknowledgement was stored twice. SQLite is
    one machine's file: its clock is the agents'.
    """
    if conn.dialect == "postgresql":
        now = conn.execute("SELECT now()").scalar()
        assert isinstance(now, dt.datetime)
        return now
    return _now()


def _claim(conn: Conn, batch: Batch, lo: int, hi: int, rows: int) -> Coverage:
    """Insert this range's ledger row; say whether the range (or part of it) was applied before."""
    if batch.claimed_boot is None:  # from here on a COMMIT of it may go through (store/spool_age.py)
        batch.claimed_boot = boot_clock()
    now = _lock(conn, batch)
    if batch.claimed_unix is None and batch.claim_known:  # the first, by the ledger's clock
        batch.claimed_unix = int(now.timestamp())
    sql = STATEMENTS[conn.dialect]
    part = part_name(lo, hi)
    values = {
        "agent_id": batch.agent_id,
        "flush_seq": batch.seq,
        "part": part,
        "row_count": rows,
        "committed_at": now,
    }
    # RETURNING, not rowcount: the psycopg driver may report -1 for ON CONFLICT inserts.
    if conn.execute(sql["ledger_claim"], values).first() is None:
        return Coverage.APPLIED
    if batch.ledger_floor > 0:  # this agent's confirmed batches: never retried again
        conn.execute(sql["ledger_delete_below"], {"agent_id": batch.agent_id, "floor": batch.ledger_floor})
    others = conn.execute(
        sql["ledger_other_parts"], {"agent_id": batch.agent_id, "flush_seq": batch.seq, "part": part}
    ).scalars()
    return coverage((lo, hi), [r for p in others if (r := parse_part(p)) is not None])


class Abandoned(Exception):
    """The caller gave up on this attempt at the batch (``Batch.attempt`` moved on): stop writing."""


def write_batch(db: Database, batch: Batch) -> BatchResult:
    """Write ``batch`` exactly once; raise on anything but a refused row (the caller retries)."""
    storable_identity(batch, db.dialect)
    result = BatchResult()
    _write_range(db, batch, 0, len(batch.units), result, batch.attempt)
    # Kept only across failed attempts (whose results were lost): written again, the batch is
    # answered by the ledger ("already stored").
    batch.stored_ranges.clear()
    return result


def _write_range(db: Database, batch: Batch, lo: int, hi: int, result: BatchResult, attempt: int) -> None:
    if batch.attempt != attempt:
        # Abandoned at the flush deadline while splitting: a retry (or the spool) has the batch now.
        raise Abandoned(f"flush {batch.agent_id}/{batch.seq}: attempt abandoned")
    deltas, obs = batch.split(lo, hi)
    rows = len(deltas) + len(obs)
    if not rows:
        return
    if (how := batch.stored_as((lo, hi))) is not None:  # an earlier attempt stored it, acknowledged
        if how == "written":
            result.written += rows
        else:
            result.duplicate += rows
        return
    # Rows the aggregator built have their types; a spool file's are checked first.
    refused: BaseException | None = range_problem(deltas, obs) if batch.from_spool else None
    if refused is None and hi - lo >= batch.timed_out_span:
        _split(db, batch, lo, hi, result, attempt)  # a range this large passed the statement timeout before
        return
    if refused is None:
        batch.writing = (lo, hi)
        try:
            with db.begin() as conn:
                state = _claim(conn, batch, lo, hi, rows)
                if state is not Coverage.FREE:
                    raise _Rollback(state)
                # The export file's spans: written with the counts, or a spooled batch whose lines
                # another agent's stored counts cover is stored as gaps (store/export_spans.py); so
                # is one (spooled or held live) older than the ledger's rows (store/spool_age.py).
                # The ledger's clock is asked only of a spooled batch with a stamp; a live one's age
                # is its process's.
                old = batch.from_spool and (batch.claim_known or batch.frozen_unix is not None)
                if outlived_ledger(batch, ledger_now(conn) if old else None, LEDGER_RETENTION):
                    deltas, obs, recounted, unverified = as_gaps(deltas, obs)
                else:
                    deltas, obs, recounted, unverified = guard(
                        conn, batch.export_position, batch.from_spool, deltas, obs,
                        known=batch.export_known, locked=not batch.unlocked, agent=batch.agent_id,
                    )  # fmt: skip
                # Rows of days the retention removed: kept out of the history (store/late_rows.py).
                cutoff = None
                if batch.retention_days is not None:
                    cutoff = history_from(conn, batch.retention_days, deltas, obs)
                obs, expired = keep_current(obs, cutoff)
                result.written += write_rows(conn, deltas, obs, history_from=cutoff)
                # With the counts it covers, in one transaction; a replayed batch's position is of an
                # agent gone (its spans say what it counted): the row stays the live agents'.
                if batch.export_position is not None and not batch.from_spool:
                    write_position(conn, batch.export_position)
            result.recounted += recounted  # committed
            result.expired += expired
            result.unverified += unverified
            batch.range_stored((lo, hi), "written")
            return
        except _Rollback as r:
            if r.outcome is Coverage.APPLIED:
                result.duplicate += rows
                batch.range_stored((lo, hi), "duplicate")
                return
        except Exception as e:
            if batch.attempt != attempt:
                raise Abandoned(f"flush {batch.agent_id}/{batch.seq}: attempt abandoned") from e
            if is_statement_timeout(e) and batch.too_slow((lo, hi)):
                log.warning(
                    "flush %s/%d: rows %d-%d took longer than the statement timeout (%s); writing them "
                    "in halves, each stored once through the ledger",
                    batch.agent_id, batch.seq, lo, hi, error_text(e),
                )  # fmt: skip
                _split(db, batch, lo, hi, result, attempt)
                return
            if not (is_row_refusal(e) or is_conversion_refusal(e)):
                raise
            refused = e
    if hi - lo == 1:
        assert refused is not None  # a single row is never partially applied
        unit = batch.units[lo]
        if isinstance(unit, HotSymbolDelta) and (sample := storable_sample(unit.sample)) != unit.sample:
            # PostgreSQL's jsonb takes no NUL and no lone surrogate (a surrogateescape-decoded
            # path or argument): the sample is an illustration, its counts are the evidence.
            batch.units[lo] = dataclasses.replace(unit, sample=sample)
            _write_range(db, batch, lo, hi, result, attempt)  # refused again: quarantined, no third try
            return
        _quarantine(db, batch, lo, refused, result)
        return
    result.splits += 1
    _split(db, batch, lo, hi, result, attempt)


def _split(db: Database, batch: Batch, lo: int, hi: int, result: BatchResult, attempt: int) -> None:
    """Write ``[lo, hi)`` as its two halves, lower first: the one bisection every attempt follows."""
    mid = (lo + hi) // 2
    _write_range(db, batch, lo, mid, result, attempt)
    _write_range(db, batch, mid, hi, result, attempt)


def _quarantine(db: Database, batch: Batch, i: int, error: BaseException, result: BatchResult) -> None:
    """Keep a refused row in ``quarantined_rows`` (as ASCII JSON, which any database takes)."""
    unit = batch.units[i]
    assert unit is not None
    is_delta = isinstance(unit, HotSymbolDelta)
    try:
        row_json = json.dumps(unit_to_json(unit), ensure_ascii=True, default=str, sort_keys=True)
    except (ValueError, RecursionError):  # a sample too deep (or circular) for JSON: kept cleaned
        assert isinstance(unit, HotSymbolDelta)
        unit = dataclasses.replace(unit, sample=storable_sample(unit.sample))
        row_json = json.dumps(unit_to_json(unit), ensure_ascii=True, default=str, sort_keys=True)
    text = error_text(error)
    with db.begin() as conn:
        if _claim(conn, batch, i, i + 1, 1) is not Coverage.FREE:
            result.duplicate += 1
            return
        conn.execute(
            STATEMENTS[conn.dialect]["quarantine"],
            {
                "agent_id": batch.agent_id,
                "table_name": "hot_symbols" if is_delta else "observation_windows",
                "row_json": row_json,
                "error": text,
                "quarantined_at": _now(),
            },
        )
    result.quarantined += 1
    if isinstance(unit, HotSymbolDelta) and type(unit.invocation_count) is int and unit.invocation_count > 0:
        result.quarantined_invocations += unit.invocation_count
    result.errors.append(text)


def prune_ledger(
    db: Database,
    *,
    older_than: dt.timedelta = LEDGER_RETENTION,
    local_now: Callable[[], dt.datetime] | None = None,
) -> int:
    """Delete ledger rows older than the retention; returns how many went.

    On SQLite the clock is ``local_now`` when given (a store's
    :class:`~stellaops_runtime.store.retention_clock.LocalClock`): the wall clock as it was, stepped
    a month ahead while agents ran, pruned every fresh row, and a retry after a lost acknowledgement
    was stored twice (tests/integration/test_flush_ledger_sqlite_clock.py)."""
    with db.begin() as conn:
        now = local_now() if local_now is not None and conn.dialect == "sqlite" else ledger_now(conn)
        before = now - older_than
        res = conn.execute(STATEMENTS[conn.dialect]["ledger_prune"], {"before": before})
        return max(0, int(res.rowcount or 0))
