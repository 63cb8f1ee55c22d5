"""Helpers for the pgwire tests: a test database's URL as pgwire/psycopg keywords."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def keywords(url: str, **extra: Any) -> dict[str, Any]:
    """libpq keywords for a tests/pg.py URL (``postgresql+psycopg://user@host:port/db``)."""
    u = urlsplit(url)
    kw: dict[str, Any] = {
        "host": u.hostname,
        "port": u.port,
        "user": u.username,
        "dbname": u.path.lstrip("/"),
        "sslmode": "disable",
        "connect_timeout": 10,
    }
    if u.password:
        kw["password"] = u.password
    kw.update(extra)
    return kw


class FakeServer:
    """A loopback server that answers each connection with ``script(sock)`` on its own thread.

    The script reads the startup packet with :func:`read_startup` and writes whatever bytes the
    test wants (garbage lengths, unknown messages, a lying SCRAM exchange); the sockets are closed
    when the server stops.
    """

    def __init__(self, script: Any) -> None:
        import socket
        import threading

        self._script = script
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._socks: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import threading

        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self._socks.append(sock)
            threading.Thread(target=self._run, args=(sock,), daemon=True).start()

    def _run(self, sock: Any) -> None:
        import contextlib

        with contextlib.suppress(OSError):
            self._script(sock)

    def close(self) -> None:
        import contextlib

        self._stop.set()
        self._listener.close()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.close()


def recv_exact(sock: Any, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise OSError("peer closed")
        buf += chunk
    return buf


def read_startup(sock: Any) -> bytes:
    """The client's startup packet (answering an SSLRequest with 'N' first)."""
    import struct

    while True:
        (length,) = struct.unpack("!i", recv_exact(sock, 4))
        body = recv_exact(sock, length - 4)
        if body[:4] == struct.pack("!i", 80877103):
            sock.sendall(b"N")
            continue
        return body


def read_message(sock: Any) -> tuple[bytes, bytes]:
    import struct

    kind = recv_exact(sock, 1)
    (length,) = struct.unpack("!i", recv_exact(sock, 4))
    return kind, recv_exact(sock, length - 4)


def message(kind: bytes, body: bytes) -> bytes:
    import struct

    return kind + struct.pack("!i", len(body) + 4) + body


def auth(code: int, data: bytes = b"") -> bytes:
    import struct

    return message(b"R", struct.pack("!i", code) + data)


READY = message(b"Z", b"I")
AUTH_OK = auth(0)
KEY = message(b"K", b"\0\0\0\x07\0\0\0\x09")


class Proxy:
    """A loopback TCP proxy in front of a real server that can misbehave on the server's replies.

    ``on_reply(kind, raw, state)`` is asked for every server message (after startup): it returns
    "forward", "drop" (swallow it and every later one, then cut the connection), "hang" (forward
    half of it, then forward nothing more, keeping the connection open) or "cut" (forward half of
    it, then close). ``state['commit']`` is True once the client sent a COMMIT; setting
    ``state['stall_up']`` makes the proxy stop reading what the client sends.
    """

    def __init__(self, port: int, on_reply: Any) -> None:
        import socket
        import threading

        self._target = port
        self._on_reply = on_reply
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._socks: list[Any] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self._target))
            self._socks += [client, server]
            state: dict[str, Any] = {"commit": False}
            threading.Thread(target=self._up, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, state), daemon=True).start()

    def _up(self, client: Any, server: Any, state: dict[str, Any]) -> None:
        import contextlib
        import time

        with contextlib.suppress(OSError):
            server.sendall(read_startup_raw(client))
            while True:
                kind, body = read_message(client)
                while state.get("stall_up"):  # read nothing more from the client: its sends block
                    time.sleep(0.05)
                if kind == b"Q" and body.rstrip(b"\0").strip().upper() == b"COMMIT":
                    state["commit"] = True
                server.sendall(message(kind, body))

    def _down(self, server: Any, client: Any, state: dict[str, Any]) -> None:
        import contextlib
        import socket

        with contextlib.suppress(OSError):
            while True:
                kind, body = read_message(server)
                raw = message(kind, body)
                action = self._on_reply(kind, raw, state)
                if action == "forward":
                    client.sendall(raw)
                    continue
                if action in ("hang", "cut"):
                    client.sendall(raw[: len(raw) // 2])
                if action == "hang":
                    state["hanging"] = True
                    return
                for s in (client, server):  # shutdown first: another thread is blocked reading them
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                return

    def close(self) -> None:
        import contextlib
        import socket

        self._listener.close()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()


def read_startup_raw(sock: Any) -> bytes:
    """The client's startup packet, raw (SSLRequest answered 'N' here, not forwarded)."""
    import struct

    body = read_startup(sock)
    return struct.pack("!i", len(body) + 4) + body
