"""An abandoned write's statement ends on the server at once, not at ``statement_timeout``.

docs/operations.md ("A failing store"): a write abandoned at ``store.flushTimeout``
makes the agent send the server a cancel request for its statement, since the
server would run it on (holding the batch's lock) however the client's socket
was shut. Here a real PostgreSQL session of the store's own connection class
(store/dbconn.py ``Database``) runs a 60 s statement under a 60 s statement
timeout; ``abort()`` from another thread, as the flusher does, must end it on
the server within seconds (pg_stat_activity no longer shows it running). Both of the store's
PostgreSQL drivers: its own client (pgwire's cancel) and psycopg's (libpq's cancel connection),
which a URL keyword pgwire does not speak selects (store/pg_connect.py).
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from pg import libpq_dsn

from stellaops_runtime.store.dbconn import Database, Timeouts
from stellaops_runtime.store.pg_connect import is_pgwire
from stellaops_runtime.store.store_url import parse_store_url

pytestmark = pytest.mark.postgres

MARK = "x3_abort_cancels"


def _running(admin: psycopg.Connection) -> list[tuple[int, str]]:
    return admin.execute(
        "SELECT pid, state FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
        (f"%{MARK}%",),
    ).fetchall()


@pytest.mark.parametrize("query", ["", "?target_session_attrs=read-write"], ids=["pgwire", "psycopg"])
def test_abort_cancels_the_running_statement_on_the_server(pg_url: str, query: str) -> None:
    db = Database(parse_store_url(pg_url + query), timeouts=Timeouts(statement=60))
    failed: list[BaseException] = []

    def hang() -> None:
        try:
            with db.connect() as conn:
                conn.execute(f"SELECT pg_sleep(60) AS {MARK}")
        except BaseException as e:  # the aborted call fails at once (its socket was shut)
            failed.append(e)

    worker = threading.Thread(target=hang, daemon=True)
    with psycopg.connect(libpq_dsn(pg_url), autocommit=True) as admin:
        worker.start()
        deadline = time.monotonic() + 20
        while not [r for r in _running(admin) if r[1] == "active"]:
            assert time.monotonic() < deadline, "the statement never started"
            time.sleep(0.05)
        with db._lock:
            (raw,) = db._raw.values()
        assert is_pgwire(raw) is (query == "")
        db.abort()
        worker.join(10)
        assert not worker.is_alive() and failed, "the aborted call did not return"
        deadline = time.monotonic() + 10
        while [r for r in _running(admin) if r[1] == "active"]:
            assert time.monotonic() < deadline, f"still running on the server: {_running(admin)}"
            time.sleep(0.05)
    db.dispose()
