"""Errors of the agent's own PostgreSQL client are classified as psycopg's are (store/errors.py).

The store's retry logic reads an error's kind: "the store is away, retry later" (a connection
refused or lost: the DB-API's OperationalError/InterfaceError, no SQLSTATE), "the database refused
this row" (a DataError: quarantine it, keep the others), or "a statement was refused". pgwire raises
its own classes, which store/errors.py, store/row_refusal.py and agent/store_wait.py now recognise
exactly where they recognise psycopg's; each case here is a real error from a real connection.
"""

from __future__ import annotations

import socket

import pytest

from stellaops_runtime import pgwire
from stellaops_runtime.agent.store_wait import out_of_reach
from stellaops_runtime.store.dbconn import Database, Timeouts
from stellaops_runtime.store.errors import is_database_error, is_unavailable
from stellaops_runtime.store.row_refusal import is_row_refusal
from stellaops_runtime.store.store_url import parse_store_url

pytestmark = pytest.mark.postgres


def test_a_refused_connection_is_the_store_being_away() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = Database(parse_store_url(f"postgresql+psycopg://u@127.0.0.1:{port}/d"), Timeouts(connect=2))
    with pytest.raises(pgwire.OperationalError) as caught, db.begin() as conn:
        conn.execute("SELECT 1")
    e = caught.value
    assert e.sqlstate is None
    assert is_database_error(e) and is_unavailable(e) and out_of_reach(e)
    assert not is_row_refusal(e)


def test_a_nul_is_a_refused_row_and_a_bad_statement_is_neither(pg_url: str) -> None:
    db = Database(parse_store_url(pg_url))
    try:
        with pytest.raises(pgwire.DataError) as nul, db.begin() as conn:
            conn.execute("SELECT %s::text", ("a\x00b",))
        assert is_row_refusal(nul.value) and not is_unavailable(nul.value)
        with pytest.raises(pgwire.ProgrammingError) as bad, db.begin() as conn:
            conn.execute("SELECT no_such_column FROM signals.hot_symbols")
        e = bad.value
        assert e.sqlstate == "42703" and is_database_error(e)
        assert not (is_row_refusal(e) or is_unavailable(e) or out_of_reach(e))
    finally:
        db.dispose()


@pytest.mark.parametrize("query", ["", "?target_session_attrs=read-write"], ids=["pgwire", "psycopg"])
def test_a_server_refusing_the_session_is_out_of_reach_on_either_driver(pg_url: str, query: str) -> None:
    """A connect the server refuses (here 3D000, a database that does not exist; also 57P03 while it
    starts up after a crash, 53300 with every slot taken) is "out of reach" (agent/store_wait.py: the
    start row's flush stops there, the proof after it does not try). psycopg's connect errors carry
    no SQLSTATE, pgwire's keep the server's (API.md): read by its SQLSTATE, the same refusal was out
    of reach on psycopg and not on pgwire."""
    url = pg_url.rsplit("/", 1)[0] + "/no_such_database_rw2" + query
    db = Database(parse_store_url(url), Timeouts(connect=2))
    with pytest.raises(Exception) as caught, db.begin() as conn:
        conn.execute("SELECT 1")
    e = caught.value
    assert is_database_error(e) and is_unavailable(e) and not is_row_refusal(e)
    assert out_of_reach(e), repr(e)
