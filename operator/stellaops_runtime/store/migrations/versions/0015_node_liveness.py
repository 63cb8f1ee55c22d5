"""``node_liveness``: each node's proof of life, stamped by the store's clock.

A node's watched time used to end at the start of its latest ``observation_windows`` row, stamped
by the node's clock, with a grace of three windows (store/coverage_open.py): a question asked in
the first minutes after a SIGKILL said "not observed" about calls made after it, a node clock
ahead delayed the open gap by its skew, and a live node with no events (lifecycle off) read as
down. Each agent now writes, at every flush, the store-clock moment up to which it watched and
stored everything (store/node_liveness.py), and the question's reader ends the node's watched
time there.

One row per node (its current agent's), keyed by ``node_name``, its distribution column on Citus,
co-located with ``export_positions``. Times are the store's: ``alive_through`` is the store's
clock at the write less the agent's monotonic time since its claimed moment; ``alive_node`` is
that same moment on the node's wall clock (the clock its windows are stamped by); ``started_at``
and ``started_node`` the agent's start on both clocks.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _schema() -> str | None:
    return "signals" if op.get_bind().dialect.name == "postgresql" else None


def upgrade() -> None:
    op.create_table(
        "node_liveness",
        sa.Column("node_name", sa.Text, nullable=False),
        sa.Column("agent_id", sa.Text, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),  # store clock
        sa.Column("started_node", sa.DateTime(timezone=True), nullable=False),  # node clock
        sa.Column("alive_through", sa.DateTime(timezone=True), nullable=False),  # store clock
        sa.Column("alive_node", sa.DateTime(timezone=True), nullable=False),  # node clock
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),  # store clock
        sa.Column("flush_seconds", sa.Float, nullable=False),
        sa.Column("window_seconds", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("node_name", name="pk_node_liveness"),
        schema=_schema(),
    )


def downgrade() -> None:
    op.drop_table("node_liveness", schema=_schema())
