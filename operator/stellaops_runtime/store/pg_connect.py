"""Which client opens the agent's PostgreSQL connections: its own (pgwire) or psycopg.

Issue 13: psycopg, the libpq it bundles and libpq's OpenSSL are ~10 MB of the idle agent on
PostgreSQL, which uses a small part of them (a few statements, binary COPY, commits).
:mod:`stellaops_runtime.pgwire` implements that part in pure Python. It speaks the connection
settings most stores use; for any other (``pgwire.unsupported`` names the keyword or environment
variable), and for good once a server asked for an authentication method pgwire does not speak,
a store's connections are psycopg's, as before, and the log says once at info why (once a process
for each store and reason).
store/dbconn.py holds either driver's connections behind the same code (same DB-API subset).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from stellaops_runtime.contracts.redact import redact

log = logging.getLogger(__name__)

PGWIRE_MODULE = "stellaops_runtime.pgwire"
# (store, reason) already logged in this process: an agent opens its store anew after each failed
# open (every few seconds while the store is down at start-up); the reason is said once.
_SAID: set[tuple[str, str]] = set()
_SAID_LOCK = threading.Lock()


def is_pgwire(raw: Any) -> bool:
    """Whether the DB-API connection ``raw`` is pgwire's (not psycopg's, not sqlite3's)."""
    return type(raw).__module__.startswith(PGWIRE_MODULE)


def refuse_aborted_commit(raw: Any) -> None:
    """Raise, as pgwire's ``commit()`` does (InternalError 25P02), before the COMMIT of a psycopg
    transaction an error aborted: psycopg 3.3's commit returns without a word there (the server
    rolled the transaction back), so a block that caught an error inside ``Database.begin()`` looked
    committed on the psycopg fallback and its writes were silently lost
    (tests/integration/test_store_commit_aborted.py)."""
    if is_pgwire(raw):
        return  # its commit raises itself
    from psycopg import errors, pq

    if raw.info.transaction_status == pq.TransactionStatus.INERROR:
        raise errors.InFailedSqlTransaction(
            "current transaction is aborted (an error inside it): not committed, rolled back"
        )


class PgOpener:
    """Opens one store's PostgreSQL connections, with pgwire unless it cannot (module docstring)."""

    def __init__(self, label: str) -> None:
        self.label = label  # the store's URL, safe to log
        self.why_psycopg: str | None = None  # set once psycopg is chosen; then for good
        self._lock = threading.Lock()

    def open(self, params: Mapping[str, Any]) -> Any:
        """A new connection with libpq keywords ``params`` (store/dbconn.py's)."""
        if self.why_psycopg is None:
            from stellaops_runtime import pgwire

            why = pgwire.unsupported(params, os.environ)
            if why is None:
                try:
                    return pgwire.connect(**params)
                except pgwire.UnsupportedAuthentication as e:
                    why = f"the server asked for an authentication method it does not speak: {e}"
            self._psycopg(why)
        from stellaops_runtime.store import psycopg_import

        psycopg = psycopg_import.load()  # without importlib.metadata (store/psycopg_import.py)
        return psycopg.connect(**params)

    def _psycopg(self, why: str) -> None:
        with self._lock:
            self.why_psycopg = why
        with _SAID_LOCK:
            first = (self.label, why) not in _SAID
            _SAID.add((self.label, why))
        if first:
            log.info(
                "store %s: PostgreSQL connections opened with psycopg (libpq, ~10 MB more), "
                "not the agent's own client: %s",
                self.label,
                redact(why),
            )
