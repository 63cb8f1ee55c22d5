"""Observation windows record the posture their events evidence by today's rule (``evidenced_level``).

Agents before this revision recorded uprobe events as EbpfDeep and USDT
events as FullInstrumentation (``posture_level`` 3 and 4), and every
kernel-probe event as ActiveTracing, with a user stack or not. The rule of
``stellaops_runtime.contracts.posture`` is stricter: only a kernel-probe event
whose user stack was counted evidences EbpfDeep, the lowest posture that backs
a "not observed", and uprobes and USDT are ActiveTracing (they show the calls
of the functions they probe only). A ``posture_level`` of 3 or 4 written by
an older agent therefore says nothing about whether function calls could be
seen, and the store cannot tell, for such a window, whether its events had
counted user stacks.

The column is not filled here: every existing row keeps NULL, and so does
every row an older agent writes after this revision (agents of two versions
write to one store during a rollout, docs/operations.md "Upgrading"; an
older agent does not know the column). Readers take a window's posture as
``evidenced_level`` when an agent of this revision or later wrote to it, and
never above ActiveTracing from ``posture_level`` alone
(``store.watched_sql.window_level``): an older window reads as not
function-visible, so a "not observed" or a VEX ``not_affected`` never rests
on it, and the answer says why. A nullable column with no default: a
catalog-only change on PostgreSQL (no table rewrite) that Citus propagates to
the shards of the distributed ``observation_windows``; no key changes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _schema() -> str | None:
    return "signals" if op.get_bind().dialect.name == "postgresql" else None


def upgrade() -> None:
    op.add_column(
        "observation_windows", sa.Column("evidenced_level", sa.SmallInteger, nullable=True), schema=_schema()
    )


def downgrade() -> None:
    with op.batch_alter_table("observation_windows", schema=_schema()) as batch:
        batch.drop_column("evidenced_level")
