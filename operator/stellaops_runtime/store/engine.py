"""Open the hot-symbol store's database and bring its schema up to date.

One SQLAlchemy engine per URL, PostgreSQL (psycopg 3) in production and SQLite
as the embedded default. Both see the same tables: on SQLite the engine maps
schema ``signals`` to no schema. Migrations are Alembic revisions shipped in
the package and run from code (no alembic.ini): :func:`migrate` is
idempotent, so every agent may call it at start-up.

A SQLite file's directory must exist: :func:`open_store` raises
:class:`StoreConfigError` for a missing one unless asked to create it
(``store.createDirectories``), so a mistyped path fails at start-up instead
of growing a directory tree somewhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL, Engine, make_url

from stellaops_runtime.store.schema import SCHEMA, SQLITE_SCHEMA_MAP, hot_symbols

if TYPE_CHECKING:
    from stellaops_runtime.store.writer import HotSymbolStore

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
CONNECT_TIMEOUT_SECONDS = 10


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


def normalize_url(url: str | URL) -> URL:
    """Parse a store URL; ``postgresql://`` and ``postgresql+psycopg2://`` become psycopg 3.

    Raises :class:`StoreConfigError` for anything that is not SQLite or PostgreSQL.
    """
    try:
        u = make_url(url)
    except (sa.exc.ArgumentError, ValueError) as e:
        raise StoreConfigError(f"invalid store URL {safe_url(url)!r}: {e}") from None
    backend = u.get_backend_name()
    if backend == "postgresql":
        return u.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return u
    raise StoreConfigError(
        f"unsupported store URL {safe_url(url)!r}: expected sqlite:///PATH or postgresql://..."
    )


def safe_url(url: str | URL) -> str:
    """The URL with any password masked, for messages."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return str(url)


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL; None for in-memory databases."""
    db = url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


def prepare_sqlite_directory(url: str | URL, *, create: bool = False) -> None:
    """Check that a SQLite URL's directory exists; with ``create``, make it (and its parents).

    Does nothing for PostgreSQL and in-memory SQLite. Raises
    :class:`StoreConfigError` (one line, naming the directory and the
    ``store.createDirectories`` key, the URL without its password) for a
    directory that is missing, not a directory, or cannot be created.
    """
    u = normalize_url(url)
    path = sqlite_path(u) if u.get_backend_name() == "sqlite" else None
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


def create_store_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for the store URL, with the schema mapping its backend needs.

    Connections are pre-pinged, so after an outage the pool replaces dead
    connections instead of failing the first write.
    """
    u = normalize_url(url)
    if u.get_backend_name() == "sqlite":
        engine = sa.create_engine(u, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)
        return engine.execution_options(schema_translate_map=SQLITE_SCHEMA_MAP)
    return sa.create_engine(
        u,
        pool_pre_ping=True,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS, "application_name": "stellaops-runtime"},
        **kwargs,
    )


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def migrate(engine: Engine, *, revision: str = "head") -> None:
    """``alembic upgrade <revision>`` (head by default) on the engine's database, in one transaction."""
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def has_schema(conn: sa.Connection) -> bool:
    """Whether the hot-symbol tables exist (i.e. the store was migrated)."""
    schema = SCHEMA if conn.dialect.name == "postgresql" else None
    return sa.inspect(conn).has_table(hot_symbols.name, schema=schema)


def is_unavailable(e: BaseException) -> bool:
    """Whether a database error means "down or unreachable" (worth retrying)."""
    if isinstance(e, sa.exc.DBAPIError) and e.connection_invalidated:
        return True
    return isinstance(e, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.DisconnectionError)


def first_line(e: BaseException) -> str:
    """The first line of a database error's message (the driver's, when there is one)."""
    text = str(getattr(e, "orig", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def open_store(url: str, *, migrate: bool = True, create_directories: bool = False) -> HotSymbolStore:
    """Open the store at ``url``; by default run ``alembic upgrade head`` first (idempotent).

    A SQLite URL creates its file; its directory must exist, unless
    ``create_directories`` (``store.createDirectories``) makes it. Raises
    :class:`StoreConfigError` for a bad URL or a missing SQLite directory
    (permanent: do not retry), :class:`StoreUnavailable` when the database
    cannot be reached (retry later) and :class:`StoreError` for anything else
    (failed migration).
    """
    from stellaops_runtime.store.writer import HotSymbolStore

    prepare_sqlite_directory(url, create=create_directories)
    engine = create_store_engine(url)
    if migrate:
        try:
            _migrate(engine)
        except Exception as e:
            engine.dispose()
            if is_unavailable(e):
                raise StoreUnavailable(f"cannot migrate store {safe_url(url)}: {first_line(e)}") from e
            raise StoreError(f"cannot migrate store {safe_url(url)}: {first_line(e)}") from e
    return HotSymbolStore(engine)


_migrate = migrate
