"""A pgwire connection: connect per sslmode, transactions as psycopg 3 has them, cancel, close.

Not autocommit by default: the first statement opens a transaction with BEGIN (sent in the same
write as the statement), :meth:`Connection.commit` and :meth:`Connection.rollback` end it. A
failed statement leaves the transaction aborted until rollback; COMMIT of an aborted transaction
(the server answers ROLLBACK) raises. A connection lost while any reply, COMMIT's included, is
awaited raises :class:`OperationalError` and is then ``broken``: the outcome is unknown.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

from stellaops_runtime.pgwire import messages as m
from stellaops_runtime.pgwire.errors import (
    DatabaseError,
    Error,
    InterfaceError,
    InternalError,
    OperationalError,
    from_fields,
)
from stellaops_runtime.pgwire.params import Target, resolve
from stellaops_runtime.pgwire.startup import Session, handshake
from stellaops_runtime.pgwire.transport import Deadline, Transport, open_socket, start_tls

_ORDER = {
    "disable": (False,),
    "allow": (False, True),
    "prefer": (True, False),
    "require": (True,),
    "verify-ca": (True,),
    "verify-full": (True,),
}


def connect(**kw: Any) -> Connection:
    """A new connection with libpq's keywords (API.md); raises OperationalError when it fails."""
    t = resolve(kw)
    deadline = Deadline(t.connect_timeout)
    attempts = (False,) if t.unix else _ORDER[t.sslmode]
    last: Error | None = None
    for i, tls in enumerate(attempts):
        tr = open_socket(t, deadline)
        try:
            if tls and not start_tls(tr, t):
                if last is not None:  # allow: the plain attempt's refusal says more than this 'N'
                    raise last
                if t.sslmode != "prefer":
                    raise OperationalError("server does not support SSL, but SSL was required")
                tls = False
            session = handshake(tr, t, deadline)
        except Error as e:
            tr.close()
            last = e
            retry = i + 1 < len(attempts) and (tls or t.sslmode == "allow") and "timeout" not in str(e)
            if retry:
                continue
            raise
        except BaseException:
            tr.close()
            raise
        tr.settimeout(None)
        return Connection(tr, t, session)
    assert last is not None
    raise last


class Connection:
    """One server session, used by one thread at a time (``fileno`` and ``cancel`` from any)."""

    def __init__(self, tr: Transport, target: Target, session: Session) -> None:
        self._tr = tr
        self._target = target
        self._pid = session.pid
        self._key = session.key
        self.parameters = session.parameters
        self._status = session.status  # ReadyForQuery's: I idle, T in a transaction, E failed one
        self.autocommit = False
        self.closed = False
        self.broken = False
        self._fd = tr.sock.fileno()

    # -- DB-API ----------------------------------------------------------------------------------

    def cursor(self) -> Any:
        from stellaops_runtime.pgwire.cursor import Cursor

        self._check()
        return Cursor(self)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        cur = self.cursor()
        cur.execute(sql, params)
        return cur

    def commit(self) -> None:
        self._check()
        if self._status == b"I":
            return
        failed = self._status == b"E"
        tag = self._simple("COMMIT")
        if failed or tag == "ROLLBACK":
            raise InternalError(
                "the transaction was aborted by an earlier error: COMMIT rolled it back",
                sqlstate="25P02",
            )

    def rollback(self) -> None:
        self._check()
        if self._status == b"I":
            return
        self._simple("ROLLBACK")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.broken:
            with contextlib.suppress(OSError, Error):
                self._tr.settimeout(1.0)
                self._tr.send(m.TERMINATE)
        self._tr.close()

    def fileno(self) -> int:
        """The socket's descriptor; raises once closed (the number may already name another file)."""
        if self.closed:
            raise OperationalError("the connection is closed")
        return self._fd

    def cancel(self, timeout: float = 5.0) -> None:
        """Ask the server to cancel what this session runs (a CancelRequest on a new connection);
        a session the server gave no BackendKeyData cannot be cancelled: nothing is sent."""
        if not self._key:
            return
        with contextlib.suppress(Exception):
            end = time.monotonic() + max(timeout, 0.0)
            family = self._tr.family
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(max(end - time.monotonic(), 0.001))
                sock.connect(self._tr.address)
                sock.sendall(m.cancel_request(self._pid, self._key))
                while True:  # the server closes the connection when it has read the request
                    sock.settimeout(max(end - time.monotonic(), 0.001))
                    if not sock.recv(64):
                        break
            finally:
                sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, kind: object, value: object, tb: object) -> None:
        """Commit when the block ended normally (a failed COMMIT raises, as psycopg's does: the
        block's work is lost), roll back when it raised (keeping its exception); then close."""
        try:
            if self.closed:
                return
            if kind is None:
                self.commit()
            else:
                with contextlib.suppress(Error):
                    self.rollback()
        finally:
            self.close()

    # -- protocol --------------------------------------------------------------------------------

    @property
    def status(self) -> bytes:
        return self._status

    def _check(self) -> None:
        if self.closed:
            raise OperationalError("the connection is lost" if self.broken else "the connection is closed")

    def _begin_prefix(self) -> bytes:
        """The BEGIN to send before a statement, when one must open a transaction."""
        return m.query("BEGIN") if not self.autocommit and self._status == b"I" else b""

    def _send(self, data: bytes) -> None:
        try:
            self._tr.send(data)
        except OperationalError:
            self._lost()
            raise

    def _read(self) -> tuple[bytes, bytes]:
        try:
            return self._tr.read()
        except OperationalError:
            self._lost()
            raise

    def _lost(self) -> None:
        self.broken = True
        self.closed = True
        self._tr.close()

    def _violation(self, what: str) -> OperationalError:
        self._lost()
        return OperationalError(f"protocol violation: {what}")

    def _simple(self, sql: str) -> str:
        """Run one statement with the simple protocol; its command tag."""
        self._send(m.query(sql))
        tag = ""
        error: DatabaseError | None = None
        while True:
            kind, body = self._read()
            if kind == b"C":
                tag = m.command_tag(body)[0]
            elif kind == b"E":
                error = self._error(body, error)
            elif kind == b"Z":
                self._status = body[:1]
                break
            elif not self._async_message(kind, body):
                raise self._violation(f"unexpected message {kind!r}")
        if error is not None:
            raise error
        return tag

    def _async_message(self, kind: bytes, body: bytes) -> bool:
        """Notices, notifications and parameter changes, which may come at any time."""
        if kind == b"S":
            try:
                name, value = m.parameter_status(body)
            except m.ProtocolViolation as e:
                raise self._violation(str(e)) from None
            self.parameters[name] = value
            if name == "client_encoding" and value.upper() not in ("UTF8", "UNICODE"):
                self._lost()  # every later text would be decoded as UTF-8, wrongly
                raise OperationalError(
                    f"the session's client_encoding became {value}: pgwire speaks UTF8 only"
                )
            return True
        return kind in (b"N", b"A")

    def _error(self, body: bytes, error: DatabaseError | None) -> DatabaseError | None:
        """An ErrorResponse: the first error of the exchange; a FATAL or PANIC one (the server
        ends the session: 57P01 terminated, 57P02 crash shutdown...) is raised at once, with the
        server's SQLSTATE and message, and the connection is broken."""
        try:
            fields = m.fields(body)
        except m.ProtocolViolation as e:
            raise self._violation(str(e)) from None
        new = from_fields(fields)
        if fields.get("V", fields.get("S")) in ("FATAL", "PANIC"):
            self._lost()
            raise new
        return error or new

    def _finish(self, kind: bytes, body: bytes, error: DatabaseError | None) -> DatabaseError | None:
        """Handle the messages every exchange shares; returns the first error seen."""
        if kind == b"E":
            return self._error(body, error)
        if not self._async_message(kind, body):
            raise self._violation(f"unexpected message {kind!r}")
        return error


def info_target(conn: Connection) -> Mapping[str, Any]:
    """The resolved settings of a connection (tests and diagnostics)."""
    t = conn._target
    return {
        "host": t.host,
        "port": t.port,
        "dbname": t.dbname,
        "user": t.user,
        "sslmode": t.sslmode,
        "tls": conn._tr.tls,
    }


__all__ = ["Connection", "InterfaceError", "connect", "info_target"]
