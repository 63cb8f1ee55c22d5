"""The agent's DB-API connection layer (store/dbconn.py) on real SQLite files and the real PostgreSQL.

What SQLAlchemy's engine did for the writer and dbconn now does alone: a call
hung on the database ends when another thread aborts the store; a connection
that died while idle (server restarted, backend terminated) is replaced
before use instead of failing the next write; a broken connection is never
put back; errors keep their meaning (down = StoreUnavailable, refused row =
split and quarantine). Also: the committed SQL is what the schema gives, and
the agent's time conversion is the schema's.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from stellaops_runtime.store import agent_sql_gen
from stellaops_runtime.store.dbconn import Database, Statement
from stellaops_runtime.store.dbvalues import sqlite_datetime
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.errors import StoreUnavailable, is_unavailable
from stellaops_runtime.store.ledger import is_row_refusal
from stellaops_runtime.store.pg_connect import is_pgwire
from stellaops_runtime.store.schema import ns_to_datetime as schema_ns_to_datetime
from stellaops_runtime.store.store_url import parse_store_url
from stellaops_runtime.store.timeconv import ns_to_datetime

S = 10**9
FOREVER = {
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
    "postgresql": "SELECT pg_sleep(60)",
}


def test_the_committed_agent_sql_is_what_the_schema_gives() -> None:
    assert agent_sql_gen.main(["--check"]) == 0


@pytest.mark.parametrize(
    "ns",
    [
        0,
        1,
        999,
        1_000,
        -1,
        -1_001,
        1_740_787_200_123_456_789,
        -62_135_596_800 * 10**9,
        253_402_300_799 * 10**9,
    ],
)
def test_the_schema_gives_the_agents_time_conversion(ns: int) -> None:
    assert schema_ns_to_datetime is ns_to_datetime
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert ns_to_datetime(ns) == epoch + dt.timedelta(microseconds=ns // 1000)


def test_a_time_no_datetime_holds_is_refused_the_same_way() -> None:
    for ns in (-62_135_596_801 * 10**9, 253_402_300_800 * 10**9, 2**80):
        with pytest.raises(OverflowError):
            schema_ns_to_datetime(ns)
        with pytest.raises(OverflowError) as e:
            ns_to_datetime(ns)
        assert is_row_refusal(e.value)  # quarantined, never retried forever


def test_a_naive_datetime_is_refused_as_the_utc_column_type_refuses_it() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        sqlite_datetime(dt.datetime(2026, 1, 1))
    assert sqlite_datetime(
        dt.datetime(2026, 1, 1, 5, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))
    ) == ("2026-01-01 00:00:00.000000")


def _hang_then_abort(db: Database) -> tuple[BaseException | None, float]:
    caught: list[BaseException] = []

    def run() -> None:
        try:
            with db.connect() as conn:
                conn.execute(FOREVER[db.dialect])
        except BaseException as e:
            caught.append(e)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.5)  # the query is running
    t0 = time.monotonic()
    db.abort()
    t.join(20)
    assert not t.is_alive(), "abort() did not end the hung call"
    return (caught[0] if caught else None), time.monotonic() - t0


# A libpq keyword pgwire does not speak: the store's PostgreSQL connections are psycopg's
# (store/pg_connect.py), which a node gets for such a configuration; both drivers are tested.
PSYCOPG = "?target_session_attrs=read-write"


def test_abort_ends_a_hung_call_from_another_thread_and_the_next_call_reconnects(url: str) -> None:
    _abort_and_reconnect(url)


@pytest.mark.postgres
def test_abort_ends_a_hung_psycopg_call_too(pg_url: str) -> None:
    _abort_and_reconnect(pg_url + PSYCOPG)


def _abort_and_reconnect(url: str) -> None:
    with open_store(url) as store:
        db = store.db
        with db.connect() as conn:
            first = conn.raw
        assert is_pgwire(first) is (db.dialect == "postgresql" and not url.endswith(PSYCOPG))
        error, took = _hang_then_abort(db)
        assert error is not None and is_unavailable(error), error
        assert took < 5
        assert db._raw == {} or first not in db._raw.values()  # the aborted connection is gone
        with db.begin() as conn:
            assert conn.execute(Statement("SELECT 1")).scalar() == 1
            assert conn.raw is not first


@pytest.mark.postgres
@pytest.mark.parametrize("query", ["", PSYCOPG], ids=["pgwire", "psycopg"])
def test_a_connection_killed_while_idle_is_replaced_before_use(pg_url: str, query: str) -> None:
    with open_store(pg_url + query) as store:
        db = store.db
        with db.connect() as conn:
            pid = conn.execute("SELECT pg_backend_pid()").scalar()
        other = Database(parse_store_url(pg_url))
        with other.begin() as conn:
            assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).scalar() is True
        other.dispose()
        time.sleep(0.2)
        with db.begin() as conn:  # the pre-ping found it dead: a new connection, no error
            assert conn.execute("SELECT pg_backend_pid()").scalar() != pid


@pytest.mark.postgres
@pytest.mark.parametrize("query", ["", PSYCOPG], ids=["pgwire", "psycopg"])
def test_a_server_that_went_away_is_unavailable_not_a_crash(pg, pg_url: str, query: str) -> None:  # type: ignore[no-untyped-def]
    store = open_store(pg_url + query)
    try:
        pg.stop()
        from stellaops_runtime.store.batches import Batch
        from tests.integration.test_flush_ledger import batch

        with pytest.raises(StoreUnavailable):
            store.write_batch(batch(1, n=2))
        pg.start()
        b: Batch = batch(1, n=2)
        assert store.write_batch(b).written == 3
    finally:
        if not pg.running:
            pg.start()
        store.close()
