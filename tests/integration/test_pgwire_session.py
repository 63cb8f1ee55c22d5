"""pgwire against the real test cluster: statements, transactions as psycopg has them, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pgwire_support import keywords

from stellaops_runtime import pgwire


@pytest.fixture
def conn(pg_url: str):
    c = pgwire.connect(**keywords(pg_url))
    yield c
    c.close()


def test_execute_fetch_and_commit_are_seen_by_another_session(conn, pg_url: str) -> None:
    cur = conn.cursor()
    cur.execute("CREATE TABLE t (a int8, b text)")
    cur.execute("INSERT INTO t VALUES (%s, %s), (%s, %s)", (1, "x", 2, "y"))
    assert cur.rowcount == 2
    assert cur.description is None
    assert conn.status == b"T"  # BEGIN went first: not autocommit
    with psycopg.connect(**keywords(pg_url)) as other:
        assert other.execute("SELECT to_regclass('t')").fetchone() == (None,)  # not committed yet
    conn.commit()
    assert conn.status == b"I"
    with psycopg.connect(**keywords(pg_url)) as other:
        assert other.execute("SELECT a, b FROM t ORDER BY a").fetchall() == [(1, "x"), (2, "y")]
    cur.execute("SELECT a, b FROM t WHERE a > %s ORDER BY a", (0,))
    assert [d[0] for d in cur.description] == ["a", "b"]
    assert cur.rowcount == 2
    assert cur.fetchone() == (1, "x")
    assert cur.fetchall() == [(2, "y")]
    assert cur.fetchone() is None


def test_rollback_discards_and_autocommit_sends_no_begin(conn) -> None:
    cur = conn.cursor()
    cur.execute("CREATE TABLE t (a int)")
    conn.commit()
    cur.execute("INSERT INTO t VALUES (1)")
    conn.rollback()
    cur.execute("SELECT count(*) FROM t")
    assert cur.fetchone() == (0,)
    conn.rollback()
    conn.autocommit = True
    cur.execute("INSERT INTO t VALUES (2)")
    assert conn.status == b"I"
    cur.execute("SELECT count(*) FROM t")
    assert cur.fetchone() == (1,)


def test_a_failed_statement_aborts_the_transaction_until_rollback(conn) -> None:
    cur = conn.cursor()
    cur.execute("CREATE TABLE t (a int PRIMARY KEY)")
    cur.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(pgwire.IntegrityError) as e:
        cur.execute("INSERT INTO t VALUES (%s)", (1,))
    assert e.value.sqlstate == "23505"
    assert "duplicate key" in str(e.value)
    with pytest.raises(pgwire.InternalError) as e2:
        cur.execute("SELECT 1")
    assert e2.value.sqlstate == "25P02"
    # COMMIT of the aborted transaction is refused, not reported as a success (psycopg 3.3 returns
    # silently: the server rolled back).
    with pytest.raises(pgwire.InternalError):
        conn.commit()
    assert conn.status == b"I"
    cur.execute("SELECT count(*) FROM pg_class WHERE relname = 't'")
    assert cur.fetchone() == (0,)


CODES = ["22012", "23505", "42601", "0A000", "25001", "2D000", "40001", "40P01", "57014", "53200"]
CODES += ["08006", "28P01", "55P03", "XX000", "P0001", "F0000", "HV000", "38000", "01000", "99999"]


def test_server_errors_map_as_psycopg_maps_them(conn, pg_url: str) -> None:
    conn.autocommit = True
    cur = conn.cursor()
    with psycopg.connect(**keywords(pg_url), autocommit=True) as pc:
        for code in CODES:
            sql = f"DO $$BEGIN RAISE EXCEPTION 'boom %' , 1 USING ERRCODE = '{code}'; END$$"
            with pytest.raises(psycopg.Error) as theirs:
                pc.execute(sql)
            with pytest.raises(pgwire.Error) as ours:
                cur.execute(sql)
            assert ours.value.sqlstate == theirs.value.sqlstate == code
            assert type(ours.value).__name__ == psycopg.errors.get_base_exception(code).__name__, code
            assert isinstance(ours.value, pgwire.DatabaseError)
            assert str(ours.value) == "boom 1"


def test_placeholders_follow_psycopg(conn) -> None:
    cur = conn.cursor()
    cur.execute("SELECT %s || '%%'", ("50",))
    assert cur.fetchone() == ("50%",)
    cur.execute("SELECT '%d'")  # no params: the text as is
    assert cur.fetchone() == ("%d",)
    with pytest.raises(pgwire.ProgrammingError):
        cur.execute("SELECT %d", (1,))
    with pytest.raises(pgwire.ProgrammingError):
        cur.execute("SELECT %s, %s", (1,))
    with pytest.raises(pgwire.DataError):
        cur.execute("SELECT %s", ("a\0b",))
    cur.execute("SELECT 1")  # nothing was sent: the connection is usable and not in a failed state
    assert cur.fetchone() == (1,)


def test_executemany_many_rows_one_sync_and_type_changes(conn) -> None:
    cur = conn.cursor()
    cur.execute("CREATE TABLE t (a int8, b text)")
    rows = [(i, f"r{i}") for i in range(1200)] + [(2**40, "big")]  # int2 .. int8: another Parse
    cur.executemany("INSERT INTO t VALUES (%s, %s)", rows)
    assert cur.rowcount == len(rows)
    cur.execute("SELECT count(*), max(a) FROM t")
    assert cur.fetchone() == (len(rows), 2**40)
    with pytest.raises(pgwire.DataError):
        cur.executemany("INSERT INTO t VALUES (%s, %s)", [(1, "ok"), (2, "a\0")])
    cur.execute("SELECT count(*) FROM t")  # the refused batch sent nothing
    assert cur.fetchone() == (len(rows),)
    with pytest.raises(pgwire.DataError):  # the server refuses row 701 (second chunk): 22P02
        cur.executemany("INSERT INTO t VALUES (%s, %s)", [(1, "ok")] * 700 + [("x", "bad int")])
    conn.rollback()
    cur.execute("SELECT to_regclass('t') IS NULL")
    assert cur.fetchone() == (True,)  # the table was never committed


def test_connection_closes_idempotently_and_refuses_use(conn) -> None:
    conn.close()
    conn.close()
    assert conn.closed and not conn.broken
    with pytest.raises(pgwire.OperationalError):
        conn.cursor()


def test_a_session_the_server_ends_raises_as_psycopg(pg_url: str) -> None:
    """idle_in_transaction_session_timeout (the agent sets it) ends the session with a FATAL 25P03
    the client reads at its next call: both drivers raise InternalError 25P03, connection broken."""
    import time

    kw = keywords(pg_url, options="-c idle_in_transaction_session_timeout=100")
    theirs = psycopg.connect(**kw)
    ours = pgwire.connect(**kw)
    try:
        theirs.execute("SELECT 1")
        ours.cursor().execute("SELECT 1")
        time.sleep(0.4)
        with pytest.raises(psycopg.InternalError) as e1:
            theirs.commit()
        with pytest.raises(pgwire.InternalError) as e2:
            ours.commit()
        assert e1.value.sqlstate == e2.value.sqlstate == "25P03"
        assert str(e2.value) == "terminating connection due to idle-in-transaction timeout"
        assert theirs.broken and ours.broken
    finally:
        theirs.close()
        ours.close()


def test_rowcount_of_every_kind_of_statement_is_psycopgs(conn, pg_url: str) -> None:
    """The store decides from rowcount whether a flush was already applied (an INSERT ... ON CONFLICT
    DO NOTHING into its ledger: 1 or 0) and how many rows it deleted: a wrong count is a count lost
    or doubled."""
    statements = [
        ("CREATE TABLE t (k int PRIMARY KEY, v int)", None),
        ("INSERT INTO t VALUES (%s, %s) ON CONFLICT DO NOTHING", (1, 1)),
        ("INSERT INTO t VALUES (%s, %s) ON CONFLICT DO NOTHING", (1, 2)),
        ("INSERT INTO t SELECT g, g FROM generate_series(2, 40) g", None),
        ("UPDATE t SET v = v + 1 WHERE k > %s", (30,)),
        ("UPDATE t SET v = 0 WHERE k < 0", None),
        (
            "MERGE INTO t USING (VALUES (1), (99)) s(k) ON t.k = s.k WHEN MATCHED THEN UPDATE SET v = 5"
            " WHEN NOT MATCHED THEN INSERT VALUES (s.k, 0)",
            None,
        ),
        ("WITH d AS (DELETE FROM t WHERE k > %s RETURNING k) SELECT count(*) FROM d", (35,)),
        ("DELETE FROM t WHERE k > %s", (20,)),
        ("SELECT * FROM t", None),
        ("SELECT 1 WHERE false", None),
        ("DROP TABLE t", None),
    ]
    with psycopg.connect(**keywords(pg_url)) as theirs:
        expected = []
        for sql, params in statements:
            expected.append(theirs.execute(sql, params).rowcount)
        theirs.rollback()
    cur = conn.cursor()
    got = []
    for sql, params in statements:
        cur.execute(sql, params)
        got.append(cur.rowcount)
    assert got == expected
    assert got[1:3] == [1, 0]


def test_a_session_moved_off_utf8_is_broken_not_misread(conn) -> None:
    """pgwire decodes UTF-8 only: a statement that switches the session's client_encoding (the
    server reports it) ends the connection with a clear error instead of text decoded wrongly."""
    cur = conn.cursor()
    with pytest.raises(pgwire.OperationalError, match="client_encoding"):
        cur.execute("SET client_encoding = 'LATIN1'")
    assert conn.broken
