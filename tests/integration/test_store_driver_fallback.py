"""Where the agent's own PostgreSQL client cannot connect, its store uses psycopg, and says why.

pgwire speaks trust, password, MD5 and SCRAM-SHA-256; a server that asks for another
authentication method (GSSAPI, SSPI) makes ``pgwire.connect`` raise
``UnsupportedAuthentication``: store/pg_connect.py then opens that connection, and every later one
of the store, with psycopg (libpq speaks them), and logs why once. A loopback proxy stands for
such a server: the first connection is asked for GSSAPI, later ones are forwarded to the test
cluster (which trusts them), so psycopg's connections work and pgwire's first attempt cannot.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Iterator

import pytest
from pg import PgServer

from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.pg_connect import is_pgwire

pytestmark = pytest.mark.postgres

SSL_REQUEST = 80877103
AUTH_GSS = 7


def _read_exact(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = s.recv(n - len(data))
        if not part:
            raise ConnectionError("closed")
        data += part
    return data


def _ask_for_gss(client: socket.socket) -> None:
    """Read the startup packet (after an SSLRequest, refused), answer AuthenticationGSS, hang up."""
    with contextlib.suppress(OSError, ConnectionError):
        while True:
            (n,) = struct.unpack("!I", _read_exact(client, 4))
            body = _read_exact(client, n - 4)
            if struct.unpack("!I", body[:4])[0] == SSL_REQUEST:
                client.sendall(b"N")
                continue
            client.sendall(b"R" + struct.pack("!II", 8, AUTH_GSS))
            break
    client.close()


def _pipe(a: socket.socket, b: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := a.recv(65536):
            b.sendall(data)
    for s in (a, b):
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


class GssFirst:
    """A proxy whose first connection is asked for GSSAPI; the others reach ``port``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.accepted = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                self.accepted += 1
                self.socks.append(client)
                if self.accepted == 1:
                    threading.Thread(target=_ask_for_gss, args=(client,), daemon=True).start()
                    continue
                server = socket.create_connection(("127.0.0.1", self.port))
                self.socks.append(server)
                for a, b in ((client, server), (server, client)):
                    threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        for s in (self.listener, *self.socks):
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture
def proxy(pg: PgServer) -> Iterator[GssFirst]:
    p = GssFirst(pg.port)
    yield p
    p.close()


def test_a_server_asking_for_gssapi_makes_the_store_use_psycopg_for_good(
    pg: PgServer, pg_url: str, proxy: GssFirst, caplog: pytest.LogCaptureFixture
) -> None:
    url = pg_url.replace(f":{pg.port}/", f":{proxy.listener.getsockname()[1]}/")
    with caplog.at_level(logging.INFO, logger="stellaops_runtime.store.pg_connect"):
        store = open_store(url, migrate=False)
        try:
            for _ in range(2):  # a new connection each time: psycopg's, without asking pgwire again
                with store.db.begin() as conn:
                    assert conn.execute("SELECT 6 * 7").scalar() == 42
                    assert not is_pgwire(conn.raw)
                store.db.dispose()
        finally:
            store.close()
    said = [r.getMessage() for r in caplog.records if r.name == "stellaops_runtime.store.pg_connect"]
    assert len(said) == 1 and "authentication" in said[0] and "psycopg" in said[0], said
    assert proxy.accepted == 3  # pgwire's one attempt, then psycopg's two connections


def test_the_reason_is_said_once_though_the_store_is_opened_again(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The agent opens its store anew after a failed open (agent/runner.py, every 5 s while the store
    # is down at start-up): each open is a new Database, and the same reason is logged once.
    url = f"{pg_url}?target_session_attrs=read-write"
    with caplog.at_level(logging.INFO, logger="stellaops_runtime.store.pg_connect"):
        for _ in range(3):
            store = open_store(url, migrate=False)
            try:
                with store.db.begin() as conn:
                    assert not is_pgwire(conn.raw)
            finally:
                store.close()
    said = [r.getMessage() for r in caplog.records if r.name == "stellaops_runtime.store.pg_connect"]
    assert len(said) == 1 and "target_session_attrs=read-write" in said[0], said
