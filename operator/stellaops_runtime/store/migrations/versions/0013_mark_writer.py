"""An unwatched-container mark names the agent that wrote it (``marked_by``).

A window's mark (``evidenced_level`` 0: a container of the image ran silent that UTC day on the
node while another container of it called, hotsymbols/day_calls.py) was written away by any
restate row, also one written by another agent: a pod replaced after a restart, replaying the
export file, knew only the containers it saw, and its "calls seen later that day" cleared a mark
the agent before it wrote for a container it never knew; the day then read watched beside a silent
container nobody watched. ``marked_by`` holds the writer's ``agent_id`` (``*`` when two agents
marked the window); a restate row clears only its own agent's mark (store/marks.py).

Not filled here: existing rows and rows of agents before this revision keep NULL, and between
themselves keep the old rule (an older agent's upsert leaves the column alone; docs/operations.md
"Upgrading"). A nullable column with no default: a catalog-only change on PostgreSQL that Citus
propagates to the shards of the distributed ``observation_windows``; no key changes.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _schema() -> str | None:
    return "signals" if op.get_bind().dialect.name == "postgresql" else None


def upgrade() -> None:
    op.add_column("observation_windows", sa.Column("marked_by", sa.Text, nullable=True), schema=_schema())


def downgrade() -> None:
    with op.batch_alter_table("observation_windows", schema=_schema()) as batch:
        batch.drop_column("marked_by")
