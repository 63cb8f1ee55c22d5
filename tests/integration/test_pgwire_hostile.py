"""pgwire against servers that lie, stall or break: a clear exception in time, never a hang.

Fake servers (tests/pgwire_support.py ``FakeServer``) speak garbage during startup; a proxy of the
test's own (``Proxy``) in front of the real test cluster drops COMMIT's reply, stalls mid-DataRow or
cuts a message in half. A blocked statement is ended by shutting its socket down from another
thread (store/dbconn.py's ``cut``) and by ``cancel()``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pgwire_support import (
    AUTH_OK,
    KEY,
    READY,
    FakeServer,
    Proxy,
    auth,
    keywords,
    message,
    read_message,
    read_startup,
)

from stellaops_runtime import pgwire
from stellaops_runtime.store.dbconn import cut


def _fake(script: Any, **extra: Any) -> Any:
    server = FakeServer(script)
    kw = {
        "host": "127.0.0.1",
        "port": server.port,
        "user": "u",
        "dbname": "d",
        "sslmode": "prefer",
        "connect_timeout": 3,
        "password": "pw",
    }
    kw.update(extra)
    return server, kw


def _then(data: bytes, *, end: bool = True) -> Any:
    def script(sock: socket.socket) -> None:
        read_startup(sock)
        sock.sendall(data)
        if end:
            sock.shutdown(socket.SHUT_WR)  # then EOF: what was sent must be judged, not waited on
        time.sleep(5)

    return script


@pytest.mark.parametrize(
    ("reply", "error", "match"),
    [
        (b"R\0\0\0\0", pgwire.OperationalError, "invalid length 0"),
        (b"R\x80\0\0\0", pgwire.OperationalError, "invalid length"),
        (b"R\x7f\xff\xff\xff", pgwire.OperationalError, "invalid length 2147483647"),
        (b"D\x40\0\0\x05", pgwire.OperationalError, "invalid length"),  # 1 GiB + 1
        (message(b"?", b""), pgwire.OperationalError, "unexpected message"),
        (
            message(b"E", b"SFATAL\0C28000\0Mno pg_hba.conf entry for you\0\0"),
            pgwire.OperationalError,
            "no pg_hba.conf entry for you",
        ),
        (auth(7), pgwire.UnsupportedAuthentication, "GSSAPI"),
        (auth(9), pgwire.UnsupportedAuthentication, "SSPI"),
        (auth(10, b"SCRAM-SHA-256-PLUS\0\0"), pgwire.UnsupportedAuthentication, "SCRAM-SHA-256-PLUS"),
        (auth(0) + message(b"D", b"\0\x01\0\0\0\x09abc"), pgwire.OperationalError, "unexpected message"),
        (auth(0) + b"Z\0\0", pgwire.OperationalError, "closed"),  # cut mid-header
        (auth(11, b"r=x"), pgwire.OperationalError, "SASL continue without SASL"),
        (auth(5, b"\0\0"), pgwire.OperationalError, "MD5 salt"),
    ],
)
def test_garbage_during_startup_is_a_clear_error_in_time(reply: bytes, error: type, match: str) -> None:
    server, kw = _fake(_then(reply))
    try:
        start = time.monotonic()
        with pytest.raises(error, match=match) as e:
            pgwire.connect(**kw)
        assert time.monotonic() - start < 3.5
        if error is pgwire.OperationalError and "pg_hba" in match:
            assert e.value.sqlstate == "28000"
        elif error is pgwire.OperationalError:
            assert e.value.sqlstate is None
    finally:
        server.close()


def test_a_silent_server_ends_at_connect_timeout() -> None:
    server, kw = _fake(_then(b"", end=False), connect_timeout=2)
    try:
        start = time.monotonic()
        with pytest.raises(pgwire.OperationalError, match="timeout"):
            pgwire.connect(**kw)
        assert 1.9 < time.monotonic() - start < 3
    finally:
        server.close()


def _scram_server(final: str, iterations: int = 4096) -> Any:
    """A SCRAM server that knows the password 'pw' but ends with ``final``: 'wrong' (a bad
    signature), 'skip' (AuthenticationOk without SASLFinal) or 'right'."""

    def script(sock: socket.socket) -> None:
        read_startup(sock)
        sock.sendall(auth(10, b"SCRAM-SHA-256\0\0"))
        _, body = read_message(sock)
        mech_end = body.index(b"\0")
        client_first = body[mech_end + 5 :].decode()
        first_bare = client_first[3:]
        nonce = first_bare.split("r=", 1)[1] + "srv"
        salt = b"salty"
        server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={iterations}"
        sock.sendall(auth(11, server_first.encode()))
        _, body = read_message(sock)
        without_proof = body.decode().rsplit(",p=", 1)[0]
        salted = hashlib.pbkdf2_hmac("sha256", b"pw", salt, 4096)
        auth_message = f"{first_bare},{server_first},{without_proof}".encode()
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        if final == "wrong":
            signature = bytes(b ^ 1 for b in signature)
        if final != "skip":
            sock.sendall(auth(12, b"v=" + base64.b64encode(signature)))
        sock.sendall(AUTH_OK + KEY + READY)
        time.sleep(2)

    return script


@pytest.mark.parametrize(("final", "match"), [("wrong", "signature is wrong"), ("skip", "without proving")])
def test_a_scram_server_that_cannot_prove_the_password_is_refused(final: str, match: str) -> None:
    server, kw = _fake(_scram_server(final))
    try:
        with pytest.raises(pgwire.OperationalError, match=match):
            pgwire.connect(**kw)
    finally:
        server.close()
    server, kw = _fake(_scram_server("right"))
    try:
        pgwire.connect(**kw).close()  # the same server, honest: accepted
    finally:
        server.close()


def _later(action: Any, *args: Any) -> tuple[threading.Timer, list[float]]:
    """Start ``action(*args)`` in 0.3 s on another thread; the list gets the time it ran."""
    when: list[float] = []

    def run() -> None:
        when.append(time.monotonic())
        action(*args)

    timer = threading.Timer(0.3, run)
    timer.start()
    return timer, when


def _proxied(pg_url: str, on_reply: Any) -> tuple[Proxy, pgwire.Connection]:
    kw = keywords(pg_url)
    proxy = Proxy(kw["port"], on_reply)
    kw["port"] = proxy.port
    return proxy, pgwire.connect(**kw)


def test_a_lost_commit_reply_is_an_error_never_a_success(pg_url: str) -> None:
    proxy, conn = _proxied(pg_url, lambda kind, raw, state: "drop" if state["commit"] else "forward")
    try:
        cur = conn.cursor()
        cur.execute("CREATE TABLE t (a int)")
        cur.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(pgwire.OperationalError) as e:
            conn.commit()
        assert e.value.sqlstate is None
        assert conn.broken and conn.closed
        with pytest.raises(pgwire.OperationalError):
            conn.cursor()
    finally:
        proxy.close()
        conn.close()
    with psycopg.connect(**keywords(pg_url)) as pc:  # the server did commit: the outcome was unknown
        assert pc.execute("SELECT count(*) FROM t").fetchone() == (1,)


@pytest.mark.parametrize("action", ["cut", "hang"])
def test_a_reply_cut_or_stalled_mid_datarow(pg_url: str, action: str) -> None:
    proxy, conn = _proxied(pg_url, lambda kind, raw, state: action if kind == b"D" else "forward")
    try:
        cur = conn.cursor()
        if action == "cut":
            with pytest.raises(pgwire.OperationalError, match="closed"):
                cur.execute("SELECT repeat('x', 1000)")
        else:
            timer, when = _later(cut, conn, "postgresql")
            with pytest.raises(pgwire.OperationalError):
                cur.execute("SELECT repeat('x', 1000)")
            ended = time.monotonic()
            timer.join()
            assert ended - when[0] < 0.5
        assert conn.broken
    finally:
        proxy.close()
        conn.close()


def test_shutting_the_socket_down_from_another_thread_ends_a_blocked_execute(pg_url: str) -> None:
    conn = pgwire.connect(**keywords(pg_url))
    try:
        timer, when = _later(cut, conn, "postgresql")
        with pytest.raises(pgwire.OperationalError):
            conn.cursor().execute("SELECT pg_sleep(30)")
        ended = time.monotonic()
        timer.join()
        assert ended - when[0] < 0.5
        assert conn.broken and conn.closed
    finally:
        conn.close()


def test_cancel_ends_a_running_statement_within_a_second(pg_url: str) -> None:
    conn = pgwire.connect(**keywords(pg_url))
    try:
        timer, when = _later(conn.cancel)
        with pytest.raises(pgwire.OperationalError) as e:
            conn.cursor().execute("SELECT pg_sleep(30)")
        ended = time.monotonic()
        timer.join()
        assert e.value.sqlstate == "57014"
        assert ended - when[0] < 1.0
        assert not conn.broken
        conn.rollback()
        cur = conn.cursor()
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    finally:
        conn.close()


def test_cancel_never_raises_nor_blocks_past_its_timeout() -> None:
    def script(sock: socket.socket) -> None:
        read_startup(sock)
        sock.sendall(AUTH_OK + KEY + READY)
        time.sleep(5)

    server, kw = _fake(script)
    conn = pgwire.connect(**kw)
    try:
        start = time.monotonic()
        conn.cancel(timeout=0.5)  # the fake server accepts the cancel connection and never closes it
        assert time.monotonic() - start < 1.0
    finally:
        conn.close()
        server.close()
    start = time.monotonic()
    conn.cancel(timeout=0.5)  # its server is gone: refused at once, nothing raised
    assert time.monotonic() - start < 1.0


def test_a_malformed_datarow_breaks_the_connection() -> None:
    def script(sock: socket.socket) -> None:
        read_startup(sock)
        sock.sendall(AUTH_OK + KEY + READY)
        for _ in range(5):  # Parse Bind Describe Execute Sync (and a BEGIN first)
            kind, _ = read_message(sock)
            if kind == b"S":
                break
        desc = b"\0\x01" + b"a\0" + struct.pack("!ihihih", 0, 0, 25, -1, -1, 0)
        sock.sendall(message(b"1", b"") + message(b"2", b"") + message(b"T", desc))
        sock.sendall(message(b"D", b"\0\x01\0\0\0\x40abc"))  # a 64-byte column in a 3-byte body
        time.sleep(3)

    server, kw = _fake(script)
    conn = pgwire.connect(**kw)
    conn.autocommit = True
    try:
        with pytest.raises(pgwire.OperationalError, match="protocol violation"):
            conn.cursor().execute("SELECT 'abc'")
        assert conn.broken
    finally:
        conn.close()
        server.close()


def test_a_terminated_backend_raises_the_servers_fatal_error(pg_url: str) -> None:
    """A FATAL ErrorResponse (here 57P01, the backend terminated) is raised with its SQLSTATE and
    message, as psycopg raises AdminShutdown, and the connection is broken at once."""
    conn = pgwire.connect(**keywords(pg_url))
    try:
        cur = conn.cursor()
        cur.execute("SELECT pg_backend_pid()")
        row = cur.fetchone()
        assert row is not None
        with psycopg.connect(**keywords(pg_url), autocommit=True) as other:
            timer = threading.Timer(0.3, other.execute, args=("SELECT pg_terminate_backend(%s)", (row[0],)))
            timer.start()
            with pytest.raises(pgwire.OperationalError) as e:
                cur.execute("SELECT pg_sleep(30)")
            timer.join()
        assert e.value.sqlstate == "57P01"
        assert "terminating connection" in str(e.value)
        assert conn.broken and conn.closed
    finally:
        conn.close()


def test_a_huge_announced_length_allocates_only_what_arrives() -> None:
    """A server announcing a 1 GiB DataRow and sending 10 bytes: the client reads in bounded pieces
    (no 1 GiB receive buffer) and fails when the server closes."""
    import tracemalloc

    def script(sock: socket.socket) -> None:
        read_startup(sock)
        sock.sendall(b"R" + struct.pack("!i", (1 << 30) - 1) + b"0123456789")
        sock.shutdown(socket.SHUT_WR)
        time.sleep(2)

    server, kw = _fake(script)
    tracemalloc.start()
    try:
        with pytest.raises(pgwire.OperationalError, match="closed"):
            pgwire.connect(**kw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        server.close()
    assert peak < 16 << 20


def test_shutting_the_socket_down_ends_a_copy_blocked_in_send(pg_url: str) -> None:
    """A server that stops reading mid-COPY (the proxy stalls after CopyInResponse): the client's
    writes block once the socket buffers are full; cut() from another thread ends them at once."""

    def on_reply(kind: bytes, raw: bytes, state: dict[str, Any]) -> str:
        if kind == b"G":
            state["stall_up"] = True
        return "forward"

    proxy, conn = _proxied(pg_url, on_reply)
    try:
        cur = conn.cursor()
        cur.execute("CREATE TEMP TABLE t (a text)")
        blocked_at: list[float] = []

        def cut_when_stalled() -> None:
            time.sleep(0.8)  # by then the buffers are full and write_row sits in sendall
            blocked_at.append(time.monotonic())
            cut(conn, "postgresql")

        timer = threading.Thread(target=cut_when_stalled)
        timer.start()
        rows = 0
        with pytest.raises(pgwire.OperationalError), cur.copy("COPY t (a) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["text"])
            while rows < 2_000_000:  # ~200 MB: far more than any socket buffer
                cp.write_row(("x" * 90,))
                rows += 1
        ended = time.monotonic()
        timer.join()
        assert rows < 2_000_000
        assert ended - blocked_at[0] < 0.5
        assert conn.broken
    finally:
        proxy.close()
        conn.close()


def test_a_scram_iteration_count_beyond_reason_is_refused_not_computed() -> None:
    """A server asking for 2^31-1 PBKDF2 iterations would hold the client in one uninterruptible C
    call for minutes, past any timeout; pgwire refuses it at once (an OperationalError, not
    UnsupportedAuthentication: libpq would compute it, test_pgwire_review.py)."""
    server, kw = _fake(_scram_server("right", iterations=2**31 - 1))
    try:
        start = time.monotonic()
        with pytest.raises(pgwire.OperationalError, match="iterations"):
            pgwire.connect(**kw)
        assert time.monotonic() - start < 1.0
    finally:
        server.close()


def test_cancel_after_the_connection_was_cut_still_ends_the_servers_statement(pg_url: str) -> None:
    """store/dbconn.py's abort shuts the socket down and cancels on another thread, which may run
    after the connection failed and closed: the CancelRequest must still go out (the server's
    address, the backend's pid and key are kept) and end the backend's statement."""
    conn = pgwire.connect(**keywords(pg_url))
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    row = cur.fetchone()
    assert row is not None
    pid = row[0]
    timer, _ = _later(cut, conn, "postgresql")
    with pytest.raises(pgwire.OperationalError):
        cur.execute("SELECT pg_sleep(30)")
    timer.join()
    assert conn.broken and conn.closed
    conn.close()
    with psycopg.connect(**keywords(pg_url), autocommit=True) as other:
        running = "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND query LIKE 'SELECT pg_sleep%%'"
        running += " AND state = 'active'"
        assert other.execute(running, (pid,)).fetchone() == (1,)  # the server still sleeps
        conn.cancel(timeout=2.0)
        for _ in range(100):
            if other.execute(running, (pid,)).fetchone() == (0,):
                break
            time.sleep(0.02)
        assert other.execute(running, (pid,)).fetchone() == (0,)


def test_the_startup_packet_holds_only_what_a_pooler_accepts() -> None:
    """PgBouncer before 1.20 refuses a startup parameter it does not track ("unsupported startup
    parameter"): it tracks client_encoding, DateStyle, TimeZone, standard_conforming_strings and
    application_name. pgwire sends user, database, the caller's application_name and options, and
    client_encoding and DateStyle, which its value parsing needs; IntervalStyle stays the server's
    default (postgres), and an interval in any other style is refused (test_pgwire_types.py)."""
    seen: list[bytes] = []

    def script(sock: socket.socket) -> None:
        seen.append(read_startup(sock))
        sock.sendall(message(b"E", b"SFATAL\0C08P01\0Mstop here\0\0"))

    server, kw = _fake(script, application_name="stellaops-runtime")
    try:
        with pytest.raises(pgwire.OperationalError, match="stop here"):
            pgwire.connect(**kw)
    finally:
        server.close()
    parts = seen[0][4:].split(b"\0")
    sent = dict(zip(parts[0:-2:2], parts[1:-2:2], strict=True))
    assert sent == {
        b"user": b"u",
        b"database": b"d",
        b"application_name": b"stellaops-runtime",
        b"client_encoding": b"UTF8",
        b"DateStyle": b"ISO",
    }
