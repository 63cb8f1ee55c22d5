"""Open the hot-symbol store's database and bring its schema up to date.

The agent writes through plain DB-API connections
(:mod:`stellaops_runtime.store.dbconn`: sqlite3, psycopg 3) and never loads
SQLAlchemy nor Alembic while its store is at the newest revision (issue 13);
the readers (queries, CLI, evidence, witness) get a SQLAlchemy engine from
:func:`create_store_engine`, which imports SQLAlchemy when called. Both see
the same tables: on SQLite the engine maps schema ``signals`` to no schema.
Migrations are Alembic revisions shipped in the package and run from code (no
alembic.ini): :func:`migrate` is idempotent, so every agent may call it at
start-up, and :func:`open_store` runs them only when the store is not at head
(:func:`at_head` reads the version over DB-API): in this process by default
(:func:`migrate_in_process`, which loads SQLAlchemy and Alembic), or through the
``migrator`` it is given; the agent's runs them in a child process
(store/migration_process.py), so that the agent never loads either. Those
revision reads and the migration run are store/revisions.py's, named here too.

A SQLite file's directory must exist: :func:`open_store` raises
:class:`StoreConfigError` for a missing one unless asked to create it
(``store.createDirectories``), so a mistyped path fails at start-up instead
of growing a directory tree somewhere.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stellaops_runtime.contracts.redact import redact
from stellaops_runtime.store.dbconn import CONNECT_TIMEOUT_SECONDS, Database, Timeouts
from stellaops_runtime.store.errors import (
    StoreConfigError,
    StoreError,
    StoreNotInitialized,
    StoreUnavailable,
    first_line,
    is_database_error,
    is_unavailable,
)
from stellaops_runtime.store.revisions import (  # the schema's revision and migration, named here too
    HOT_SYMBOLS,
    MIGRATIONS_DIR,
    SCHEMA,
    alembic_config,
    at_head,
    behind_head,
    has_schema,
    has_table,
    head_revision,
    migrate,
    store_revisions,
    unknown_revision,
)
from stellaops_runtime.store.store_url import StoreURL, parse_store_url

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine

    from stellaops_runtime.store.writer import HotSymbolStore

log = logging.getLogger(__name__)


__all__ = [
    "CONNECT_TIMEOUT_SECONDS",
    "HOT_SYMBOLS",
    "MIGRATIONS_DIR",
    "SCHEMA",
    "StoreConfigError",
    "StoreError",
    "StoreNotInitialized",
    "StoreUnavailable",
    "Timeouts",
    "alembic_config",
    "at_head",
    "behind_head",
    "create_store_engine",
    "first_line",
    "has_schema",
    "has_table",
    "head_revision",
    "is_database_error",
    "is_unavailable",
    "migrate",
    "migrate_in_process",
    "normalize_url",
    "open_store",
    "prepare_sqlite_directory",
    "safe_url",
    "store_revisions",
]


def normalize_url(url: str | URL | StoreURL) -> URL:
    """Parse a store URL into SQLAlchemy's ``URL``; ``postgresql://`` and ``+psycopg2`` become psycopg 3.

    Raises :class:`StoreConfigError` for anything that is not SQLite or PostgreSQL,
    and for a PostgreSQL URL whose password holds an unencoded ``@`` (SQLAlchemy
    would take part of the password for the host). Messages show the URL
    through :func:`safe_url` and never the parser's own text, which may quote
    a piece of the password (an unparseable "port"). Imports SQLAlchemy: the
    agent uses :func:`~stellaops_runtime.store.store_url.parse_store_url`.
    """
    from sqlalchemy.engine import make_url

    u = store_url(url)  # the store's rules, and its messages
    if isinstance(url, str):
        parsed = make_url(url)
    elif isinstance(url, StoreURL):
        parsed = make_url(url.render(hide_password=False))
    else:
        parsed = url
    return parsed.set(drivername=u.drivername)


def store_url(url: str | URL | StoreURL) -> StoreURL:
    """:func:`parse_store_url` of a string, a parsed URL or SQLAlchemy's ``URL`` (no SQLAlchemy needed)."""
    if isinstance(url, str | StoreURL):
        return parse_store_url(url)
    return parse_store_url(url.render_as_string(hide_password=False))


_ENCODE_HINT = "percent-encode @ : / # in the password: %40 %3A %2F %23"


def safe_url(url: str | URL | StoreURL) -> str:
    """The URL for messages: its password, and password-like query parameters, masked.

    A string is masked as written, not parsed first: a malformed URL is what
    needs a message, and SQLAlchemy's parser may leave part of a password in
    the host or path (see :mod:`stellaops_runtime.contracts.redact`).
    """
    if isinstance(url, str):
        return redact(url)
    if isinstance(url, StoreURL):
        return redact(url.render(hide_password=True))
    return redact(url.render_as_string(hide_password=True))


def sqlite_path(url: URL | StoreURL) -> Path | None:
    """The file of a SQLite URL; None for in-memory databases."""
    db = url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


def refuse_in_memory(url: str | StoreURL) -> None:
    """Raise StoreConfigError for an in-memory SQLite URL given to the agent.

    Each connection to ``sqlite://`` (or ``sqlite:///:memory:``) is a new, empty
    database: the agent would migrate one and write to another, retrying
    "no such table" for ever while it holds every count. A file it is.
    """
    u = parse_store_url(url)
    if u.backend == "sqlite" and u.sqlite_target() == (":memory:", False):
        raise StoreConfigError(
            f"store.url {safe_url(url if isinstance(url, str) else u)}: an in-memory SQLite database "
            "is new and empty on every connection, so nothing the agent writes would be kept; "
            "give a file (sqlite:///PATH)"
        )


def prepare_sqlite_directory(url: str | URL | StoreURL, *, create: bool = False) -> None:
    """Check that a SQLite URL's directory exists; with ``create``, make it (and its parents).

    Does nothing for PostgreSQL and in-memory SQLite. Raises
    :class:`StoreConfigError` (one line, naming the directory and the
    ``store.createDirectories`` key, the URL without its password) for a
    directory that is missing, not a directory, or cannot be created.
    """
    u = store_url(url)
    path = sqlite_path(u) if u.backend == "sqlite" else None
    if path is None:
        return
    directory = Path(os.path.abspath(path)).parent
    if directory.is_dir():
        return
    where = f"store.url {safe_url(u)}"
    if directory.exists():
        raise StoreConfigError(f"{where}: {directory} is not a directory")
    if not create:
        raise StoreConfigError(
            f"{where}: directory {directory} does not exist "
            "(create it, or set store.createDirectories: true to let the agent create it)"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreConfigError(
            f"{where}: cannot create directory {directory} (store.createDirectories): {e.strerror or e}"
        ) from None


def create_store_engine(
    url: str | URL | StoreURL, *, timeouts: Timeouts | None = None, **kwargs: Any
) -> Engine:
    """A SQLAlchemy engine for the store URL, with the schema mapping and timeouts its backend needs.

    Connections are pre-pinged, so after an outage the pool replaces dead
    connections instead of failing the first write. Imports SQLAlchemy.
    """
    import sqlalchemy as sa

    from stellaops_runtime.store.schema import SQLITE_SCHEMA_MAP

    t = timeouts or Timeouts()
    u = normalize_url(url)
    if u.get_backend_name() == "sqlite":
        engine = sa.create_engine(u, connect_args=t.sqlite_connect_args(), **kwargs)
        return engine.execution_options(schema_translate_map=SQLITE_SCHEMA_MAP)
    opts = u.query.get("options")
    args = t.postgres_connect_args(opts if isinstance(opts, str) else " ".join(opts or ()))
    return sa.create_engine(u, pool_pre_ping=True, connect_args=args, **kwargs)


def _check_revision(db: Database, url: str) -> None:
    """Refuse a store whose schema is older than this agent writes (``store.migrate: false``).

    At 0005/0006 the history's unique (key, window) key refused every second
    flush of a (key, window) written the 0007 way: quarantined, lost to every answer.
    """
    try:
        behind = behind_head(db)
    except Exception as e:  # unreachable, locked, damaged: the first write says so, as before
        log.debug("cannot read the schema revision of %s: %s", safe_url(url), first_line(e))
        return
    if behind is not None:
        raise StoreNotInitialized(
            f"store {safe_url(url)} is at schema revision {behind}; this agent needs "
            f"{head_revision()}: run the migrations first (one agent or Job with store.migrate: true, "
            "see docs/operations.md, Upgrading); the counts are kept until then"
        )


Migrator = Callable[[str, Timeouts | None], None]
"""Brings the store at a URL to the newest revision; raises :class:`StoreUnavailable` when it cannot
be reached and :class:`StoreError` when the migration fails, each with a one-line message naming the
store by :func:`safe_url`."""


def migrate_in_process(url: str, timeouts: Timeouts | None = None) -> None:
    """``alembic upgrade head`` on the store at ``url``, in this process: loads SQLAlchemy and Alembic.

    A :data:`Migrator`; the agent's child process runs this (store/migration_child.py).
    """
    try:
        engine = create_store_engine(url, timeouts=timeouts)
        if engine.dialect.name == "sqlite":
            _transactional_ddl(engine)
        try:
            _migrate(engine)
        finally:
            engine.dispose()
    except Exception as e:
        raise _migration_error(url, e) from e


def _transactional_ddl(engine: Engine) -> None:
    """Make a SQLite engine's transactions real ones: the whole migration one, DDL included.

    sqlite3 (pysqlite) begins a transaction only before INSERT/UPDATE/DELETE, so each revision's
    CREATE TABLE and ALTER committed alone: a migration cut mid-way (the agent's first start
    killed: SIGKILL, OOM, the node's shutdown) left tables without the version saying so, and every
    later start failed for good ("table hot_symbols already exists"). The driver's own transaction
    handling is turned off and each engine transaction begins with BEGIN (SQLite's DDL is
    transactional), so a cut migration is rolled back, as on PostgreSQL.
    """
    from sqlalchemy import event

    def no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    def begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    event.listen(engine.pool, "connect", no_driver_transactions)
    event.listen(engine, "begin", begin)


def _refuse_unmigratable(db: Database, url: str) -> None:
    """A store no migration can bring to the head is refused without starting Alembic, or the agent's
    migration child, at every retry (each child costs ~0.5 s of CPU): one a newer agent migrated
    (Alembic: "Can't locate revision identified by ..."), and one with the tables but no version
    (Alembic: "table hot_symbols already exists"), each with what to do."""
    if store_revisions(db) is None:
        with db.connect() as conn:
            tables = has_schema(conn)
        if tables:  # an older agent's first migration on SQLite, cut before its version row (3d3a1b3d)
            raise StoreError(
                f"cannot migrate store {safe_url(url)}: it has the hot-symbol tables but no schema "
                "revision (a first migration cut before it wrote its version, by an agent that migrated "
                "SQLite outside one transaction): no migration can run on it, and no agent wrote to it; "
                "move it away (or drop its schema signals) and the next start makes a new one"
            )
    if (unknown := unknown_revision(db)) is not None:
        raise StoreError(
            f"cannot migrate store {safe_url(url)}: it is at schema revision {unknown}, which this agent "
            f"does not know (its newest is {head_revision()}; a newer agent migrated it): run this agent "
            "with store.migrate: false, which writes to it (docs/operations.md, Upgrading), or upgrade it"
        )


def _check_migrated(db: Database, url: str) -> None:
    """After a migrator said it succeeded, the store must be at the head (or at a revision a newer
    agent made meanwhile): a child that exits 0 without migrating (another package's, a bug) must
    not hand the agent a store whose tables it would write the wrong way, or not at all."""
    head = head_revision()
    versions = store_revisions(db)
    if head is None or (versions and (versions == [head] or unknown_revision(db) is not None)):
        return  # no chain read without Alembic (head_revision): Alembic's own run is the word
    raise StoreError(
        f"cannot migrate store {safe_url(url)}: the migration reported success but the store is at "
        f"schema revision {', '.join(versions or ()) or 'none'}, not {head}"
    )


SQLITE_ERROR = 1  # SQLite's generic SQL error: "table ... already exists", "no such table", ...


def _migration_error(url: str, e: Exception) -> StoreError:
    """The error a failed migration raises: :class:`StoreUnavailable` for a database out of reach (or
    a SQLite file locked), else :class:`StoreError`. sqlite3 raises even a refused statement as an
    OperationalError, which store/errors.py reads as unavailable: a migration SQLite refused (a store
    whose tables a cut, non-transactional migration of an older agent left) is a failed one."""
    code = getattr(getattr(e, "orig", None) or e, "sqlite_errorcode", None)
    if is_unavailable(e) and not (isinstance(code, int) and code & 0xFF == SQLITE_ERROR):
        return StoreUnavailable(f"cannot migrate store {safe_url(url)}: {first_line(e)}")
    return StoreError(f"cannot migrate store {safe_url(url)}: {first_line(e)}")


def open_store(
    url: str,
    *,
    migrate: bool = True,
    migrator: Migrator | None = None,
    create_directories: bool = False,
    timeouts: Timeouts | None = None,
    retention_days: int = 90,
) -> HotSymbolStore:
    """Open the store at ``url``; by default run ``alembic upgrade head`` first (idempotent).

    The migrations run only when the store is not at the newest revision (:func:`at_head`, read
    over the DB-API), by ``migrator``: by default :func:`migrate_in_process`, which loads
    SQLAlchemy and Alembic into this process; the agent gives its child-process migrator
    (store/migration_process.py). ``retention_days`` (``store.retentionDays``) is how long the
    per-window history and observation windows are kept (:mod:`stellaops_runtime.store.partitions`).

    A SQLite URL creates its file; its directory must exist, unless
    ``create_directories`` (``store.createDirectories``) makes it. Raises
    :class:`StoreConfigError` for a bad URL or a missing SQLite directory
    (permanent: do not retry), :class:`StoreUnavailable` when the database
    cannot be reached (retry later) and :class:`StoreError` for anything else
    (failed migration). Without ``migrate``, a store at an older revision of
    this code's chain raises :class:`StoreNotInitialized` (retry once the
    migrations have run; :func:`behind_head`).
    """
    from stellaops_runtime.store.partitions import check_retention_days
    from stellaops_runtime.store.writer import HotSymbolStore

    check_retention_days(retention_days)
    u = parse_store_url(url)
    prepare_sqlite_directory(u, create=create_directories)
    db = Database(u, timeouts=timeouts)
    if not migrate:
        try:
            _check_revision(db, url)
        except StoreError:
            db.dispose()
            raise
        return HotSymbolStore(db, retention_days=retention_days)
    try:
        if not at_head(db):  # only now SQLAlchemy and Alembic are loaded, by the migrator's process
            _refuse_unmigratable(db, url)
            (migrator or migrate_in_process)(url, timeouts)
            _check_migrated(db, url)
    except StoreError:
        db.dispose()
        raise
    except Exception as e:
        db.dispose()
        raise _migration_error(url, e) from e
    return HotSymbolStore(db, retention_days=retention_days)


_migrate = migrate
