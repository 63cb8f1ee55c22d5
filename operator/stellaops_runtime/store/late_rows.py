"""Rows older than the retention's cutoff are kept out of the history they would resurrect.

Retention (``store.retentionDays``, store/partitions.py) removes the per-window history and the
observation windows (windows and gap rows alike) of whole old days, so the store's first record
(store/coverage_first.py) moves up to its cutoff and a period reaching before it is unknown. A row
of a removed day that comes later (a spool replayed after weeks down, an agent whose clock is
behind) would be stored as it came: the store's first record again, in a day nothing else of
remains (the other nodes' windows, outages and opted-out pods went with the retention), so the
days between it and the cutoff read as recorded and "not observed" answered over them, until the
next hourly retention removed it (and a new agent, where late spools are replayed, applies none
after its first batch).

So a write (store/ledger.py, in the write's transaction) keeps out of the store an observation
window that starts before the retention's cutoff and before the UTC day of the store's first
record (the rows that would move that record back), counted (``BatchResult.expired``), and
keeps a call's history row of such a window out of the history; the call's counts still go to the
cumulative row, which retention never touches. A row of a day the store still holds (older than
the cutoff, but the retention has not run since) is stored as before, to go with its day at the
next retention, and so is a row written to a store that holds no record yet. The cutoff is the
retention's own (:func:`~stellaops_runtime.store.partitions.retention_cutoff`) by the clock the
retention runs on: the database's on PostgreSQL, the local one on SQLite. Asked only when a row is
within :data:`CLOCK_MARGIN` of the local clock's cutoff or older: a current write costs no round
trip. On PostgreSQL such a write takes the maintenance's lock shared (:func:`hold_off_retention`):
a retention running meanwhile, its deletions not yet seen, made the write keep a row of a day it
was removing (SQLite's writes take turns with it). The cutoff is the later of the writer's own
``store.retentionDays``'s and the highest one any retention of the store applied
(store/retention_cut.py): after the setting was raised, or while agents of two settings run (a
rollout), a row between the two cutoffs was stored and the first record moved back to it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from stellaops_runtime.contracts.hotsymbols import HotSymbolDelta, ObservationWindow
from stellaops_runtime.store.dbconn import Conn, Statement
from stellaops_runtime.store.partitions import MAINTENANCE_LOCK_ID, MIN_RETENTION_DAYS, retention_cutoff
from stellaops_runtime.store.retention_cut import recorded_cut
from stellaops_runtime.store.timeconv import datetime_to_ns

# How far the database's clock may be ahead of the agent's before a row the retention removed
# escapes the check (it is then removed by the next hourly retention, as before).
CLOCK_MARGIN = dt.timedelta(days=2)
# store/coverage_first.py RECORDS_FROM (not imported: it loads SQLAlchemy): earlier rows are clock trouble
RECORDS_FROM = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def oldest_window(deltas: Sequence[HotSymbolDelta], obs: Sequence[ObservationWindow]) -> int | None:
    """The earliest window start (ns) of the rows, None when there are none."""
    starts = [d.window_start_ns for d in deltas] + [o.window_start_ns for o in obs]
    return min(starts) if starts else None


def history_from(
    conn: Conn,
    retention_days: int,
    deltas: Sequence[HotSymbolDelta],
    obs: Sequence[ObservationWindow],
    *,
    now: dt.datetime | None = None,
) -> dt.datetime | None:
    """Where the rows a write keeps out of the history end, None when it keeps none out.

    A row is kept out when it starts before the retention's cutoff *and* before the UTC day of the
    store's first record: it would move that record back over days whose windows and gaps are gone.
    A row of a day the store still holds (the retention not run since it aged past the cutoff) is
    stored as before, and so is every row written to a store that holds no record yet. ``now``
    stands for the local clock (tests); PostgreSQL's is read in the write's transaction.
    """
    oldest = oldest_window(deltas, obs)
    if oldest is None:
        return None
    # Another agent's shorter setting may have cut later than this one's (store/retention_cut.py):
    # a row younger than the shortest setting's cutoff is current for every agent, no round trip.
    local = retention_cutoff(now or dt.datetime.now(dt.UTC), MIN_RETENTION_DAYS)
    if oldest >= datetime_to_ns(local + CLOCK_MARGIN):
        return None
    cutoff, held_off = retention_cutoff(now or dt.datetime.now(dt.UTC), retention_days), True
    if conn.dialect == "postgresql":
        db_now, held_off = hold_off_retention(conn)
        cutoff = retention_cutoff(db_now, retention_days)
    if (cut := recorded_cut(conn)) is not None and cut > cutoff:
        cutoff = cut
    if oldest >= datetime_to_ns(cutoff):
        return None
    if not held_off:  # a retention is removing the days before the cutoff now: the first record moves
        return cutoff
    first = first_record_day(conn)
    if first is None:
        return None
    floor = min(cutoff, first)
    return floor if oldest < datetime_to_ns(floor) else None


def hold_off_retention(conn: Conn) -> tuple[dt.datetime, bool]:
    """The database's clock, and whether the write took the maintenance's lock shared (PostgreSQL):
    held until the write commits, no retention starts meanwhile; False while one holds it.

    A retention's deletions are not seen before it commits: a write that read the first record
    meanwhile saw the days being removed still held, stored a row of one, and, the retention's
    DELETE already past it, left it behind as the store's first record. The lock is not waited
    for (a retention may run longer than a statement may): such a write keeps out every row before
    its cutoff, the rows that retention is removing. A retention that finds the lock taken skips
    its turn (store/partitions.py), as when another agent holds it."""
    row = conn.execute("SELECT now(), pg_try_advisory_xact_lock_shared(%s)", (MAINTENANCE_LOCK_ID,)).first()
    assert row is not None and isinstance(row[0], dt.datetime)
    return row[0], bool(row[1])


def first_record_day(conn: Conn) -> dt.datetime | None:
    """Midnight UTC of the store's first record's day (store/coverage_first.py's rule, read over
    the agent's plain connection: its earliest observation window from 2020 on); None on a store
    that holds none."""
    if conn.dialect == "postgresql":
        stmt = Statement(
            "SELECT min(window_start) FROM signals.observation_windows WHERE window_start >= %s",
            ("since",), ("utc_datetime",),
        )  # fmt: skip
    else:
        stmt = Statement(
            "SELECT min(window_start) FROM main.observation_windows WHERE window_start >= ?",
            ("since",), ("utc_datetime",),
        )  # fmt: skip
    value = conn.execute(stmt, {"since": RECORDS_FROM}).scalar()
    if value is None:
        return None
    if isinstance(value, str):  # SQLite: naive UTC text
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    day = (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC).date()
    return dt.datetime.combine(day, dt.time(), dt.UTC)


def keep_current(
    obs: list[ObservationWindow], cutoff: dt.datetime | None
) -> tuple[list[ObservationWindow], int]:
    """The observation windows that start at or after ``cutoff``, and how many were left out."""
    if cutoff is None:
        return obs, 0
    floor = datetime_to_ns(cutoff)
    kept = [o for o in obs if o.window_start_ns >= floor]
    return kept, len(obs) - len(kept)
