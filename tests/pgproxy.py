"""A small TCP proxy on loopback that fails the way networks fail, in front of PostgreSQL.

Tests put it between the agent (a subprocess) and the real test cluster:

- ``drop_commit_acks = n``: on a connection that has written to
  ``flush_ledger``, the next COMMIT is forwarded to the server, the server's
  reply is swallowed and the connection is cut, ``n`` times. The server
  committed; the client saw an error. This is the lost acknowledgement that
  made a retried flush count twice.
- ``blackhole()``: every connection (open or new) stays open and forwards
  nothing in either direction, the way a dead route or a stuck middlebox
  behaves: no RST, no FIN, TCP keeps acknowledging. ``heal()`` forwards again
  for new connections and closes the black-holed ones (or, ``keep_silent``, leaves them silent).
- ``reset()``: every connection (open or new) is reset (RST), the way a server that restarts or a
  host that crashed is met: the client's call fails at once, its connect too. ``heal()`` ends it.

It parses just enough of the PostgreSQL wire protocol (startup packets, then
type byte + length framing from the client) to spot those statements. Test
clusters run without TLS, so the client's SSLRequest is answered 'N' by the
server and the stream stays readable.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from dataclasses import dataclass, field

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


@dataclass
class _Conn:
    client: socket.socket
    server: socket.socket
    armed: bool = False  # inserted into flush_ledger in this transaction
    drop_replies: bool = False
    blackholed: bool = False
    closed: threading.Event = field(default_factory=threading.Event)

    def reset(self) -> None:
        """Close the client's side with an RST (SO_LINGER 0), then the server's."""
        with contextlib.suppress(OSError):
            self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.client.close()
        self.close()

    def close(self) -> None:
        self.closed.set()
        for s in (self.client, self.server):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()


class PgProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.drop_commit_acks = 0
        self.accepted = 0  # client connections accepted (a store connection each)
        self.commit_acks_dropped = 0
        self.ledger_commits_seen = 0
        self._blackhole = False
        self._reset = False
        self._conns: list[_Conn] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, name="pgproxy-accept", daemon=True).start()

    def url(self, url: str) -> str:
        """``url`` (pointing at the target) rewritten to go through the proxy, TLS off."""
        host, port = self.target
        out = url.replace(f"{host}:{port}", f"127.0.0.1:{self.port}")
        return out + ("&" if "?" in out else "?") + "sslmode=disable"

    def blackhole(self) -> None:
        with self._lock:
            self._blackhole = True
            for c in self._conns:
                c.blackholed = True

    def reset(self) -> None:
        """Reset the open connections and every new one (RST: the client's read fails at once)."""
        with self._lock:
            self._reset = True
            conns = list(self._conns)
        for c in conns:
            c.reset()

    def heal(self, *, keep_silent: bool = False) -> None:
        """Forward new connections again; ``keep_silent``: the black-holed ones stay open and silent
        (a middlebox that keeps acknowledging: a client's call on one waits until the client cuts it)."""
        with self._lock:
            self._blackhole = self._reset = False
            dead = [c for c in self._conns if c.blackholed]
        for c in [] if keep_silent else dead:
            c.close()

    def silent(self) -> list[threading.Event]:
        """The black-holed connections still open, each as its ``closed`` event (set once either end
        cut it: a client that shuts its own socket down closes it here too)."""
        with self._lock:
            return [c.closed for c in self._conns if c.blackholed and not c.closed.is_set()]

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            c.close()

    # -- plumbing -------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            with self._lock:
                blackholed, reset = self._blackhole, self._reset
            if reset:  # accepted, then reset before a byte is answered
                _Conn(client, socket.socket()).reset()
                continue
            if blackholed:  # accept, then say nothing: the client's connect_timeout must fire
                conn = _Conn(client, socket.socket(), blackholed=True)
                with self._lock:
                    self._conns.append(conn)
                threading.Thread(target=self._sink, args=(conn,), daemon=True).start()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            conn = _Conn(client, server)
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._client_to_server, args=(conn,), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(conn,), daemon=True).start()

    def _sink(self, conn: _Conn) -> None:
        """Read and discard what a black-holed client sends, until closed."""
        while not conn.closed.is_set():
            try:
                r, _, _ = select.select([conn.client], [], [], 0.2)
                if r and not conn.client.recv(65536):
                    break
            except (OSError, ValueError):  # closed meanwhile (ValueError: select() on fd -1)
                break
        conn.close()

    def _client_to_server(self, conn: _Conn) -> None:
        buf = b""
        startup = True
        try:
            while not conn.closed.is_set():
                r, _, _ = select.select([conn.client], [], [], 0.2)
                if not r:
                    continue
                data = conn.client.recv(65536)
                if not data:
                    break
                if conn.blackholed:
                    continue
                buf += data
                while True:  # inspect complete messages, forward them
                    if startup:
                        if len(buf) < 8:
                            break
                        (length,) = struct.unpack("!I", buf[:4])
                        if len(buf) < length:
                            break
                        (code,) = struct.unpack("!I", buf[4:8])
                        msg, buf = buf[:length], buf[length:]
                        if code not in (SSL_REQUEST, GSSENC_REQUEST):
                            startup = False
                    else:
                        if len(buf) < 5:
                            break
                        (length,) = struct.unpack("!I", buf[1:5])
                        if len(buf) < 1 + length:
                            break
                        msg, buf = buf[: 1 + length], buf[1 + length :]
                        self._inspect(conn, msg)
                    conn.server.sendall(msg)
        except (OSError, ValueError):  # ValueError: select() on a socket the other pump just closed
            pass
        finally:
            conn.close()

    def _inspect(self, conn: _Conn, msg: bytes) -> None:
        kind, body = msg[:1], msg[5:]
        if b"INSERT INTO signals.flush_ledger" in body:
            conn.armed = True
        is_commit = (kind == b"Q" and body.lstrip().upper().startswith(b"COMMIT")) or (
            kind == b"P" and b"\x00COMMIT\x00" in body.upper()
        )
        if is_commit and conn.armed:
            conn.armed = False
            with self._lock:
                self.ledger_commits_seen += 1
                if self.drop_commit_acks > 0:
                    self.drop_commit_acks -= 1
                    conn.drop_replies = True

    def _server_to_client(self, conn: _Conn) -> None:
        try:
            while not conn.closed.is_set():
                r, _, _ = select.select([conn.server], [], [], 0.2)
                if not r:
                    continue
                data = conn.server.recv(65536)
                if not data:
                    break
                if conn.blackholed:
                    continue
                if conn.drop_replies:  # the server answered the COMMIT: swallow it and cut
                    with self._lock:
                        self.commit_acks_dropped += 1
                    break
                conn.client.sendall(data)
        except (OSError, ValueError):  # ValueError: select() on a socket the other pump just closed
            pass
        finally:
            conn.close()
