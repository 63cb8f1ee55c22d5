"""The history's DEFAULT partition when rows pile up in it: bounded steps, and a day left there.

The DEFAULT partition of ``hot_symbol_windows`` (store/partitions.py) takes every row no day
partition covers. When the maintenance did not run at a day's start, that day's rows land there,
and at a fleet's size they made the maintenance fail for ever: moving them out to create the day's
partition, and the retention's one DELETE of DEFAULT's old rows, each passed
``store.statementTimeout``, and the whole maintenance (the days ahead with it) rolled back every
hour, while it held the history's exclusive lock and every agent's maintenance in turn tried again.
Here: a day with too many rows there is left there (:func:`too_many_to_move`), a step that passes
the statement timeout is skipped, not the maintenance (:func:`unless_timed_out`), and DEFAULT's old
rows go an image a statement (:func:`delete_default_before`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from stellaops_runtime.store.dbconn import Conn

log = logging.getLogger("stellaops_runtime.store.partitions")

# A day with this many rows in the DEFAULT partition is left there, its partition not created:
# moving them takes about 23 us a row (measured), 11.5 s here, under the table's exclusive lock.
MAX_MOVE_ROWS = 500_000


def quoted(name: str) -> str:
    """``name`` quoted as an SQL identifier (a DEFAULT partition created by hand may have any name)."""
    return '"' + name.replace('"', '""') + '"'


def too_many_to_move(conn: Conn, default: str, lo: dt.datetime) -> bool:
    """Whether the DEFAULT partition holds :data:`MAX_MOVE_ROWS` rows of the day from ``lo`` or more
    (or the count passed the statement timeout): too many to move under the table's lock. Read without that
    lock, before it: every agent's maintenance in turn would otherwise hold it for up to the
    statement timeout on the same doomed move, so that flushes waited most of the time."""
    hi = lo + dt.timedelta(days=1)
    n = unless_timed_out(
        conn,
        lambda: int(
            conn.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM signals.{quoted(default)} "
                "WHERE window_start >= %s AND window_start < %s LIMIT %s) s",
                (lo, hi, MAX_MOVE_ROWS),
            ).scalar()
            or 0
        ),
    )
    return n is None or n >= MAX_MOVE_ROWS


def unless_timed_out(conn: Conn, step: Callable[[], int]) -> int | None:
    """``step()`` under a savepoint; None, its work rolled back, when the server cancelled it at the
    statement timeout (SQLSTATE 57014), so the rest of the maintenance goes on.

    A day with no partition of its own (the maintenance did not run at its start) has its rows in
    the DEFAULT partition, and creating its partition moves them, about 23 us a row: past some
    1.3 M rows that passed ``store.statementTimeout`` (30 s), and the whole maintenance rolled back,
    the days ahead with it, every hour: no partition was created again and every later day's rows
    landed in DEFAULT as well. A day skipped keeps its rows in DEFAULT (answers read them there;
    the retention deletes them there) and is tried again at the next run.
    """
    conn.execute("SAVEPOINT stellaops_maintenance_step")
    try:
        done = step()
    except Exception as e:
        orig = getattr(e, "orig", None) or e
        if getattr(orig, "sqlstate", None) != "57014":
            raise
        conn.execute("ROLLBACK TO SAVEPOINT stellaops_maintenance_step")
        log.warning("history maintenance: a step passed the statement timeout and is skipped: %s", e)
        return None
    conn.execute("RELEASE SAVEPOINT stellaops_maintenance_step")
    return done


def delete_default_before(conn: Conn, default: str, cutoff: dt.datetime) -> int:
    """Delete the DEFAULT partition's rows with ``window_start`` before ``cutoff``, an image a statement.

    No index of the history leads with ``window_start`` (a step by it would scan the partition
    whole each time), and in one statement a DEFAULT holding a fleet's day past the retention (a
    day whose partition was never created) passed ``store.statementTimeout``: every maintenance
    rolled back, for ever. The history's index leads with ``image_digest``: each step deletes one
    image's old rows, and the next image is found past the last (past this transaction's deleted
    index entries), so a statement's work is bounded by one image's rows there. In the caller's
    one transaction.
    """
    name = f"signals.{quoted(default)}"
    total = 0
    # Rows that came since the last ANALYZE (a day's backlog) look like none to the planner, which
    # then scanned the whole partition for every image; the index is what bounds each step.
    conn.execute("SET LOCAL enable_seqscan = off")
    image = conn.execute(f"SELECT min(image_digest) FROM {name}").scalar()
    while image is not None:
        res = conn.execute(
            f"DELETE FROM {name} WHERE image_digest = %s AND window_start < %s", (image, cutoff)
        )
        total += max(0, int(res.rowcount or 0))
        image = conn.execute(
            f"SELECT min(image_digest) FROM {name} WHERE image_digest > %s", (image,)
        ).scalar()
    conn.execute("SET LOCAL enable_seqscan = on")
    return total
