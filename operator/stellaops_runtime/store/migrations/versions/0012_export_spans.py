"""``export_spans``: which bytes of the node's export file each agent's stored counts cover.

The node's row of ``export_positions`` (0011) is written only with stored counts, so an agent
whose store was away for its whole life (it spooled every count at its stop) left no trace:
an agent of another ``store.spoolPath`` resumed at its own older record and counted those
lines again, and replaying the spool counted them twice. Every transaction that stores
counts of the export file now also writes, per agent and file (inode), the first and last
byte its counts cover (store/export_spans.py), spooled batches keep them, and a replayed
batch whose bytes another agent's stored counts cover is not stored (its windows become gaps).

Keyed by (``node_name``, ``agent_id``, ``ino``, ``head``: the SHA-256 of the file's first
1024 bytes, "" while fewer were read: a file made later may get a deleted file's inode);
``node_name`` is its distribution column on Citus, co-located with ``export_positions``.
Rows older than the spool's 30 days are pruned.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _schema() -> str | None:
    return "signals" if op.get_bind().dialect.name == "postgresql" else None


def upgrade() -> None:
    op.create_table(
        "export_spans",
        sa.Column("node_name", sa.Text, nullable=False),
        sa.Column("agent_id", sa.Text, nullable=False),
        sa.Column("ino", sa.BigInteger, nullable=False),
        sa.Column("head", sa.Text, nullable=False),  # SHA-256 of the first 1024 bytes; "": fewer read
        sa.Column("lo", sa.BigInteger, nullable=False),
        sa.Column("hi", sa.BigInteger, nullable=False),
        sa.Column("at_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("node_name", "agent_id", "ino", "head", name="pk_export_spans"),
        schema=_schema(),
    )


def downgrade() -> None:
    op.drop_table("export_spans", schema=_schema())
