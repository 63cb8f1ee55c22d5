"""pgwire: the agent's own blocking PostgreSQL client (frontend/backend protocol 3.0).

The agent only writes to its store (a few statements, binary COPY, commits) and checks the schema
version; psycopg with the libpq and OpenSSL it loads cost ~24 MB of the idle agent's memory
(issue 13), this ~1 MB. It implements the subset of psycopg 3's API that store/dbconn.py uses
(/work/briefs API contract, docs/architecture.md "The agent's PostgreSQL client"): ``connect``
with libpq's keywords, cursors with ``%s`` parameters, binary COPY, transactions, ``cancel``.
It imports no psycopg, no asyncio, and ``ssl`` only when a TLS handshake is made.
:func:`unsupported` names a configuration it does not speak, for which the caller uses psycopg.
"""

from __future__ import annotations

from stellaops_runtime.pgwire.connection import Connection, connect
from stellaops_runtime.pgwire.cursor import Cursor
from stellaops_runtime.pgwire.errors import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    UnsupportedAuthentication,
)
from stellaops_runtime.pgwire.params import unsupported
from stellaops_runtime.pgwire.values import Jsonb

__all__ = [
    "Connection",
    "Cursor",
    "DataError",
    "DatabaseError",
    "Error",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "Jsonb",
    "NotSupportedError",
    "OperationalError",
    "ProgrammingError",
    "UnsupportedAuthentication",
    "connect",
    "unsupported",
]
