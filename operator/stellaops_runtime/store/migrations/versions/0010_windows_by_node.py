"""An index led by ``node_name`` on ``observation_windows``: an agent's question about its node is answered.

An agent with no usable watch record asks the store, as it opens and before it writes,
for the start of its node's latest observation window (agent/node_history.py:
``max(window_start) WHERE node_name = ...``), to tell a node an earlier agent watched
from a new one. No index led by ``node_name``: the primary key leads with
``image_digest``, so PostgreSQL walked ``ix_observation_windows_window_start``
backwards and filtered every row until it met one of the node. For a new node (the
usual case) that is every row of the table: 0.6 s over 1.2 million rows, past the
store's ``statementTimeout`` on a fleet's store, and an answer that cannot be read
keeps the store closed for that agent (it retries, storing nothing). With
``ix_observation_windows_node_window`` (node_name, window_start) the answer is one
index descent (tests/integration/test_migration_0010.py reads the plan).

Non-unique, so Citus's rule on keys (docs/operations.md, "Running the store on Citus")
does not apply; Citus creates it on the shards of the distributed table. The table is
not partitioned. PostgreSQL builds it with a plain CREATE INDEX, which holds off writes
to the table while it builds (agents keep counting and retry, as for any store
outage); SQLite likewise.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

NAME = "ix_observation_windows_node_window"


def _schema() -> str | None:
    return "signals" if op.get_bind().dialect.name == "postgresql" else None


def upgrade() -> None:
    op.create_index(NAME, "observation_windows", ["node_name", "window_start"], schema=_schema())


def downgrade() -> None:
    op.drop_index(NAME, "observation_windows", schema=_schema())
