"""pgwire faults found in review (session 50): each case hung, broke the session or let an error go.

A statement or a reply pgwire did not expect must end in a DB-API error within seconds, with the
connection either usable or ``broken``: never a wait for a reply that will not come (the agent's
flush would hold its connection until the store's abort cuts it), never an exception the store
does not read as a database error (store/errors.py, store/row_refusal.py).
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pgwire_support import (
    AUTH_OK,
    KEY,
    READY,
    FakeServer,
    auth,
    keywords,
    message,
    read_message,
    read_startup,
)

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


def _serve(reply: Callable[[socket.socket], None]) -> tuple[FakeServer, dict[str, Any]]:
    server = FakeServer(reply)
    kw = {
        "host": "127.0.0.1",
        "port": server.port,
        "user": "u",
        "dbname": "d",
        "password": "p",
        "sslmode": "disable",
        "connect_timeout": 3,
    }
    return server, kw


def _startup_then(data: bytes) -> Callable[[socket.socket], None]:
    def script(sock: socket.socket) -> None:
        read_startup(sock)
        sock.sendall(data)
        sock.recv(1)  # held open until the client is done

    return script


def _scram_iterations(count: bytes) -> Callable[[socket.socket], None]:
    def script(sock: socket.socket) -> None:
        read_startup(sock)
        sock.sendall(auth(10, b"SCRAM-SHA-256\0\0"))
        _, first = read_message(sock)
        nonce = first.split(b"r=", 1)[1]
        sock.sendall(auth(11, b"r=" + nonce + b"srv,s=c2FsdA==,i=" + count))
        sock.recv(1)

    return script


@pytest.mark.parametrize(
    "script",
    [
        _startup_then(AUTH_OK + message(b"K", b"\0\0")),  # BackendKeyData cut short
        _startup_then(AUTH_OK + message(b"S", b"TimeZone\0")),  # ParameterStatus without its value
        _startup_then(message(b"E", b"SFATAL\0C28P01")),  # an error field never terminated
        _startup_then(message(b"R", b"\0")),  # an authentication request of one byte
        _scram_iterations("²".encode()),  # a digit to str.isdigit, not to int()
        _scram_iterations(b"9" * 5000),  # past int()'s digit limit
    ],
    ids=["short-key", "parameter-status", "error-fields", "auth-request", "superscript", "5000-digits"],
)
def test_a_malformed_startup_reply_is_an_operational_error(script: Callable[[socket.socket], None]) -> None:
    """The store reads only DB-API errors as "the store is away" (store/errors.py): any other
    exception out of connect is not, and a ValueError reads as a row of ours the store cannot
    convert (store/row_refusal.py ``is_conversion_refusal``), a refusal of the batch's rows."""
    server, kw = _serve(script)
    try:
        with pytest.raises(pgwire.OperationalError) as e:
            pgwire.connect(**kw)
        assert e.value.sqlstate is None
    finally:
        server.close()


def test_a_malformed_copy_in_response_breaks_the_connection() -> None:
    def script(sock: socket.socket) -> None:
        read_startup(sock)
        sock.sendall(AUTH_OK + KEY + READY)
        read_message(sock)  # the COPY statement
        sock.sendall(message(b"G", b"\x01"))  # no column count
        sock.recv(1)

    server, kw = _serve(script)
    try:
        conn = pgwire.connect(**kw)
        conn.autocommit = True
        with pytest.raises(pgwire.OperationalError, match="protocol violation"):
            within(conn, lambda: conn.cursor().copy("COPY t FROM STDIN (FORMAT BINARY)").__enter__())
        assert conn.broken
    finally:
        server.close()


def test_with_connection_raises_a_commit_that_failed(pg_url: str) -> None:
    """``with conn:`` commits at the block's end: a COMMIT the server refuses (a deferred unique
    constraint) must raise as psycopg's does, not be swallowed while the rows are gone."""
    with pgwire.connect(**keywords(pg_url)) as setup:
        setup.execute("CREATE TABLE rw_deferred (a int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
    conn = pgwire.connect(**keywords(pg_url))
    with pytest.raises(pgwire.IntegrityError), conn:
        conn.execute("INSERT INTO rw_deferred VALUES (1), (1)")
    assert conn.closed
    with pgwire.connect(**keywords(pg_url)) as check:
        assert check.execute("SELECT count(*) FROM rw_deferred").fetchone() == (0,)


def test_a_statement_of_up_to_65535_parameters_is_sent_as_libpq_sends_it(conn) -> None:
    """The protocol's parameter count is an unsigned 16-bit word (libpq: at most 65535)."""
    n = 40_000
    sql = "SELECT array_length(ARRAY[" + ",".join(["%s"] * n) + "]::int[], 1)"
    assert conn.execute(sql, list(range(n))).fetchone() == (n,)
    with pytest.raises(pgwire.ProgrammingError, match="65535"):
        conn.execute("SELECT " + ",".join(["%s"] * 65_536), [1] * 65_536)
    assert conn.execute("SELECT 3").fetchone() == (3,)


@pytest.mark.parametrize(
    "sample",
    [
        {"argv": ["printf", "\\u0000"]},  # the six characters \u0000: json.dumps writes \\u0000
        {"path": "C:\\\\u0000x"},  # an escaped backslash pair, then u0000
        {"\\u0000": 1},
    ],
)
def test_copy_stores_jsonb_text_that_merely_spells_a_nul_escape(conn, pg_url: str, sample: Any) -> None:
    """A flush's sample (jsonb) may hold a command line that spells a NUL escape; PostgreSQL stores
    it (the backslash is escaped), as psycopg's COPY does: pgwire took it for a NUL and refused the
    row, which the ledger then quarantined (its counts lost)."""
    conn.execute("CREATE TEMP TABLE rw_j (n int4, sample jsonb)")
    with conn.cursor().copy("COPY rw_j FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(["int4", "jsonb"])
        cp.write_row((1, sample))
    assert conn.execute("SELECT sample FROM rw_j").fetchall() == [(sample,)]


@pytest.mark.parametrize("sample", [{"a": "\0"}, {"\0": 1}, ["x\\\0"]])
def test_copy_still_refuses_a_real_nul_in_jsonb(conn, sample: Any) -> None:
    conn.execute("CREATE TEMP TABLE rw_n (sample jsonb)")
    with (
        pytest.raises(pgwire.DataError, match="u0000"),
        conn.cursor().copy("COPY rw_n FROM STDIN (FORMAT BINARY)") as cp,
    ):
        cp.set_types(["jsonb"])
        cp.write_row((sample,))


def test_cancel_of_a_session_that_got_no_backend_key_sends_nothing() -> None:
    """API.md: a connection that never got BackendKeyData cannot be cancelled; its cancel() is a
    no-op, not a CancelRequest with pid 0 and an empty key opened to the server."""

    def script(sock: socket.socket) -> None:
        read_startup(sock)
        sock.sendall(AUTH_OK + READY)  # no BackendKeyData (a pooler may send none)
        sock.recv(1)

    server, kw = _serve(script)
    try:
        conn = pgwire.connect(**kw)
        conn.cancel(timeout=0.5)
        assert len(server._socks) == 1  # the session's own connection only
        conn.close()
    finally:
        server.close()


def test_an_absurd_scram_iteration_count_is_refused_without_handing_the_store_to_libpq() -> None:
    """2^31-1 PBKDF2 iterations: pgwire refused them, but as UnsupportedAuthentication, and the store
    (store/pg_connect.py) then opens every later connection with psycopg, whose libpq computes the
    count in one uninterruptible call past connect_timeout (measured: 20,000,000 iterations held
    psycopg.connect 10.7 s with connect_timeout=2; 2^31-1 would hold it ~20 minutes of a core, per
    connect). Above MAX_LIBPQ_ITERATIONS it is an OperationalError: the store stays on pgwire and
    reads the server as away; a count between MAX_ITERATIONS and that still goes to psycopg."""
    from stellaops_runtime.pgwire.auth import MAX_ITERATIONS, MAX_LIBPQ_ITERATIONS
    from stellaops_runtime.store.pg_connect import PgOpener

    server, kw = _serve(_scram_iterations(str(2**31 - 1).encode()))
    try:
        opener = PgOpener("review-store")
        with pytest.raises(pgwire.OperationalError, match="iterations") as e:
            opener.open(kw)
        assert not isinstance(e.value, pgwire.UnsupportedAuthentication)
        assert opener.why_psycopg is None
    finally:
        server.close()
    assert MAX_ITERATIONS < MAX_LIBPQ_ITERATIONS <= 10_000_000
    server, kw = _serve(_scram_iterations(str(MAX_ITERATIONS + 1).encode()))
    try:
        with pytest.raises(pgwire.UnsupportedAuthentication, match="iterations"):
            pgwire.connect(**kw)
    finally:
        server.close()


@pytest.mark.parametrize("columns", [0, 2])
def test_a_data_row_of_another_width_than_its_description_is_a_protocol_violation(columns: int) -> None:
    """libpq refuses a DataRow whose field count differs from the RowDescription's; pgwire kept it and
    failed at fetch with a ValueError (zip strict), which store/row_refusal.py reads as a row of ours
    it cannot convert: a read in the ledger's transaction would refuse the batch's rows."""

    def script(sock: socket.socket) -> None:
        read_startup(sock)
        sock.sendall(AUTH_OK + KEY + READY)
        while read_message(sock)[0] != b"S":  # Parse Bind Describe Execute Sync
            pass
        desc = b"\0\x01" + b"a\0" + struct.pack("!ihihih", 0, 0, 25, -1, -1, 0)
        row = struct.pack("!h", columns) + b"".join(struct.pack("!i", 1) + b"x" for _ in range(columns))
        sock.sendall(message(b"1", b"") + message(b"2", b"") + message(b"T", desc) + message(b"D", row))
        sock.sendall(message(b"C", b"SELECT 1\0") + READY)
        sock.recv(1)

    server, kw = _serve(script)
    try:
        conn = pgwire.connect(**kw)
        conn.autocommit = True
        with pytest.raises(pgwire.OperationalError, match="protocol violation"):
            within(conn, lambda: conn.execute("SELECT 'x'").fetchall())
        assert conn.broken
    finally:
        server.close()


def test_verify_full_without_a_host_name_is_refused_as_libpq_refuses_it(tmp_path: Path, monkeypatch) -> None:
    """hostaddr alone with sslmode=verify-full: there is no name to check the certificate against.
    libpq refuses ('host name must be specified for a verified SSL connection'); pgwire raised the
    ssl module's ValueError (check_hostname requires server_hostname), not a DB-API error."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "review CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder(subject_name=name, issuer_name=name, public_key=key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    root = tmp_path / "root.crt"
    root.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def script(sock: socket.socket) -> None:
        sock.recv(8)  # the SSLRequest
        sock.sendall(b"S")
        sock.recv(1)

    monkeypatch.delenv("PGHOST", raising=False)
    server = FakeServer(script)
    kw = {"hostaddr": "127.0.0.1", "port": server.port, "user": "u", "dbname": "d"}
    try:
        with pytest.raises(pgwire.OperationalError, match="host name"):
            pgwire.connect(**kw, sslmode="verify-full", sslrootcert=str(root), connect_timeout=3)
    finally:
        server.close()


@pytest.mark.parametrize("host", ["db..example.com", "a" * 64 + ".example.com"])
def test_a_host_name_idna_cannot_encode_is_a_connection_error(host: str) -> None:
    """A store URL with an empty or over-long label (a typo): getaddrinfo's IDNA encoding raises
    UnicodeError, a ValueError, which pgwire let out of connect (libpq: "could not translate host
    name", psycopg's OperationalError); the store then took it for a row it cannot convert."""
    with pytest.raises(pgwire.OperationalError, match="could not translate host name"):
        pgwire.connect(host=host, port=5432, user="u", dbname="d", sslmode="disable", connect_timeout=3)
