"""``image_pairs``: an image's config digest and the manifest digest it is filed under.

An image with no repo digest (``ctr import``, ``kind load``) is filed under its manifest digest by
an agent with the containerd lifecycle part (lifecycle/image_config.py), while kubectl shows its
config digest (``imageID``) and an agent with ``lifecycle.enabled: false`` files its Tetragon
events under that config digest. The agent records each pairing it reads from containerd's
content store once (store/image_pairs.py), and a question by either digest rests on the rows of
both (store/same_image.py, evidence/paired_image.py).

Keyed by (``image_digest``: the manifest digest, ``config_digest``); ``image_digest`` is its
distribution column on Citus, co-located with the image tables. Written with ON CONFLICT DO
NOTHING: idempotent, any number of agents.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _schema() -> str | None:
    return "signals" if op.get_bind().dialect.name == "postgresql" else None


def upgrade() -> None:
    op.create_table(
        "image_pairs",
        sa.Column("image_digest", sa.Text, nullable=False),  # the manifest digest (the agent's key)
        sa.Column("config_digest", sa.Text, nullable=False),  # kubectl's imageID for such an image
        sa.PrimaryKeyConstraint("image_digest", "config_digest", name="pk_image_pairs"),
        schema=_schema(),
    )
    op.create_index("ix_image_pairs_config", "image_pairs", ["config_digest"], schema=_schema())


def downgrade() -> None:
    op.drop_index("ix_image_pairs_config", table_name="image_pairs", schema=_schema())
    op.drop_table("image_pairs", schema=_schema())
