"""Initial hot-symbol store: hot_symbols, hot_symbol_windows, observation_windows.

A frozen copy of the tables in stellaops_runtime/store/schema.py as they were
at this revision (migrations never import the live schema). The schema is
``signals`` on PostgreSQL and none on SQLite.

Revision ID: 0001
Revises:
Create Date: 2025-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_KEY = ("image_digest", "module", "function_name", "evidence_kind")


def _schema() -> str | None:
    return "signals" if op.get_bind().dialect.name == "postgresql" else None


def _id() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), primary_key=True
    )


def _key() -> list[sa.Column]:  # type: ignore[type-arg]
    return [sa.Column(name, sa.Text, nullable=False) for name in _KEY]


def _ts(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    schema = _schema()
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.create_table(
        "hot_symbols",
        _id(),
        *_key(),
        sa.Column("build_id", sa.Text, nullable=False, server_default=""),
        sa.Column("purl", sa.Text, nullable=False, server_default=""),
        sa.Column("invocation_count", sa.BigInteger, nullable=False),
        sa.Column("unique_callers", sa.Integer, nullable=False),
        sa.Column("total_latency_ns", sa.BigInteger, nullable=False),
        sa.Column("max_latency_ns", sa.BigInteger, nullable=False),
        sa.Column("confidence", sa.REAL, nullable=False),
        _ts("first_seen"),
        _ts("last_seen"),
        sa.Column("node_name", sa.Text, nullable=False, server_default=""),
        sa.Column("sample", json_type, nullable=True),
        _ts("updated_at"),
        sa.UniqueConstraint(*_KEY, name="uq_hot_symbols_key"),
        schema=schema,
    )
    op.create_index(
        "ix_hot_symbols_image_function", "hot_symbols", ["image_digest", "function_name"], schema=schema
    )
    op.create_index("ix_hot_symbols_image_purl", "hot_symbols", ["image_digest", "purl"], schema=schema)
    op.create_index(
        "ix_hot_symbols_purl_prefix",
        "hot_symbols",
        ["purl"],
        schema=schema,
        postgresql_ops={"purl": "text_pattern_ops"},
    )
    op.create_index("ix_hot_symbols_last_seen", "hot_symbols", ["last_seen"], schema=schema)

    op.create_table(
        "hot_symbol_windows",
        _id(),
        *_key(),
        _ts("window_start"),
        sa.Column("invocation_count", sa.BigInteger, nullable=False),
        sa.Column("unique_callers", sa.Integer, nullable=False),
        sa.Column("total_latency_ns", sa.BigInteger, nullable=False),
        sa.Column("max_latency_ns", sa.BigInteger, nullable=False),
        _ts("first_seen"),
        _ts("last_seen"),
        sa.UniqueConstraint(*_KEY, "window_start", name="uq_hot_symbol_windows_key"),
        schema=schema,
    )
    op.create_index(
        "ix_hot_symbol_windows_image_window",
        "hot_symbol_windows",
        ["image_digest", "window_start"],
        schema=schema,
    )

    op.create_table(
        "observation_windows",
        _id(),
        sa.Column("image_digest", sa.Text, nullable=False),
        sa.Column("node_name", sa.Text, nullable=False),
        _ts("window_start"),
        sa.Column("event_count", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("image_digest", "node_name", "window_start", name="uq_observation_windows_key"),
        schema=schema,
    )


def downgrade() -> None:
    schema = _schema()
    op.drop_table("observation_windows", schema=schema)
    op.drop_table("hot_symbol_windows", schema=schema)
    op.drop_table("hot_symbols", schema=schema)
