"""A transaction an error aborted is never reported committed, on either PostgreSQL driver.

An error caught inside ``Database.begin()`` (without a savepoint) leaves the transaction aborted:
the server rolls it back at COMMIT, every write in it lost. pgwire's ``commit()`` raises there
(InternalError 25P02); psycopg 3.3's returns without a word, so on the psycopg fallback
(store/pg_connect.py) such a block looked committed and its writes were silently gone. The store
now refuses that commit on both drivers alike (store/pg_connect.py ``refuse_aborted_commit``):
the caller sees an error, as for any write that did not commit.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.store.dbconn import Database
from stellaops_runtime.store.errors import is_database_error, is_unavailable
from stellaops_runtime.store.pg_connect import is_pgwire
from stellaops_runtime.store.row_refusal import is_row_refusal
from stellaops_runtime.store.store_url import parse_store_url

pytestmark = pytest.mark.postgres

PSYCOPG = "?target_session_attrs=read-write"  # a keyword pgwire does not speak: psycopg's connections


@pytest.mark.parametrize("query", ["", PSYCOPG], ids=["pgwire", "psycopg"])
def test_a_block_whose_error_was_swallowed_is_not_committed_silently(pg_url: str, query: str) -> None:
    db = Database(parse_store_url(pg_url + query))
    try:
        with db.begin() as conn:
            conn.execute("CREATE TABLE rw2_aborted (x int)")
        with pytest.raises(Exception) as refused, db.begin() as conn:
            assert is_pgwire(conn.raw) is (query == "")
            conn.execute("INSERT INTO rw2_aborted VALUES (1)")
            try:
                conn.execute("SELECT 1 / 0")
            except Exception as e:  # a caller that swallows it (no savepoint)
                assert getattr(e, "sqlstate", None) == "22012"
        e = refused.value
        assert getattr(e, "sqlstate", None) == "25P02", repr(e)
        # a store error, neither "down" (retried as an outage) nor a refused row (quarantined)
        assert is_database_error(e) and not is_unavailable(e) and not is_row_refusal(e)
        with db.connect() as conn:  # nothing stored, and the connection is usable again
            assert conn.execute("SELECT count(*) FROM rw2_aborted").scalar() == 0
    finally:
        db.dispose()
