"""``node_fact_builds``: every build a node's ``unprobed`` fact was stored of.

A node's agent stores the unprobed tails and clones of a ``binaryPath`` function as ``unprobed``
facts of ``host:<node>`` with the file's build-id (native/host_tails.py). ``hot_symbols`` keeps one
row per (image, path, function, kind) with its FIRST build-id, so once the node's file was upgraded
in place the new build's fact lay in the old build's row, and a hostPath container showing only the
new build met no fact ("not observed" while the new build's tail ran unprobed). This table keeps
each (host image, path, function, build-id) the agents stored (store/fact_builds.py), and
store/node_facts.py meets a container's rows with the facts of the builds they show.

Keyed by (``image_digest``, ``function_name``, ``module``, ``build_id``): the reader's order, and
``image_digest`` is the distribution column on Citus, co-located with the image tables. Written
with ON CONFLICT DO NOTHING: idempotent, any number of agents. The facts stored before this
revision are copied in with the build-id their row kept (the others were not stored).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def _schema() -> str | None:
    return "signals" if op.get_bind().dialect.name == "postgresql" else None


def upgrade() -> None:
    op.create_table(
        "node_fact_builds",
        sa.Column("image_digest", sa.Text, nullable=False),
        sa.Column("module", sa.Text, nullable=False),
        sa.Column("function_name", sa.Text, nullable=False),
        sa.Column("build_id", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint(
            "image_digest", "function_name", "module", "build_id", name="pk_node_fact_builds"
        ),
        schema=_schema(),
    )
    prefix = "signals." if _schema() else ""
    # a key past store/fact_builds.py's MAX_KEY_BYTES (2,650) is not kept: PostgreSQL's index would
    # refuse it, and the upgrade with it; such a fact is met by the build its row keeps, as before
    size = " + ".join(
        f"octet_length({c})" if _schema() else f"length(CAST({c} AS BLOB))"
        for c in ("image_digest", "module", "function_name", "build_id")
    )
    op.execute(
        f"INSERT INTO {prefix}node_fact_builds (image_digest, module, function_name, build_id) "
        f"SELECT image_digest, module, function_name, build_id FROM {prefix}hot_symbols "
        "WHERE evidence_kind = 'unprobed' AND build_id <> '' AND substr(image_digest, 1, 5) = 'host:' "
        f"AND {size} <= 2650"
    )


def downgrade() -> None:
    op.drop_table("node_fact_builds", schema=_schema())
