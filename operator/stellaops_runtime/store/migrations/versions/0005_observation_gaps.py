"""Observation windows record the gaps Tetragon reported in them (issue 10).

Tetragon says when it did not deliver events: a cgroup throttled
(``process_throttle``) or events dropped by its export rate limiter
(``rate_limit_info``). A window with such a gap can never back a "not
observed" answer, so each row records it:

- ``gap_start`` / ``gap_end``: the part of the window the gap covers (NULL:
  no gap); merging two reports keeps the earliest start and the latest end;
- ``throttle_count``: THROTTLE_START signals in the window (additive);
- ``dropped_events``: events the rate limiter reported dropped (additive).

Rate limiting has no pod: it is stored on a node-wide row whose
``image_digest`` is ``''`` and whose ``event_count`` is 0, which applies to
every image observed on that node in that window. Rows from before this
revision have no gap recorded.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _schema() -> str | None:
    return "signals" if op.get_bind().dialect.name == "postgresql" else None


def upgrade() -> None:
    schema = _schema()
    op.add_column(
        "observation_windows",
        sa.Column("gap_start", sa.DateTime(timezone=True), nullable=True),
        schema=schema,
    )
    op.add_column(
        "observation_windows", sa.Column("gap_end", sa.DateTime(timezone=True), nullable=True), schema=schema
    )
    op.add_column(
        "observation_windows",
        sa.Column("throttle_count", sa.BigInteger, nullable=False, server_default="0"),
        schema=schema,
    )
    op.add_column(
        "observation_windows",
        sa.Column("dropped_events", sa.BigInteger, nullable=False, server_default="0"),
        schema=schema,
    )


def downgrade() -> None:
    schema = _schema()
    with op.batch_alter_table("observation_windows", schema=schema) as batch:
        batch.drop_column("dropped_events")
        batch.drop_column("throttle_count")
        batch.drop_column("gap_end")
        batch.drop_column("gap_start")
