"""Exactly-once flushes and quarantined rows (issue #10).

``flush_ledger`` holds one row per committed agent flush, (agent_id,
flush_seq, part), written in the same transaction as the counts it carried. A
retried flush whose sequence is already there (its COMMIT went through but the
acknowledgement was lost) is a no-op, so no count is ever added twice.
``part`` is the range of the batch's rows a transaction carried (``"0-n"``
for a whole batch; smaller ranges when a refused row split it).
``committed_at`` lets old entries be pruned after the retention the docs
state.

``quarantined_rows`` keeps a row the database refused, as JSON text with its
error, so one bad row never blocks a batch and is never silently dropped.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _schema() -> str | None:
    return "signals" if op.get_bind().dialect.name == "postgresql" else None


def upgrade() -> None:
    schema = _schema()
    op.create_table(
        "flush_ledger",
        sa.Column("agent_id", sa.Text, nullable=False),
        sa.Column("flush_seq", sa.BigInteger, nullable=False),
        sa.Column("part", sa.Text, nullable=False),
        sa.Column("row_count", sa.Integer, nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", "flush_seq", "part", name="pk_flush_ledger"),
        schema=schema,
    )
    op.create_index("ix_flush_ledger_committed_at", "flush_ledger", ["committed_at"], schema=schema)
    op.create_table(
        "quarantined_rows",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), primary_key=True
        ),
        sa.Column("agent_id", sa.Text, nullable=False),
        sa.Column("table_name", sa.Text, nullable=False),
        sa.Column("row_json", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=False),
        schema=schema,
    )


def downgrade() -> None:
    schema = _schema()
    op.drop_table("quarantined_rows", schema=schema)
    op.drop_index("ix_flush_ledger_committed_at", "flush_ledger", schema=schema)
    op.drop_table("flush_ledger", schema=schema)
