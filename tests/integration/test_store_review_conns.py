"""Adversarial review of the agent's DB-API connections (issue 13): transactions, locks, error classes.

What SQLAlchemy's pool guaranteed and store/dbconn.py must now guarantee
alone, on the real PostgreSQL and real SQLite files: no connection goes
back to the pool (or sits on the server) inside a transaction, whatever the
write did; a write that waits on another writer's lock past the statement
timeout is "unavailable, retry" and never a refused row (its rows would be
quarantined, i.e. lost from the counts); and every server error class is
sorted the way the ledger needs.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from pg import libpq_dsn
from pgproxy import PgProxy

from stellaops_runtime.store.dbconn import Timeouts
from stellaops_runtime.store.engine import StoreError, StoreUnavailable, open_store
from stellaops_runtime.store.errors import is_unavailable
from stellaops_runtime.store.ledger import is_row_refusal
from stellaops_runtime.store.pg_connect import is_pgwire
from tests.integration.test_flush_ledger import batch, counts, quarantined, refuse_evil


@pytest.mark.postgres
def test_no_connection_is_left_inside_a_transaction_after_any_kind_of_write(pg_url: str) -> None:
    with open_store(pg_url) as store, psycopg.connect(libpq_dsn(pg_url), autocommit=True) as watch:
        refuse_evil(store)
        store.write_batch(batch(1, n=8))  # committed
        store.write_batch(batch(1, n=8))  # already applied: rolled back on purpose
        r = store.write_batch(batch(2, n=8, bad={2, 5}))  # split, two rows quarantined
        assert r.quarantined == 2
        with pytest.raises(ZeroDivisionError), store.db.begin() as conn:  # the body raises
            conn.execute("SELECT 1")
            raise ZeroDivisionError
        with store.db.connect() as conn:  # a read
            conn.execute("SELECT 1")
        idle = list(store.db._idle)
        assert idle
        assert all(is_pgwire(raw) and raw.status == b"I" for raw in idle)  # ReadyForQuery: idle
        states = watch.execute(
            "SELECT state FROM pg_stat_activity WHERE application_name = 'stellaops-runtime'"
            " AND datname = current_database()"
        ).fetchall()
        assert states and {s for (s,) in states} == {"idle"}


@pytest.mark.postgres
def test_a_write_held_past_the_statement_timeout_by_a_row_lock_is_retried_not_quarantined(
    pg_url: str,
) -> None:
    with open_store(pg_url, timeouts=Timeouts(statement=1)) as store:
        store.write_batch(batch(1, n=3))
        with psycopg.connect(libpq_dsn(pg_url)) as holder:  # another writer holds fn_1's row
            holder.execute("SELECT 1 FROM signals.hot_symbols WHERE function_name = 'fn_1' FOR UPDATE")
            t0 = time.monotonic()
            with pytest.raises(StoreUnavailable, match="statement timeout"):
                store.write_batch(batch(2, n=3))
            assert time.monotonic() - t0 < 10
            holder.rollback()
        assert quarantined(store) == []
        # The timed-out range was written in halves (store/ledger.py): fn_0's half is stored,
        # fn_1's row still waited on the lock, and fn_2's half was not reached.
        assert counts(store) == {"fn_0": 2, "fn_1": 2, "fn_2": 3}
        retried = store.write_batch(batch(2, n=3))  # the ledger finds fn_0's part stored
        assert (retried.written, retried.duplicate) == (3, 1)
        assert store.write_batch(batch(2, n=3)).duplicate == 4
        assert counts(store) == {"fn_0": 2, "fn_1": 4, "fn_2": 6}


def test_a_sqlite_file_locked_by_another_writer_is_unavailable_then_written_once(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/hot.db"
    with open_store(url, timeouts=Timeouts(statement=1)) as store:
        store.write_batch(batch(1, n=3))
        holder = sqlite3.connect(tmp_path / "hot.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable, match="locked"):
            store.write_batch(batch(2, n=3))
        assert 0.9 < time.monotonic() - t0 < 10  # the busy timeout is the statement timeout
        holder.execute("ROLLBACK")
        holder.close()
        assert quarantined(store) == []
        assert store.write_batch(batch(2, n=3)).written == 4
        assert counts(store) == {"fn_0": 2, "fn_1": 4, "fn_2": 6}


def test_sqlite_abort_during_a_lock_wait_ends_the_call_and_nothing_is_counted_twice(
    tmp_path: Path,
) -> None:
    """Known limit (as before issue 13): sqlite3_interrupt() does not end SQLite's busy wait.

    The aborted call returns only when the lock is freed (then interrupted)
    or at the busy timeout; either way the batch is written once by the retry.
    """
    url = f"sqlite:///{tmp_path}/hot.db"
    with open_store(url, timeouts=Timeouts(statement=3)) as store:
        holder = sqlite3.connect(tmp_path / "hot.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        out: list[object] = []

        def write() -> None:
            try:
                out.append(store.write_batch(batch(1, n=3)))
            except Exception as e:
                out.append(e)

        t = threading.Thread(target=write)
        t.start()
        time.sleep(0.3)
        store.abort()
        time.sleep(0.5)
        assert t.is_alive()  # still in the busy wait: the interrupt did not wake it
        holder.execute("ROLLBACK")
        holder.close()
        t.join(10)
        assert not t.is_alive()
        (first,) = out
        retry = store.write_batch(batch(1, n=3))
        if isinstance(first, Exception):
            assert is_unavailable(first.__cause__ or first), first
            assert retry.written == 4
        else:
            assert retry.duplicate == 4
        assert counts(store) == {"fn_0": 1, "fn_1": 2, "fn_2": 3}
        assert quarantined(store) == []


# SQLSTATE -> (row refused: split and quarantine, unavailable: retry the whole batch later)
CLASSES = {
    "22003": (True, False),  # numeric value out of range
    "22021": (True, False),  # invalid byte sequence (a NUL in COPY text)
    "23502": (True, False),  # NOT NULL
    "23514": (True, False),  # CHECK
    "54000": (True, True),  # index row too large: an OperationalError too; the ledger asks refusal first
    "57014": (False, True),  # statement timeout / cancel
    "57P01": (False, True),  # admin shutdown
    "40001": (False, True),  # serialization failure
    "40P01": (False, True),  # deadlock
    "55P03": (False, True),  # lock not available
    "53100": (False, True),  # disk full
    "08006": (False, True),  # connection failure
    "25006": (False, False),  # read-only transaction (a standby): a StoreError, retried by the agent too
}


@pytest.mark.parametrize(("sqlstate", "expected"), sorted(CLASSES.items()))
def test_each_server_error_class_is_sorted_the_way_the_ledger_needs(
    sqlstate: str, expected: tuple[bool, bool]
) -> None:
    error = psycopg.errors.lookup(sqlstate)("from the server")
    assert error.sqlstate == sqlstate
    assert (is_row_refusal(error), is_unavailable(error)) == expected


def test_a_corrupt_sqlite_file_is_a_store_error_never_a_refused_row(tmp_path: Path) -> None:
    """A malformed database image (sqlite3.DatabaseError): the batch stays pending, nothing quarantined."""
    path = tmp_path / "hot.db"
    with open_store(f"sqlite:///{path}") as store:
        store.write_batch(batch(1, n=50))
    size = path.stat().st_size
    with path.open("r+b") as f:  # the schema page survives, the table pages do not
        f.seek(4096)
        f.write(bytes(range(256)) * ((size - 4096) // 256))
    with open_store(f"sqlite:///{path}", migrate=False) as store:
        with pytest.raises(StoreError, match="malformed") as e:
            store.write_batch(batch(2, n=50))
        assert not isinstance(e.value, StoreUnavailable)
        assert not is_row_refusal(e.value.__cause__)  # type: ignore[arg-type]


def _unicode_error() -> UnicodeEncodeError:
    try:
        "\udcff".encode()
    except UnicodeEncodeError as e:
        return e
    raise AssertionError("encoded a lone surrogate")


# Errors without a SQLSTATE: raised by the driver itself, or by sqlite3 (which has none).
DRIVER_ERRORS: list[tuple[str, BaseException, tuple[bool, bool]]] = [
    ("psycopg-no-sqlstate", psycopg.OperationalError("server closed the connection"), (False, True)),
    (
        "psycopg-connect-timeout",
        psycopg.errors.ConnectionTimeout("connection timeout expired"),
        (False, True),
    ),
    ("psycopg-client-data", psycopg.DataError("text fields cannot contain NUL (0x00) bytes"), (True, False)),
    ("sqlite-locked", sqlite3.OperationalError("database is locked"), (False, True)),
    ("sqlite-io", sqlite3.OperationalError("disk I/O error"), (False, True)),
    ("sqlite-no-table", sqlite3.OperationalError("no such table: main.flush_ledger"), (False, True)),
    ("sqlite-malformed", sqlite3.DatabaseError("database disk image is malformed"), (False, False)),
    ("sqlite-not-null", sqlite3.IntegrityError("NOT NULL constraint failed"), (True, False)),
    ("sqlite-too-big", sqlite3.DataError("string or blob too big"), (True, False)),
    ("int-too-big", OverflowError("Python int too large to convert to SQLite INTEGER"), (True, False)),
    ("lone-surrogate", _unicode_error(), (True, False)),
]


@pytest.mark.parametrize(
    ("error", "expected"), [d[1:] for d in DRIVER_ERRORS], ids=[d[0] for d in DRIVER_ERRORS]
)
def test_each_driver_error_is_sorted_the_way_the_ledger_needs(
    error: BaseException, expected: tuple[bool, bool]
) -> None:
    assert (is_row_refusal(error), is_unavailable(error)) == expected


@pytest.mark.postgres
def test_abort_during_the_pre_ping_of_a_black_holed_connection_fails_the_call_now(pg_url: str) -> None:
    """The pooled connection's peer went silent; the write hangs in the pre-ping; the agent aborts.

    The aborted ping used to be taken for "died while idle" and the call went
    on to open a new connection, hanging in connect (up to connect_timeout,
    10 s) past the abort. Now it fails at once; the retry, once the network
    heals, writes the batch exactly once.
    """
    u = urlsplit(pg_url)
    proxy = PgProxy(u.hostname or "127.0.0.1", u.port or 5432)
    try:
        with open_store(proxy.url(pg_url), timeouts=Timeouts(connect=10)) as store:
            store.write_batch(batch(1, n=3))  # leaves one idle connection in the pool
            proxy.blackhole()
            out: list[object] = []

            def write() -> None:
                try:
                    out.append(store.write_batch(batch(2, n=3)))
                except Exception as e:
                    out.append(e)

            t = threading.Thread(target=write)
            t.start()
            time.sleep(0.5)  # hung in the pre-ping's SELECT 1
            t0 = time.monotonic()
            store.abort()
            t.join(15)
            took = time.monotonic() - t0
            assert not t.is_alive()
            (error,) = out
            assert isinstance(error, StoreUnavailable), error
            assert took < 5, f"the aborted call went on for {took:.1f} s"
            proxy.heal()
            assert store.write_batch(batch(2, n=3)).written == 4
            assert counts(store) == {"fn_0": 2, "fn_1": 4, "fn_2": 6}
    finally:
        proxy.close()
