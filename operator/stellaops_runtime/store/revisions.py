"""The store's schema revision, read over the DB-API without Alembic, and the migration run.

Why this module exists: split from store/engine.py (past 400 lines), which opens the store and
decides from these whether to migrate. An agent whose store is at the newest revision never loads
SQLAlchemy nor Alembic (issue 13): :func:`head_revision` reads the revision chain from the migration
files' text, :func:`store_revisions` the store's version over whatever connection it is given, and
:func:`migrate` imports Alembic only when there is something to run. :func:`has_table` and
:func:`has_schema` answer for a DB-API or a SQLAlchemy connection alike.
"""

from __future__ import annotations

import functools
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Engine

    from stellaops_runtime.store.dbconn import Database

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SCHEMA = "signals"  # as store/schema.py, which this module does not import (it loads SQLAlchemy)
HOT_SYMBOLS = "hot_symbols"


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
    with _MIGRATING, engine.begin() as conn:  # one at a time: Alembic's ``op``/``context`` are globals
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


# Two threads migrating at once (an agent's abandoned store-open thread and a later one, tests'
# stores) ran each other's DDL on the other's connection through Alembic's process-wide proxies.
_MIGRATING = threading.Lock()


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
    parents = _revision_parents()
    if parents is None:
        return None
    heads = set(parents) - set(parents.values())
    return heads.pop() if len(heads) == 1 and len(set(parents.values())) == len(parents) else None


@functools.cache
def _revision_parents() -> dict[str, str | None] | None:
    """Each revision in migrations/versions -> its down revision; None when a file cannot be read so."""
    parents: dict[str, str | None] = {}
    for path in sorted((MIGRATIONS_DIR / "versions").glob("[0-9]*.py")):
        found = {m[1]: m[2] or m[3] or None for m in _REVISION_LINE.finditer(path.read_text())}
        if "revision" not in found or "down_revision" not in found:
            return None
        parents[str(found["revision"])] = found["down_revision"]
    return parents


def store_revisions(db: Database | Engine) -> list[str] | None:
    """The store's Alembic version(s); None when it has no version table (never migrated)."""
    postgres = _dialect(db) == "postgresql"
    with _connect(db) as conn:
        if not has_table(conn, "alembic_version"):
            return None
        table = f"{SCHEMA}.alembic_version" if postgres else "alembic_version"
        return [str(r[0]) for r in _rows(conn, f"SELECT version_num FROM {table}", ())]


def at_head(db: Database | Engine) -> bool:
    """Whether the store's Alembic version is :func:`head_revision` (False for a new database).

    ``db``: the agent's :class:`~stellaops_runtime.store.dbconn.Database` or a
    SQLAlchemy engine; read over the DB-API either way.
    """
    head = head_revision()
    return head is not None and store_revisions(db) == [head]


def behind_head(db: Database | Engine) -> str | None:
    """The store's revision when it is an older revision of this code's chain than the head, else None.

    A revision this code does not know (a newer agent migrated the store) is
    not behind: counts are additive and later revisions stay writable by
    earlier agents (docs/operations.md, "Upgrading").
    """
    head, parents = head_revision(), _revision_parents()
    versions = store_revisions(db)
    if head is None or parents is None or not versions or versions == [head]:
        return None
    older = set(parents) - {head}
    return next((v for v in versions if v in older), None)


def unknown_revision(db: Database | Engine) -> str | None:
    """A revision of the store's that this code's chain does not hold (a newer agent migrated the
    store), else None; None too when the chain cannot be read without Alembic (:func:`head_revision`)."""
    parents = _revision_parents()
    if head_revision() is None or parents is None:
        return None
    return next((v for v in store_revisions(db) or () if v not in parents), None)


def has_table(conn: Any, name: str) -> bool:
    """Whether the table exists (PostgreSQL: in schema ``signals``).

    ``conn``: a :class:`~stellaops_runtime.store.dbconn.Conn` or a SQLAlchemy connection.
    """
    if _dialect(conn) == "postgresql":
        sql = (
            "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'f', 'v', 'm')"
        )
        return bool(_rows(conn, sql, (SCHEMA, name)))
    sql = "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?"
    return bool(_rows(conn, sql, (name,)))


def has_schema(conn: Any) -> bool:
    """Whether the hot-symbol tables exist (i.e. the store was migrated); ``conn`` as :func:`has_table`."""
    return has_table(conn, HOT_SYMBOLS)


def _dialect(x: Any) -> str:
    d = x.dialect
    return d if isinstance(d, str) else str(d.name)


def _connect(db: Any) -> Any:
    return db.connect()


def _rows(conn: Any, sql: str, params: tuple[Any, ...]) -> list[Any]:
    if hasattr(conn, "exec_driver_sql"):  # a SQLAlchemy connection: its driver's placeholders
        return list(conn.exec_driver_sql(sql, params).all())
    return conn.execute(sql, params).rows
