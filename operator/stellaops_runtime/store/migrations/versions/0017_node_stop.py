"""``node_liveness``: a node's graceful stop record, so an agent stopped on purpose ends its open time.

A node whose agent is down is open from its watched end to the question, for every image it ran
on its last day (store/coverage_open.py): its workloads may run on unwatched (an OOM kill, a
crash). An agent stopped with SIGTERM knows more: once its final flush stored everything, it
writes when it stopped (``stopped_at``, the store's clock), why (``stop_reason``), which images
still ran on the node (``running_images``, a JSON list of digests: the lifecycle registry's
containers not stopped; ``images_uncertain`` when it could not know, lifecycle off: the reader
keeps every image open), and whether its Node is going away (``gone``: a deletion timestamp or an
autoscaler's or Karpenter's taint on it). The reader then ends the open time at ``stopped_at`` for
the images not running, and for every image of a node that is gone (store/node_stop.py,
store/coverage_live.py, store/coverage_open.py).

``stop_agent``: the agent that wrote the stop; a stop counts only for the proof of the same agent
written no later than it (a next agent's proof upserts the row and leaves these columns behind).
Nullable columns on the existing table: no rewrite, and on Citus an ``ALTER TABLE ... ADD COLUMN``
of the distributed table (its distribution column unchanged).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("stopped_at", lambda: sa.DateTime(timezone=True)),  # store clock
    ("stop_agent", lambda: sa.Text()),
    ("stop_reason", lambda: sa.Text()),
    ("running_images", lambda: sa.Text()),  # a JSON list of image digests
    ("images_uncertain", lambda: sa.Boolean(create_constraint=False)),
    ("gone", lambda: sa.Boolean(create_constraint=False)),
)


def _schema() -> str | None:
    return "signals" if op.get_bind().dialect.name == "postgresql" else None


def upgrade() -> None:
    for name, kind in _COLUMNS:
        op.add_column("node_liveness", sa.Column(name, kind(), nullable=True), schema=_schema())


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("node_liveness") as batch:
            for name, _ in reversed(_COLUMNS):
                batch.drop_column(name)
        return
    for name, _ in reversed(_COLUMNS):
        op.drop_column("node_liveness", name, schema=_schema())
