"""``export_positions``: where each node's stored counts of Tetragon's export file end.

An agent that restarts on the JSON export source resumes where its node's watch record says
the last agent's stored counts end (agent/export_resume.py). Two agents of one node with
different ``store.spoolPath``s keep different records: agent X (its record at byte 100)
started after agent Y had followed the file to byte 500 and stopped resumed at 100 and
counted lines 100..500 a second time. Each transaction that stores counts of the export file
now also writes the node's row here (store/export_position.py): the file (device, inode, the
hash of its first bytes), the offset the counts may reach, and the moment its drain began; an
agent resuming reads it first and never reads before it (sources/export_restart.py).

One row per node, keyed by ``node_name`` (its distribution column on Citus, a group of its
own). ``position`` is JSON text, checked by its reader; agents before 0011 write no row, and a
node without one resumes as before. Later agents keep writing stores at 0011 as at any
revision (docs/operations.md, "Upgrading").

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _schema() -> str | None:
    return "signals" if op.get_bind().dialect.name == "postgresql" else None


def upgrade() -> None:
    op.create_table(
        "export_positions",
        sa.Column("node_name", sa.Text, nullable=False),
        sa.Column("agent_id", sa.Text, nullable=False),
        sa.Column("position", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("node_name", name="pk_export_positions"),
        schema=_schema(),
    )


def downgrade() -> None:
    op.drop_table("export_positions", schema=_schema())
