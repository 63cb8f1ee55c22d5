"""Alembic environment of the hot-symbol store, driven from code only.

:func:`stellaops_runtime.store.engine.migrate` builds an in-code Alembic
``Config`` and passes an open SQLAlchemy connection in
``config.attributes["connection"]``; there is no alembic.ini and no offline
(SQL script) mode. On PostgreSQL the ``signals`` schema is created first
because the version table lives in it, and a transaction-scoped advisory lock
serializes agents that start at the same time against one database.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from stellaops_runtime.store.schema import SCHEMA

# Any constant: agents racing to migrate the same database wait on it.
_MIGRATION_LOCK_ID = 0x5354454C4C41  # "STELLA"


def run(connection: Connection) -> None:
    postgres = connection.dialect.name == "postgresql"
    if postgres:
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
    context.configure(
        connection=connection,
        target_metadata=None,
        version_table_schema=SCHEMA if postgres else None,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if _connection is None or context.is_offline_mode():
    raise RuntimeError("store migrations run from code only: stellaops_runtime.store.engine.migrate(engine)")
run(_connection)
