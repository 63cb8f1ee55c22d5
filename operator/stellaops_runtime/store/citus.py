"""Where each store table goes on a Citus cluster, as the exact calls an operator runs.

At fleet scale the store runs on Citus, PostgreSQL sharded across nodes
(docs/operations.md, "Running the store on Citus"). Citus enforces a primary
key or unique constraint only when it includes the table's distribution
column, and a foreign key between distributed tables only between co-located
tables and through that column. This module is the one place that says, per
table, how it is distributed, and renders the ``create_distributed_table`` /
``create_reference_table`` calls the operations doc shows verbatim (a test
holds the two equal). :mod:`stellaops_runtime.store.citus_check` checks the
real schema against it.

The plan:

- by ``image_digest``, in one co-location group anchored on ``hot_symbols``:
  the tables that grow with the fleet's images. A query or a flush about
  one image then touches one shard of each, on one node, and the joins
  between them (watched days minus called days) stay on that node;
- by ``agent_id``, in a second group: ``flush_ledger`` (a row per agent flush,
  read and pruned by agent) and ``quarantined_rows`` (the rows an agent's
  flush was refused, written in the same transaction as its ledger row, so
  that transaction stays on one node). Neither is a reference table: every
  flush writes the ledger, and a reference table's write goes to every node
  with a two-phase commit, a cost that grows with the cluster;
- by ``node_name``, a group of its own: ``export_positions`` (a row per node,
  written by the flushes of its export-file agent, read by the next one) and
  ``export_spans`` (the bytes of the file each agent's stored counts cover,
  written in the same transactions);
- no reference tables: no small table is read by joins from every shard;
- :data:`LOCAL` tables stay plain tables on the coordinator (Alembic's
  version row, read only by migrations, which run on the coordinator).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stellaops_runtime.store.schema import SCHEMA

Kind = Literal["distributed", "reference"]


@dataclass(frozen=True, slots=True)
class Placement:
    """How one table is placed on Citus."""

    table: str
    kind: Kind
    column: str = ""  # the distribution column ("" for a reference table)
    colocate_with: str = ""  # a table earlier in PLAN, or "none" to start a group
    why: str = ""

    @property
    def qualified(self) -> str:
        return f"{SCHEMA}.{self.table}"

    def statement(self) -> str:
        """The exact SQL an operator runs on the coordinator for this table."""
        if self.kind == "reference":
            return f"SELECT create_reference_table('{self.qualified}');"
        group = self.colocate_with if self.colocate_with == "none" else f"{SCHEMA}.{self.colocate_with}"
        return (
            f"SELECT create_distributed_table('{self.qualified}', '{self.column}', "
            f"colocate_with => '{group}');"
        )

    def truncate_statement(self) -> str:
        """Removes the coordinator's leftover local copy once the rows are on the shards."""
        return f"SELECT truncate_local_data_after_distributing_table('{self.qualified}');"


# In the order the calls must run: a co-location group's anchor before its members.
PLAN: tuple[Placement, ...] = (
    Placement(
        "hot_symbols", "distributed", "image_digest", "none",
        "cumulative counts, one row per (image, module, function, evidence); anchors the image group",
    ),
    Placement(
        "hot_symbol_windows", "distributed", "image_digest", "hot_symbols",
        "per-window history, partitioned by day; append-only, no unique key",
    ),
    Placement(
        "observation_windows", "distributed", "image_digest", "hot_symbols",
        "watched windows per image and node; node-wide gaps are the rows of image ''",
    ),
    Placement(
        "runtime_witnesses", "distributed", "image_digest", "hot_symbols",
        "signed witnesses, found by image",
    ),
    Placement(
        "image_pairs", "distributed", "image_digest", "hot_symbols",
        "an image's config digest beside the manifest digest it is filed under",
    ),
    Placement(
        "node_fact_builds", "distributed", "image_digest", "hot_symbols",
        "each build a node's unprobed fact was stored of, on its host:<node> image's shard",
    ),
    Placement(
        "flush_ledger", "distributed", "agent_id", "none",
        "one row per agent flush; anchors the agent group",
    ),
    Placement(
        "quarantined_rows", "distributed", "agent_id", "flush_ledger",
        "refused rows, written with their ledger row in one transaction",
    ),
    Placement(
        "export_positions", "distributed", "node_name", "none",
        "one row per node: where its stored counts of the export file end",
    ),
    Placement(
        "export_spans", "distributed", "node_name", "export_positions",
        "per node, agent and file: the bytes of the export file its stored counts cover",
    ),
    Placement(
        "node_liveness", "distributed", "node_name", "export_positions",
        "one row per node: the store-clock moment its agent watched and stored everything up to",
    ),
)  # fmt: skip

# Tables that stay local on the coordinator.
LOCAL: tuple[str, ...] = ("alembic_version",)


def placement(table: str) -> Placement | None:
    return next((p for p in PLAN if p.table == table), None)


def statements() -> list[str]:
    """The distribution calls, in order."""
    return [p.statement() for p in PLAN]


def truncate_statements() -> list[str]:
    """After distributing a database that held rows: drop the coordinator's local copies."""
    return [p.truncate_statement() for p in PLAN]
