"""pgwire faults found in review (session 50): each case hung, broke the session or let an error go.

A statement or a reply pgwire did not expect must end in a DB-API error within seconds, with the
connection either usable or ``broken``: never a wait for a reply that will not come (the agent's
flush would hold its connection until the store's abort cuts it), never an exception the store
does not read as a database error (store/errors.py, store/row_refusal.py).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pgwire_support import keywords

from stellaops_runtime import pgwire


def within(conn: pgwire.Connection, call: Callable[[], Any], seconds: float = 5.0) -> Any:
    """``call()``'s result or exception; a call still blocked after ``seconds`` fails the test (its
    socket is shut down first, so no thread is left waiting)."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = call()
        except BaseException as e:  # handed back to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        s = socket.socket(fileno=os.dup(conn.fileno()))
        s.shutdown(socket.SHUT_RDWR)
        s.close()
        t.join(2)
        pytest.fail(f"still blocked after {seconds} s")
    if "error" in out:
        raise out["error"]
    return out.get("value")


@pytest.fixture
def conn(pg_url: str):
    c = pgwire.connect(**keywords(pg_url))
    yield c
    c.close()


@pytest.mark.parametrize("autocommit", [True, False])
def test_copy_from_stdin_through_execute_is_refused_not_awaited_forever(conn, autocommit: bool) -> None:
    conn.autocommit = autocommit
    conn.execute("CREATE TEMP TABLE rw_t (a int)")
    with pytest.raises(pgwire.ProgrammingError, match=r"cursor\.copy"):
        within(conn, lambda: conn.execute("COPY rw_t FROM STDIN"))
    conn.rollback()
    assert conn.execute("SELECT 1").fetchall() == [(1,)]


@pytest.mark.parametrize("sql", ["", "-- nothing to run"])
def test_executemany_of_an_empty_statement_returns_as_psycopgs(conn, sql: str) -> None:
    cur = conn.cursor()
    within(conn, lambda: cur.executemany(sql, [(), ()]))
    assert cur.rowcount == 0  # psycopg 3.3: 0
    assert conn.execute("SELECT 2").fetchall() == [(2,)]


def test_an_error_in_a_copy_block_naming_unencodable_text_is_raised_and_the_copy_ended(conn) -> None:
    conn.execute("CREATE TEMP TABLE rw_c (a text)")
    with (
        pytest.raises(RuntimeError, match="no such image"),
        conn.cursor().copy("COPY rw_c FROM STDIN (FORMAT BINARY)") as cp,
    ):
        cp.set_types(["text"])
        cp.write_row(("kept out",))
        raise RuntimeError("no such image /var/lib/\udcff")  # a surrogateescape-decoded path
    assert not conn.broken
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM pg_class").fetchone()[0] > 0
