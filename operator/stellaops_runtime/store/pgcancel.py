"""Cancel an abandoned PostgreSQL statement on the server, not only at our end of the socket.

:meth:`stellaops_runtime.store.dbconn.Database.abort` shuts a hung write's
socket down so the agent's call returns at once. The server does not notice
a closed client while it runs a statement (or waits for a lock), so the
abandoned statement ran on until ``statement_timeout``: holding the batch's
advisory lock (store/ledger.py), it made every retry of the batch wait for
it, and each retry abandoned at the flush deadline left one more such
statement behind. A cancel request (on its own connection: pgwire's
``Connection.cancel``, or libpq's driven without blocking calls for a psycopg
connection) ends it at once. It runs on a daemon thread: the
caller (the agent's event loop) never waits for it, and a server that does
not answer costs one parked thread for at most a few seconds.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from typing import Any

from stellaops_runtime.store.pg_connect import is_pgwire

log = logging.getLogger(__name__)


def cancel_in_background(raw: Any, *, timeout: float = 5.0) -> None:
    """Ask the server to cancel what the connection ``raw`` (pgwire's or psycopg's) runs; never raises.

    pgwire: its ``cancel`` (which keeps the server's address and the backend's key after the
    connection is closed or cut) on the thread. psycopg: the cancel handle is taken here, before
    the caller closes the connection; only with libpq >= 17 (a cancel connection driven without
    blocking: the older blocking call may hold the interpreter lock for its whole connect, which
    froze every thread of the agent for ``connect_timeout``); without it the server's
    ``statement_timeout`` ends the statement.
    """
    if is_pgwire(raw):
        threading.Thread(target=_pgwire_cancel, args=(raw, timeout), name="store-cancel", daemon=True).start()
        return
    try:
        pgconn = raw.pgconn
        if not hasattr(pgconn, "cancel_conn"):
            return
        handle = pgconn.cancel_conn()
    except Exception as e:  # closed already, or a libpq without cancel connections
        log.debug("no cancel request for an abandoned connection: %r", e)
        return
    threading.Thread(target=_send, args=(handle, timeout), name="store-cancel", daemon=True).start()


def _pgwire_cancel(raw: Any, timeout: float) -> None:
    try:
        raw.cancel(timeout)  # never raises, nor blocks past timeout (pgwire's contract): guarded anyway
    except Exception as e:
        log.debug("cancel request for an abandoned statement failed: %r", e)


def _send(handle: Any, timeout: float) -> None:
    """Drive the cancel connection with non-blocking calls, waiting on its socket in ``select``."""
    from psycopg.pq import PollingStatus

    deadline = time.monotonic() + timeout
    try:
        handle.start()
        status = PollingStatus.WRITING
        while status not in (PollingStatus.OK, PollingStatus.FAILED):
            left = deadline - time.monotonic()
            if left <= 0:
                log.debug("cancel request for an abandoned statement timed out")
                return
            sock = handle.socket
            if status == PollingStatus.READING:
                select.select([sock], [], [], left)
            else:
                select.select([], [sock], [], left)
            status = handle.poll()
        if status == PollingStatus.FAILED:
            log.debug("cancel request for an abandoned statement failed: %s", handle.get_error_message())
    except Exception as e:  # the server is gone or does not answer: its statement_timeout applies
        log.debug("cancel request for an abandoned statement failed: %r", e)
    finally:
        with contextlib.suppress(Exception):
            handle.finish()
