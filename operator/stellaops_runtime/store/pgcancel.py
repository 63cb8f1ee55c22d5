"""Cancel an abandoned PostgreSQL statement on the server, not only at our end of the socket.

:meth:`stellaops_runtime.store.dbconn.Database.abort` shuts a hung write's
socket down so the agent's call returns at once. The server does not notice
a closed client while it runs a statement (or waits for a lock), so the
abandoned statement ran on until ``statement_timeout``: holding the batch's
advisory lock (store/ledger.py), it made every retry of the batch wait for
it, and each retry abandoned at the flush deadline left one more such
statement behind. A cancel request (libpq's, on its own connection, with the
original connection's ``connect_timeout``) ends it at once. It runs on a
daemon thread: the caller (the agent's event loop) never waits for it, and a
server that does not answer costs one parked thread until the timeout.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

log = logging.getLogger(__name__)


def cancel_in_background(raw: Any) -> None:
    """Ask the server to cancel what the psycopg connection ``raw`` runs; never raises.

    The cancel handle is taken here, before the caller closes the connection.
    """
    try:
        pgconn = raw.pgconn
        handle = pgconn.cancel_conn() if hasattr(pgconn, "cancel_conn") else pgconn.get_cancel()
    except Exception as e:  # closed already, or a libpq without cancel: the statement timeout applies
        log.debug("no cancel request for an abandoned connection: %r", e)
        return
    threading.Thread(target=_send, args=(handle,), name="store-cancel", daemon=True).start()


def _send(handle: Any) -> None:
    try:
        if hasattr(handle, "blocking"):  # libpq >= 17: PGcancelConn, bounded by connect_timeout
            try:
                handle.blocking()
            finally:
                with contextlib.suppress(Exception):
                    handle.finish()
        else:
            handle.cancel()
    except Exception as e:  # the server is gone or does not answer: its statement_timeout applies
        log.debug("cancel request for an abandoned statement failed: %r", e)
