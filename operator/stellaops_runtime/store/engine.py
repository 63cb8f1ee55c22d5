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

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from stellaops_runtime.contracts.redact import redact
from stellaops_runtime.store.schema import SCHEMA, SQLITE_SCHEMA_MAP, hot_symbols

if TYPE_CHECKING:
    from alembic.config import Config

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

    Raises :class:`StoreConfigError` for anything that is not SQLite or PostgreSQL,
    and for a PostgreSQL URL whose password holds an unencoded ``@`` (SQLAlchemy
    would take part of the password for the host). Messages show the URL
    through :func:`safe_url` and never the parser's own text, which may quote
    a piece of the password (an unparseable "port").
    """
    try:
        u = make_url(url)
    except sa.exc.ArgumentError:
        raise StoreConfigError(
            f"invalid store URL {safe_url(url)!r}: not an SQLAlchemy URL "
            "(expected sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB)"
        ) from None
    except ValueError:  # int() of the port: its text may be a piece of the password
        raise StoreConfigError(
            f"invalid store URL {safe_url(url)!r}: the port is not a number ({_ENCODE_HINT})"
        ) from None
    backend = u.get_backend_name()
    if backend == "postgresql":
        if "@" in (u.host or "") or "@" in (u.database or ""):
            raise StoreConfigError(
                f"invalid store URL {safe_url(url)!r}: '@' after the host ({_ENCODE_HINT})"
            )
        return u.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return u
    raise StoreConfigError(
        f"unsupported store URL {safe_url(url)!r}: expected sqlite:///PATH or postgresql://..."
    )


_ENCODE_HINT = "percent-encode @ : / # in the password: %40 %3A %2F %23"


def safe_url(url: str | URL) -> str:
    """The URL for messages: its password, and password-like query parameters, masked.

    A string is masked as written, not parsed first: a malformed URL is what
    needs a message, and SQLAlchemy's parser may leave part of a password in
    the host or path (see :mod:`stellaops_runtime.contracts.redact`).
    """
    if isinstance(url, URL):
        return redact(url.render_as_string(hide_password=True))
    return redact(url)


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


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long the store may take before the agent gives up on a connection (``store.*`` keys).

    - ``connect``: libpq ``connect_timeout``;
    - ``statement``: the server's ``statement_timeout`` (SQLite: the busy timeout);
    - ``idle_in_transaction``: the server ends a session that sits inside a
      transaction this long (an abandoned write's locks are released);
      0 for either: not sent, the server's setting applies;
    - ``keepalive``: TCP keepalive idle time and ``tcp_user_timeout``, so a
      peer that vanished from the network is noticed.
    """

    connect: float = CONNECT_TIMEOUT_SECONDS
    statement: float = 30.0
    idle_in_transaction: float = 60.0
    keepalive: float = 30.0

    def postgres_connect_args(self) -> dict[str, Any]:
        ka = max(1, round(self.keepalive))
        args: dict[str, Any] = {
            "connect_timeout": max(2, round(self.connect)),
            "application_name": "stellaops-runtime",
            "keepalives": 1,
            "keepalives_idle": ka,
            "keepalives_interval": max(1, ka // 3),
            "keepalives_count": 3,
            "tcp_user_timeout": ka * 1000,
        }
        # Server settings go in the startup packet's options; 0 leaves the server's own
        # (a pooler such as PgBouncer refuses startup options: set both to 0 there).
        options = [
            f"-c {name}={round(seconds * 1000)}"
            for name, seconds in (
                ("statement_timeout", self.statement),
                ("idle_in_transaction_session_timeout", self.idle_in_transaction),
            )
            if seconds > 0
        ]
        if options:
            args["options"] = " ".join(options)
        return args


def create_store_engine(url: str | URL, *, timeouts: Timeouts | None = None, **kwargs: Any) -> Engine:
    """An engine for the store URL, with the schema mapping and timeouts its backend needs.

    Connections are pre-pinged, so after an outage the pool replaces dead
    connections instead of failing the first write.
    """
    t = timeouts or Timeouts()
    u = normalize_url(url)
    if u.get_backend_name() == "sqlite":
        engine = sa.create_engine(
            u, connect_args={"timeout": t.statement or 30.0, "check_same_thread": False}, **kwargs
        )
        return engine.execution_options(schema_translate_map=SQLITE_SCHEMA_MAP)
    return sa.create_engine(u, pool_pre_ping=True, connect_args=t.postgres_connect_args(), **kwargs)


def alembic_config() -> Config:
    # Alembic is imported here, not at the top: its ~11 MB of modules are needed
    # only while migrating, never by an agent whose store is already at head.
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def migrate(engine: Engine, *, revision: str = "head") -> None:
    """``alembic upgrade <revision>`` (head by default) on the engine's database, in one transaction.

    Nothing to do, and Alembic stays unimported, when the upgrade is to head and
    the store is already there (:func:`at_head`).
    """
    if revision == "head" and at_head(engine):
        return
    from alembic import command

    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


# ``revision = "0006"`` / ``down_revision: str | None = None`` at the start of a line.
_REVISION_LINE = re.compile(
    r"""^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(?:"([^"]*)"|'([^']*)'|None)\s*$""", re.M
)


@functools.cache
def head_revision() -> str | None:
    """The newest revision in migrations/versions, read from the files without importing Alembic.

    None when they do not form one line (a branch, a merge, an unreadable
    file): then :func:`migrate` leaves the answer to Alembic. A unit test
    holds this equal to Alembic's own head.
    """
    parents: dict[str, str | None] = {}
    for path in sorted((MIGRATIONS_DIR / "versions").glob("[0-9]*.py")):
        found = {m[1]: m[2] or m[3] or None for m in _REVISION_LINE.finditer(path.read_text())}
        if "revision" not in found or "down_revision" not in found:
            return None
        parents[str(found["revision"])] = found["down_revision"]
    heads = set(parents) - set(parents.values())
    return heads.pop() if len(heads) == 1 and len(set(parents.values())) == len(parents) else None


def at_head(engine: Engine) -> bool:
    """Whether the store's Alembic version is :func:`head_revision` (False for a new database)."""
    head = head_revision()
    if head is None:
        return False
    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version", schema=SCHEMA if postgres else None):
            return False
        table = f"{SCHEMA}.alembic_version" if postgres else "alembic_version"
        versions = conn.execute(sa.text(f"SELECT version_num FROM {table}")).scalars().all()
    return versions == [head]


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
    """The first line of a database error's message (the driver's, when there is one), redacted.

    Drivers may quote the connection string they were given (libpq's
    ``password=...``), so the line goes through :func:`redact`.
    """
    text = str(getattr(e, "orig", None) or e).strip()
    return redact(text.splitlines()[0]) if text else type(e).__name__


def open_store(
    url: str,
    *,
    migrate: bool = True,
    create_directories: bool = False,
    timeouts: Timeouts | None = None,
    retention_days: int = 90,
) -> HotSymbolStore:
    """Open the store at ``url``; by default run ``alembic upgrade head`` first (idempotent).

    ``retention_days`` (``store.retentionDays``) is how long the per-window
    history and observation windows are kept (:mod:`stellaops_runtime.store.partitions`).

    A SQLite URL creates its file; its directory must exist, unless
    ``create_directories`` (``store.createDirectories``) makes it. Raises
    :class:`StoreConfigError` for a bad URL or a missing SQLite directory
    (permanent: do not retry), :class:`StoreUnavailable` when the database
    cannot be reached (retry later) and :class:`StoreError` for anything else
    (failed migration).
    """
    from stellaops_runtime.store.partitions import check_retention_days
    from stellaops_runtime.store.writer import HotSymbolStore

    check_retention_days(retention_days)
    prepare_sqlite_directory(url, create=create_directories)
    engine = create_store_engine(url, timeouts=timeouts)
    if migrate:
        try:
            _migrate(engine)
        except Exception as e:
            engine.dispose()
            if is_unavailable(e):
                raise StoreUnavailable(f"cannot migrate store {safe_url(url)}: {first_line(e)}") from e
            raise StoreError(f"cannot migrate store {safe_url(url)}: {first_line(e)}") from e
    # Connections the migration opened were made before the store could track
    # them (HotSymbolStore.abort must reach every connection): start afresh.
    engine.dispose()
    return HotSymbolStore(engine, retention_days=retention_days)


_migrate = migrate
