"""Day partitions of the per-window history, created ahead, and retention (``store.retentionDays``).

The per-window history (``hot_symbol_windows``) would grow forever. On
PostgreSQL it is partitioned by UTC day of ``window_start`` (migration 0007):
this module creates the partitions of yesterday .. today + :data:`DAYS_AHEAD`
before they are needed, and drops whole days once they are past the
retention. A DEFAULT partition takes any row no day partition covers (a
spool replayed days late, a skewed clock), so no insert ever fails; a day
partition created later takes its rows over from it. A store whose DEFAULT
partition is gone (dropped or detached by hand) gets a new one at the next
maintenance, under the same lock: without it, every day partition created
later (which takes rows over from it) and every retention failed for ever,
and past the days created ahead every row was refused (see
:func:`is_missing_partition`).

Retention never touches the cumulative table (``hot_symbols``). It removes
history and observation windows older than the same cutoff in one
transaction: a "never called" answer counts watched days (from
``observation_windows``) minus days with calls (from the history), so
dropping one without the other would turn old calls into "watched, not
called". The cutoff is midnight UTC of the day ``retentionDays`` before now,
minus one more day because a window lasts up to a day: every row removed
belongs to a window that ended more than ``retentionDays`` ago. Observation windows are deleted
an hour of ``window_start`` a statement (:func:`delete_before`: a fleet's day in one statement
passed ``store.statementTimeout``), before the history's table lock is taken; the DEFAULT
partition's old history an image a statement (:func:`delete_default_before`), before that lock
too. A day partition
whose creation passes the statement timeout (its rows piled up in DEFAULT) is skipped, not the
whole maintenance (store/default_partition.py).

The minimum, :data:`MIN_RETENTION_DAYS` = 31, is what the evidence needs:
the runtime factor's lowest tier is "more than 30 watched days without a
call", which cannot be reached unless 31 days are kept.

SQLite has no partitions: retention is a DELETE of the same rows, by the local
clock bounded by the time counted since the store was opened
(store/retention_clock.py: a clock stepped ahead deleted days early).
:func:`maintain` does everything in one transaction; on PostgreSQL only one
agent at a time does it (a transaction advisory lock; the others skip) and it
waits at most :data:`LOCK_TIMEOUT_MS` for the table lock the DDL needs. It
runs in its own transaction, never inside a flush: a flush holding row locks
while waiting for the table lock could deadlock with another.
:meth:`HotSymbolStore.write_batch <stellaops_runtime.store.writer.HotSymbolStore.write_batch>`
calls it after its first batch and then hourly, with the retention from the
second call on.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from stellaops_runtime.store.agent_sql import STATEMENTS
from stellaops_runtime.store.dbconn import Conn, Database
from stellaops_runtime.store.default_partition import (
    delete_default_before,
    too_many_to_move,
    unless_timed_out,
)
from stellaops_runtime.store.default_partition import quoted as _ident
from stellaops_runtime.store.retention_cut import record_cut

DEFAULT_RETENTION_DAYS = 90
MIN_RETENTION_DAYS = 31
MAX_RETENTION_DAYS = 3_660
DAYS_AHEAD = 2
LOCK_TIMEOUT_MS = 5_000
DELETE_STEP = dt.timedelta(hours=1)  # retention deletes an hour of window_start a statement (delete_before)
_STEPS_FROM = dt.datetime(1, 1, 2, tzinfo=dt.UTC)  # any earlier start is a datetime no driver reads back
PARENT = "hot_symbol_windows"
DEFAULT_PARTITION = "hot_symbol_windows_default"
_DAY_NAME = re.compile(r"^hot_symbol_windows_p(\d{8})$")
# Any constant: agents that maintain the same database at the same time take turns (the others skip).
# A write of rows near or past the cutoff takes it shared (store/late_rows.py): no retention runs
# between its reading the store's first record and its commit.
MAINTENANCE_LOCK_ID = 0x5354454C4C42  # "STELLB"


@dataclass(slots=True)
class Maintenance:
    """What one :func:`maintain` run did."""

    ran: bool = False  # False: another agent held the lock, or the store has no partitions
    cutoff: dt.datetime | None = None
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    moved_rows: int = 0  # rows taken over from the DEFAULT partition by a new day partition
    default_created: bool = False  # the DEFAULT partition was missing and is created again
    # Day partitions not created: moving their rows out of DEFAULT passed the statement timeout.
    skipped: list[str] = field(default_factory=list)
    deleted_rows: int = 0  # rows deleted (SQLite history, DEFAULT partition, observation windows)


# -- pure planning -------------------------------------------------------------


def check_retention_days(days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int):
        raise TypeError(f"retention days must be an integer, got {type(days).__name__}")
    if not MIN_RETENTION_DAYS <= days <= MAX_RETENTION_DAYS:
        raise ValueError(
            f"retention days must be between {MIN_RETENTION_DAYS} and {MAX_RETENTION_DAYS}, got {days} "
            "(the evidence needs more than 30 watched days)"
        )
    return days


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC)


def retention_cutoff(now: dt.datetime, retention_days: int) -> dt.datetime:
    """The oldest ``window_start`` kept: every window before it ended more than ``retention_days`` ago."""
    check_retention_days(retention_days)
    oldest_kept = (now.astimezone(dt.UTC) - dt.timedelta(days=retention_days)).date()
    return midnight(oldest_kept - dt.timedelta(days=1))


def partition_name(day: dt.date) -> str:
    return f"{PARENT}_p{day:%Y%m%d}"


def partition_day(name: str) -> dt.date | None:
    m = _DAY_NAME.match(name)
    if m is None:
        return None
    try:
        return dt.datetime.strptime(m[1], "%Y%m%d").date()
    except ValueError:
        return None


def days_to_create(today: dt.date, existing: Iterable[dt.date]) -> list[dt.date]:
    """Yesterday .. today + DAYS_AHEAD, minus the days that have a partition."""
    have = set(existing)
    want = (today + dt.timedelta(days=n) for n in range(-1, DAYS_AHEAD + 1))
    return [d for d in want if d not in have]


def days_to_drop(existing: Iterable[dt.date], cutoff: dt.datetime) -> list[dt.date]:
    """Days whose whole partition lies before the cutoff."""
    return sorted(d for d in existing if midnight(d + dt.timedelta(days=1)) <= cutoff)


# -- I/O -----------------------------------------------------------------------


def maintain(
    db: Database,
    *,
    retention_days: int,
    now: dt.datetime | None = None,
    retention: bool = True,
    lock_timeout_ms: int = LOCK_TIMEOUT_MS,
    local_now: Callable[[], dt.datetime] | None = None,
) -> Maintenance:
    """Create the coming day partitions and (``retention``) apply the retention, in one transaction.

    ``now`` defaults to the database's clock on PostgreSQL (one clock for
    every agent) and the local clock on SQLite, read through ``local_now``
    (a store's :class:`~stellaops_runtime.store.retention_clock.LocalClock`:
    a clock stepped ahead removes nothing early).
    """
    check_retention_days(retention_days)
    with db.begin() as conn:
        if conn.dialect == "postgresql":
            done = _maintain_postgres(conn, retention_days, now, retention, lock_timeout_ms)
        elif not retention:
            return Maintenance(ran=True)
        else:
            if now is None:
                now = local_now() if local_now is not None else dt.datetime.now(dt.UTC)
            done = _maintain_sqlite(conn, retention_days, now)
    if retention and done.ran and done.cutoff is not None:  # the highest cut kept (mixed settings)
        record_cut(db, done.cutoff, now or dt.datetime.now(dt.UTC))
    return done


def _maintain_sqlite(conn: Conn, retention_days: int, now: dt.datetime) -> Maintenance:
    cutoff = retention_cutoff(now, retention_days)
    out = Maintenance(ran=True, cutoff=cutoff)
    sql = STATEMENTS["sqlite"]
    for name in ("retention_hot_symbol_windows", "retention_observation_windows"):
        res = conn.execute(sql[name], {"cutoff": cutoff})
        out.deleted_rows += max(0, int(res.rowcount or 0))
    return out


def _maintain_postgres(
    conn: Conn, retention_days: int, now: dt.datetime | None, retention: bool, lock_timeout_ms: int
) -> Maintenance:
    if not conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (MAINTENANCE_LOCK_ID,)).scalar():
        return Maintenance()
    if not _is_partitioned(conn):  # a store not migrated to 0007 (store.migrate: false)
        return Maintenance()
    conn.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
    if now is None:
        now = conn.execute("SELECT now()").scalar()
    assert now is not None
    cutoff = retention_cutoff(now, retention_days)
    out = Maintenance(ran=True, cutoff=cutoff)
    if retention:  # before the history's table lock, which it does not need
        out.deleted_rows += delete_before(conn, "observation_windows", cutoff)
    existing = _existing_days(conn)
    create = days_to_create(now.astimezone(dt.UTC).date(), existing)
    drop = days_to_drop(existing, cutoff) if retention else []
    create = [d for d in create if midnight(d + dt.timedelta(days=1)) > cutoff]
    default = _default_partition(conn)
    if retention and default is not None:
        # Before the table's lock too: a large old backlog there took statement after statement
        # while every flush's insert into the history waited for the lock.
        out.deleted_rows += delete_default_before(conn, default, cutoff)
    if default is not None:  # before the table's lock: a day too large to move is not tried under it
        today = now.astimezone(dt.UTC).date()
        backlog = [d for d in create if d <= today and too_many_to_move(conn, default, midnight(d))]
        out.skipped += [partition_name(d) for d in backlog]
        create = [d for d in create if d not in backlog]
    if create or drop or default is None:
        # Taken whole before any DDL: the DDL below needs it, and a lock taken in steps could deadlock.
        conn.execute(f"LOCK TABLE signals.{PARENT} IN ACCESS EXCLUSIVE MODE")
    if default is None:
        conn.execute(f"CREATE TABLE signals.{DEFAULT_PARTITION} PARTITION OF signals.{PARENT} DEFAULT")
        default, out.default_created = DEFAULT_PARTITION, True
    for day in create:
        moved = unless_timed_out(conn, functools.partial(_create_day, conn, day, default))
        if moved is None:
            out.skipped.append(partition_name(day))
            continue
        out.moved_rows += moved
        out.created.append(partition_name(day))
    for day in drop:
        conn.execute(f"DROP TABLE signals.{partition_name(day)}")
        out.dropped.append(partition_name(day))
    return out


def delete_before(conn: Conn, table: str, cutoff: dt.datetime) -> int:
    """Delete ``table``'s rows with ``window_start`` before ``cutoff``, an hour of them a statement.

    A fleet's day of observation windows (1,000 nodes x 20 images x 1,440 windows) took longer
    to delete in one statement than ``store.statementTimeout``: the retention was cancelled every
    hour, its drops with it. Each step finds the oldest row at or after where the last step
    ended and deletes from it to an hour later, both index ranges (``table`` needs an index that
    leads with ``window_start``, as ``observation_windows``' of migration 0007) that start past
    the rows already deleted (this transaction's deletions are still in the index: a range from
    the start would walk them all again); so a statement's work is bounded by an hour of rows.
    All in the caller's one transaction. Rows before :data:`_STEPS_FROM` (only put there by hand:
    ``-infinity``, a year BC) go with one last DELETE of that range.
    """
    name = f"signals.{_ident(table)}"
    total = 0
    lo = _STEPS_FROM
    while True:
        first = conn.execute(
            f"SELECT min(window_start) FROM {name} WHERE window_start >= %s AND window_start < %s",
            (lo, cutoff),
        ).scalar()
        if first is None:
            break
        assert isinstance(first, dt.datetime)
        hi = min(cutoff, first + DELETE_STEP)
        res = conn.execute(f"DELETE FROM {name} WHERE window_start >= %s AND window_start < %s", (first, hi))
        total += max(0, int(res.rowcount or 0))
        lo = hi
    res = conn.execute(f"DELETE FROM {name} WHERE window_start < %s", (_STEPS_FROM,))
    return total + max(0, int(res.rowcount or 0))


def _is_partitioned(conn: Conn) -> bool:
    kind = conn.execute(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'signals' AND c.relname = %s",
        (PARENT,),
    ).scalar()
    return kind == "p"


def _default_partition(conn: Conn) -> str | None:
    """The name of the history's DEFAULT partition (whatever it is called), None when it has none."""
    name = conn.execute(
        "SELECT c.relname FROM pg_partitioned_table pt JOIN pg_class c ON c.oid = pt.partdefid "
        "WHERE pt.partrelid = 'signals.hot_symbol_windows'::regclass"
    ).scalar()
    return None if name is None else str(name)


def is_missing_partition(e: BaseException) -> bool:
    """Whether a write failed because no partition of the history takes its row (no DEFAULT partition).

    PostgreSQL says so with SQLSTATE 23514 (check_violation) and no constraint
    name; the row is good, the store lacks a partition: it is no refused row
    (never quarantined), but a store to repair (:func:`maintain`) and retry.
    """
    orig = getattr(e, "orig", None) or e
    if getattr(orig, "sqlstate", None) != "23514":
        return False
    diag = getattr(orig, "diag", None)
    if diag is not None:  # psycopg's
        return diag.constraint_name is None and diag.table_name == PARENT
    fields = getattr(orig, "fields", None)  # pgwire's: the ErrorResponse's fields by their codes
    return isinstance(fields, dict) and fields.get("n") is None and fields.get("t") == PARENT


def _existing_days(conn: Conn) -> list[dt.date]:
    names = conn.execute(
        "SELECT c.relname FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
        "JOIN pg_namespace n ON n.oid = p.relnamespace "
        "WHERE n.nspname = 'signals' AND p.relname = %s",
        (PARENT,),
    ).scalars()
    return [d for name in names if (d := partition_day(name)) is not None]


def _columns(conn: Conn) -> list[str]:
    """The history's columns (those not dropped), in the parent's order."""
    names = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'signals.hot_symbol_windows'::regclass "
        "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
    ).scalars()
    return [str(n) for n in names]


def _create_day(conn: Conn, day: dt.date, default: str = DEFAULT_PARTITION) -> int:
    """Create one day's partition; rows of that day already in the DEFAULT partition move into it.

    PostgreSQL refuses a new partition whose range has rows in the DEFAULT
    partition, so they are taken out first and put back through the parent, by
    column name: a DEFAULT partition made and attached by hand may list the
    columns in another order (by position, swapped bigint columns moved the
    calls into the latency silently, and other orders failed every maintenance).
    """
    lo, hi = midnight(day), midnight(day + dt.timedelta(days=1))
    conn.execute(
        f"CREATE TEMP TABLE _moved_windows ON COMMIT DROP AS SELECT * FROM signals.{_ident(default)} "
        "WHERE window_start >= %s AND window_start < %s",
        (lo, hi),
    )
    moved = conn.execute(
        f"DELETE FROM signals.{_ident(default)} WHERE window_start >= %s AND window_start < %s", (lo, hi)
    ).rowcount
    conn.execute(
        f"CREATE TABLE signals.{partition_name(day)} PARTITION OF signals.{PARENT} "
        f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
    )
    cols = ", ".join(_ident(c) for c in _columns(conn))
    conn.execute(f"INSERT INTO signals.{PARENT} ({cols}) SELECT {cols} FROM pg_temp._moved_windows")
    conn.execute("DROP TABLE pg_temp._moved_windows")
    return max(0, int(moved or 0))
