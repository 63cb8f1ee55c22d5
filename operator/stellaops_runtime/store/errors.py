"""The store's errors, and how a database error is classified, without importing SQLAlchemy.

The agent writes through plain DB-API connections (:mod:`stellaops_runtime.store.dbconn`)
while the readers (queries, CLI, evidence, witness) use SQLAlchemy; both raise
and classify errors here, so "down, retry later" means the same on either
path. SQLAlchemy's, sqlite3's and psycopg's exception classes are consulted only
when that library is already loaded (an error cannot come from a library nobody
imported): a node's agent on PostgreSQL never imports sqlite3, nor maps SQLite's
library (~0.9 MB of its idle memory, issue 13).
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


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    """The loaded drivers' OperationalError and InterfaceError (a driver not loaded raised nothing)."""
    found: list[type[BaseException]] = []
    for name in ("sqlite3", "psycopg"):
        if (driver := sys.modules.get(name)) is not None:
            found += (driver.OperationalError, driver.InterfaceError)
    return tuple(found)


def is_database_error(e: BaseException) -> bool:
    """Whether ``e`` comes from a database driver (sqlite3, psycopg) or from SQLAlchemy."""
    classes: list[type[BaseException]] = []
    if (sqlite3 := sys.modules.get("sqlite3")) is not None:
        classes.append(sqlite3.Error)
    if (psycopg := sys.modules.get("psycopg")) is not None:
        classes.append(psycopg.Error)
    if (sa_exc := sys.modules.get("sqlalchemy.exc")) is not None:
        classes.append(sa_exc.SQLAlchemyError)
    return isinstance(e, tuple(classes))


def is_unavailable(e: BaseException) -> bool:
    """Whether a database error means "down or unreachable" (worth retrying).

    The DB-API's OperationalError and InterfaceError (sqlite3's or psycopg's:
    connection refused or lost, timeout, server shutting down, a locked
    SQLite file) and SQLAlchemy's wrappers of them, or any error after which
    the connection is broken.
    """
    if getattr(e, "connection_broken", False):  # set by dbconn on a connection it had to drop
        return True
    if isinstance(e, _unavailable_errors()):
        return True
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is None:
        return False
    if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
        return True
    return isinstance(e, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.DisconnectionError)


def first_line(e: BaseException) -> str:
    """The first line of a database error's message (the driver's, when there is one), redacted.

    Drivers may quote the connection string they were given (libpq's
    ``password=...``), so the line goes through :func:`redact`.
    """
    text = str(getattr(e, "orig", None) or e).strip()
    return redact(text.splitlines()[0]) if text else type(e).__name__
