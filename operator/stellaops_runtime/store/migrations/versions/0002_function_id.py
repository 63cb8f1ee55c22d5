"""Hot-symbol rows carry the canonical function ID (issue #3).

``function_id`` is ``<build-id>:<symbol>+0x0``, the ID static analysis
computes for the same function's entry; empty for file evidence (executed,
loaded) and for functions the frame canonicalizer could not resolve. Indexed
because the policy engine asks by it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _schema() -> str | None:
    return "signals" if op.get_bind().dialect.name == "postgresql" else None


def upgrade() -> None:
    schema = _schema()
    op.add_column(
        "hot_symbols",
        sa.Column("function_id", sa.Text, nullable=False, server_default=""),
        schema=schema,
    )
    op.create_index("ix_hot_symbols_function_id", "hot_symbols", ["function_id"], schema=schema)


def downgrade() -> None:
    schema = _schema()
    op.drop_index("ix_hot_symbols_function_id", table_name="hot_symbols", schema=schema)
    op.drop_column("hot_symbols", "function_id", schema=schema)
