"""Where a retention cut, kept in the store: no later row of a removed day comes back as a record.

Agents of one store may run different ``store.retentionDays`` (a rollout, or the setting raised):
each retention deletes before its own cutoff, so the shortest wins. A late row (a spool replayed
after weeks down, a clock behind) is kept out of the history when it starts before the retention's
cutoff and before the store's first record (store/late_rows.py); checked against its writer's own
setting, a row of the longer agent between the two cutoffs was stored, became the store's first
record, and the days between it and the shorter cut, whose windows and gaps were gone, read as
recorded: "not observed" over days nobody's records remain of
(tests/integration/test_retention_mixed.py, seen failing before).

So each retention keeps the highest cutoff any retention applied (:func:`record_cut`), and a write
checks its rows against the later of its own cutoff and that one (:func:`recorded_cut`). No
migration: the value is one row of ``flush_ledger`` no agent writes, under an id no agent has
(agents' ids are ``<node>/<uuid>``; a spooled batch under this id claims only ``lo-hi`` parts,
never :data:`PART`): ``row_count`` holds the cut's day (days since 1970-01-01) and ``committed_at``
when a retention last wrote it, so the ledger's 30-day prune keeps it while any retention runs.
Pruned (no retention for a month), the rule is the writer's own cutoff again, as before.
"""

from __future__ import annotations

import datetime as dt
import logging

from stellaops_runtime.store.dbconn import Conn, Database
from stellaops_runtime.store.dbvalues import sqlite_datetime
from stellaops_runtime.store.errors import first_line

log = logging.getLogger("stellaops_runtime.store.partitions")

AGENT = "stellaops:retention"  # no agent's id: theirs are "<node>/<uuid>"
SEQ = 0
PART = "cut"  # never a batch's part ("lo-hi")
_EPOCH = dt.date(1970, 1, 1)

_WRITE = {
    "postgresql": (
        "INSERT INTO signals.flush_ledger (agent_id, flush_seq, part, row_count, committed_at) "
        "VALUES (%s, %s, %s, %s, now()) ON CONFLICT (agent_id, flush_seq, part) DO UPDATE SET "
        "row_count = GREATEST(signals.flush_ledger.row_count, EXCLUDED.row_count), "
        "committed_at = EXCLUDED.committed_at"
    ),
    "sqlite": (
        "INSERT INTO main.flush_ledger (agent_id, flush_seq, part, row_count, committed_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (agent_id, flush_seq, part) DO UPDATE SET "
        "row_count = max(row_count, excluded.row_count), committed_at = excluded.committed_at"
    ),
}
_READ = {
    "postgresql": "SELECT row_count FROM signals.flush_ledger WHERE agent_id = %s AND flush_seq = %s "
    "AND part = %s",
    "sqlite": "SELECT row_count FROM main.flush_ledger WHERE agent_id = ? AND flush_seq = ? AND part = ?",
}


def record_cut(db: Database, cutoff: dt.datetime, now: dt.datetime) -> None:
    """Keep ``cutoff`` (a retention's, just applied) if it is the highest yet; ``now``: SQLite's
    clock for the row's age (PostgreSQL takes the server's). Its own transaction; logged, never
    raised (tried again at the next retention)."""
    day = (cutoff.astimezone(dt.UTC).date() - _EPOCH).days
    try:
        with db.begin() as conn:
            if conn.dialect == "postgresql":
                conn.execute(_WRITE["postgresql"], (AGENT, SEQ, PART, day))
            else:
                conn.execute(_WRITE["sqlite"], (AGENT, SEQ, PART, day, sqlite_datetime(now)))
    except Exception as e:  # housekeeping: the next retention writes it again
        log.warning("cannot record the retention's cut (%s): %s", cutoff.date(), first_line(e))


def recorded_cut(conn: Conn) -> dt.datetime | None:
    """Midnight UTC of the highest cutoff a retention of this store applied; None when none is kept."""
    sql = _READ["postgresql" if conn.dialect == "postgresql" else "sqlite"]
    day = conn.execute(sql, (AGENT, SEQ, PART)).scalar()
    if type(day) is not int or not 0 <= day < 2_900_000:  # a row put there by hand: not known
        return None
    return dt.datetime.combine(_EPOCH + dt.timedelta(days=day), dt.time(), dt.UTC)
