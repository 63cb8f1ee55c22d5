"""Observation windows record how well an image was watched (issue #9).

``posture_level`` is the rank of the highest posture the window's events
evidenced (``stellaops_runtime.contracts.posture``: 1 Passive, 2
ActiveTracing, 3 EbpfDeep, 4 FullInstrumentation), kept as an integer so that
merging two reports of one window is a maximum on every backend.
``window_seconds`` is the window's length and ``source`` the event source
("tetragon"). Rows written before this revision keep NULL posture and length:
posture unknown, which never supports a "not observed" answer.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _schema() -> str | None:
    return "signals" if op.get_bind().dialect.name == "postgresql" else None


def upgrade() -> None:
    schema = _schema()
    op.add_column(
        "observation_windows", sa.Column("posture_level", sa.SmallInteger, nullable=True), schema=schema
    )
    op.add_column(
        "observation_windows", sa.Column("window_seconds", sa.Integer, nullable=True), schema=schema
    )
    op.add_column(
        "observation_windows",
        sa.Column("source", sa.Text, nullable=False, server_default=""),
        schema=schema,
    )


def downgrade() -> None:
    schema = _schema()
    with op.batch_alter_table("observation_windows", schema=schema) as batch:
        batch.drop_column("source")
        batch.drop_column("window_seconds")
        batch.drop_column("posture_level")
