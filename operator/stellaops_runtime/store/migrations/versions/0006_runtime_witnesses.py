"""Signed runtime witnesses kept in the store (issue 15).

One row per signed envelope: the claim it answers (image, purl, function,
vulnerability; ``claim_id`` is their SHA-256, see docs/witnesses.md), the
reachability state it states, the signing key's id, the envelope's SHA-256
(unique: the same envelope is stored once) and the envelope itself as JSON
text, exactly the bytes that were written out, so a copy read back verifies.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _schema() -> str | None:
    return "signals" if op.get_bind().dialect.name == "postgresql" else None


def upgrade() -> None:
    schema = _schema()
    op.create_table(
        "runtime_witnesses",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), primary_key=True
        ),
        sa.Column("claim_id", sa.Text, nullable=False),
        sa.Column("image_digest", sa.Text, nullable=False),
        sa.Column("purl", sa.Text, nullable=False),
        sa.Column("function", sa.Text, nullable=False),
        sa.Column("vulnerability", sa.Text, nullable=False, server_default=""),
        sa.Column("state", sa.Text, nullable=False, server_default=""),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("envelope_sha256", sa.Text, nullable=False),
        sa.Column("envelope", sa.Text, nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("envelope_sha256", name="uq_runtime_witnesses_envelope"),
        schema=schema,
    )
    op.create_index(
        "ix_runtime_witnesses_image_claim", "runtime_witnesses", ["image_digest", "claim_id"], schema=schema
    )


def downgrade() -> None:
    schema = _schema()
    op.drop_index("ix_runtime_witnesses_image_claim", "runtime_witnesses", schema=schema)
    op.drop_table("runtime_witnesses", schema=schema)
