"""agent/store_wait.py ``out_of_reach``: which failed writes say the next one would wait as long again.

A flush stops at its start row (and the proof after it opens nothing) only for those: a store not
reachable, or a SQLite file locked past its busy timeout. A statement the database refused (a
missing table, which SQLite reports as an OperationalError, store/errors.py ``is_unavailable``'s
"down") is not one: the rows' write may still succeed. Real sqlite3 and psycopg errors.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from stellaops_runtime.agent.store_wait import out_of_reach
from stellaops_runtime.store.errors import StoreError, StoreUnavailable


def sqlite_error(tmp_path: Path, locked: bool) -> sqlite3.Error:
    tmp_path.mkdir()
    db = tmp_path / "s.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    if locked:
        holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(db, timeout=0.05)
    try:
        other.execute("INSERT INTO t VALUES (1)" if locked else "INSERT INTO missing VALUES (1)")
    except sqlite3.Error as e:
        return e
    finally:
        other.close()
        holder.close()
    raise AssertionError("no error")


def dropped(e: Exception) -> Exception:
    """``e`` as store/dbconn.py raises it when the connection had to be dropped after it (a server
    restarting ends its sessions with AdminShutdown and closes them: out of reach, seen end to end)."""
    e.connection_broken = True  # type: ignore[attr-defined]
    return e


def wrapped(e: BaseException) -> StoreError:
    try:
        raise StoreUnavailable(f"cannot write to store: {e}") from e
    except StoreError as w:
        return w


def test_a_sqlite_file_locked_past_its_busy_timeout_is_out_of_reach_a_missing_table_is_not(
    tmp_path: Path,
) -> None:
    locked, missing = sqlite_error(tmp_path / "a", True), sqlite_error(tmp_path / "b", False)
    assert out_of_reach(locked) and out_of_reach(wrapped(locked))
    assert not out_of_reach(missing) and not out_of_reach(wrapped(missing))


@pytest.mark.parametrize(
    ("error", "reach"),
    [
        (psycopg.errors.ConnectionTimeout("connection timeout expired"), True),  # a black hole
        (psycopg.OperationalError("connection refused"), True),  # no state: the server said nothing
        (psycopg.errors.AdminShutdown("terminating connection"), False),  # a server's reply, alone
        (dropped(psycopg.errors.AdminShutdown("terminating connection")), True),  # as a restart sends it
        (psycopg.errors.UndefinedTable("no such table"), False),
        (StoreUnavailable("store write timed out after 5s"), True),  # store/pending_write.py's own
        (ValueError("not a database error"), False),
    ],
)
def test_postgresql_errors_out_of_reach_are_those_no_server_reply_carries(
    error: Exception, reach: bool
) -> None:
    assert out_of_reach(error) is reach
