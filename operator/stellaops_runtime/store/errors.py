"""The store's errors, and how a database error is classified, without importing SQLAlchemy.

The agent writes through plain DB-API connections (:mod:`stellaops_runtime.store.dbconn`)
while the readers (queries, CLI, evidence, witness) use SQLAlchemy; both raise
and classify errors here, so "down, retry later" means the same on either
path. SQLAlchemy's, sqlite3's, psycopg's and the agent's own PostgreSQL client's
(:mod:`stellaops_runtime.pgwire`) exception classes are consulted only
when that library is already loaded (an error cannot come from a library nobody
imported; nor while another thread is still importing it, see :func:`loaded_classes`): a
node's agent on PostgreSQL does not import sqlite3, nor map SQLite's library (~0.9 MB of its
idle memory, issue 13), unless package attribution reads an image's rpm database
(attribution/osdb.py imports it only then).
"""

from __future__ import annotations

import sys

from stellaops_runtime.contracts.redact import redact


class StoreError(Exception):
    """The store could not do what was asked; the message says which store and why."""


class StoreUnavailable(StoreError):
    """The store is down or unreachable; the same write may be retried later."""


class StoreNotInitialized(StoreError):
    """The database has no hot-symbol tables (never migrated)."""


class StoreConfigError(StoreError):
    """The store's configuration is wrong (e.g. a SQLite directory that does not exist).

    Permanent: retrying cannot help, the configuration must change.
    """


def loaded_classes(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """``module``'s exception classes ``names``, or none while it is not loaded (nothing it defines
    can have been raised), nor while another thread is still importing it: ``sys.modules`` holds a
    module from the start of its import, before its classes exist (a PostgreSQL agent imports
    sqlite3 on the pipeline thread when attribution/osdb.py first reads an rpm database, while a
    store write may fail and be classified on its own thread)."""
    found = sys.modules.get(module)
    classes = tuple(getattr(found, name, None) for name in names)
    if found is None or not all(isinstance(c, type) and issubclass(c, BaseException) for c in classes):
        return ()
    return classes  # type: ignore[return-value]


# The DB-API drivers whose errors the store classifies: an agent on PostgreSQL holds pgwire's
# connections (store/pg_connect.py), or psycopg's where pgwire does not speak the configuration.
DRIVERS = ("sqlite3", "psycopg", "stellaops_runtime.pgwire")


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    """The loaded drivers' OperationalError and InterfaceError (a driver not loaded raised nothing)."""
    return tuple(c for name in DRIVERS for c in loaded_classes(name, "OperationalError", "InterfaceError"))


def is_database_error(e: BaseException) -> bool:
    """Whether ``e`` comes from a database driver (sqlite3, psycopg, pgwire) or from SQLAlchemy."""
    classes = (
        *(c for name in DRIVERS for c in loaded_classes(name, "Error")),
        *loaded_classes("sqlalchemy.exc", "SQLAlchemyError"),
    )
    return isinstance(e, classes)


def is_unavailable(e: BaseException) -> bool:
    """Whether a database error means "down or unreachable" (worth retrying).

    The DB-API's OperationalError and InterfaceError (sqlite3's, psycopg's or pgwire's:
    connection refused or lost, timeout, server shutting down, a locked
    SQLite file) and SQLAlchemy's wrappers of them, or any error after which
    the connection is broken.
    """
    if getattr(e, "connection_broken", False):  # set by dbconn on a connection it had to drop
        return True
    if isinstance(e, _unavailable_errors()):
        return True
    sa = loaded_classes(
        "sqlalchemy.exc", "DBAPIError", "OperationalError", "InterfaceError", "DisconnectionError"
    )
    if not sa:
        return False
    if isinstance(e, sa[0]) and getattr(e, "connection_invalidated", False):
        return True
    return isinstance(e, sa[1:])


def first_line(e: BaseException) -> str:
    """The first line of a database error's message (the driver's, when there is one), redacted.

    Drivers may quote the connection string they were given (libpq's
    ``password=...``), so the line goes through :func:`redact`.
    """
    text = str(getattr(e, "orig", None) or e).strip()
    return redact(text.splitlines()[0]) if text else type(e).__name__
