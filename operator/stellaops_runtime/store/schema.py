"""The hot-symbol store's tables, as SQLAlchemy Core metadata.

The tables in PostgreSQL schema ``signals`` (SQLite gets the same tables
without a schema: engines map ``signals`` to ``None`` with
``schema_translate_map``, see :mod:`stellaops_runtime.store.engine`):

- ``hot_symbols``: one cumulative row per key (image, module, function,
  evidence kind), so one function name in two packages never collides;
- ``hot_symbol_windows``: the same counts per aggregation window, the history
  that answers "more than 1000 calls a day". On PostgreSQL (migration 0007)
  it is append-only and partitioned by UTC day of ``window_start`` (plus a
  DEFAULT partition), with no row identity and no unique key: one (key,
  window) may have several rows (agents, flushes) and every reader sums them;
  whole days go when ``store.retentionDays`` passes
  (:mod:`stellaops_runtime.store.partitions`). SQLite keeps its ``id`` and
  the unique (key, window) its upsert needs;
- ``flush_ledger`` and ``quarantined_rows`` (migration 0004): which agent
  flushes were committed, so a retry never counts twice, and the rows the
  database refused, with the error, so one bad row never blocks a batch;
- ``runtime_witnesses`` (migration 0006): signed witnesses, by image and claim;
- ``observation_windows``: when an image was under observation on a node, the
  other half of "observed for 30 days, never called", and how well:
  ``posture_level`` is the rank of the highest posture the window's events
  evidenced (``contracts.posture``; NULL = unknown, rows from before
  migration 0003), ``window_seconds`` the window's length (NULL = unknown)
  and ``source`` the event source ("tetragon"); ``gap_start``..``gap_end``,
  ``throttle_count`` and ``dropped_events`` (migration 0005) the gap Tetragon
  reported in the window (throttled cgroup, rate-limited export), rows with
  an empty ``image_digest`` being node-wide gaps; ``evidenced_level``
  (migration 0009) the posture rank by the rule of ``contracts.posture``
  today, written by agents from 0009 on (NULL: only older agents wrote the
  window, whose ``posture_level`` 3/4 came from uprobes and USDT; readers
  take a window's posture from ``store.watched_sql.window_level``);
  ``marked_by`` (migration 0013) the agent that wrote the window's
  unwatched-container mark (store/marks.py);
- ``image_pairs`` (migration 0014): an image's config digest beside the manifest
  digest the agent files it under (store/image_pairs.py, store/same_image.py);
- ``node_liveness`` (migration 0015): each node's proof of life on the store's
  clock, written at every flush (store/node_liveness.py, store/coverage_open.py); with migration
  0017 its agent's graceful stop record (store/node_stop.py).
- ``node_fact_builds`` (migration 0016): every build-id a node's ``unprobed`` fact
  (``host:<node>``) was stored with, where ``hot_symbols`` keeps the first
  (store/fact_builds.py, store/node_facts.py).

Keys (migration 0008): on PostgreSQL every primary and unique key includes
the column the table is distributed by on Citus (``image_digest``, or
``agent_id`` for the ledger and the quarantine; the plan is
:mod:`stellaops_runtime.store.citus`), so ``hot_symbols`` and
``observation_windows`` are keyed by their natural key with no ``id``.
SQLite keeps its ``id`` columns and 0007's unique keys on the same columns.

The migrations (``store/migrations/versions``) create exactly these tables;
this module is what the writer and the queries use. Timestamps are
timezone-aware UTC on both backends (:class:`UtcDateTime`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from stellaops_runtime.store.timeconv import datetime_to_ns, ns_to_datetime  # noqa: F401 (re-exported)

SCHEMA = "signals"
# Engines on SQLite run with this map: same tables, no schema.
SQLITE_SCHEMA_MAP: dict[str | None, str | None] = {SCHEMA: None}

KEY_COLUMNS = ("image_digest", "module", "function_name", "evidence_kind")


class UtcDateTime(sa.TypeDecorator[dt.datetime]):
    """``timestamptz`` on PostgreSQL; on SQLite naive UTC text read back as aware UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class utc_date(FunctionElement[dt.date]):
    """The UTC calendar day of a UTC timestamp column, on either backend."""

    type = sa.Date()
    inherit_cache = True
    name = "utc_date"


@compiles(utc_date, "postgresql")
def _utc_date_pg(element: utc_date, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(({compiler.process(element.clauses, **kw)}) AT TIME ZONE 'UTC' AS DATE)"


@compiles(utc_date)
def _utc_date_default(element: utc_date, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)})"


def _id() -> sa.Column[int]:
    """A bigint identity (Citus fills sequences on workers only for bigint); part of the primary key."""
    return sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), nullable=False
    )


def _key_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("image_digest", sa.Text, nullable=False),
        sa.Column("module", sa.Text, nullable=False),
        sa.Column("function_name", sa.Text, nullable=False),
        sa.Column("evidence_kind", sa.Text, nullable=False),
    ]


JSON_TYPE = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")

metadata = sa.MetaData(schema=SCHEMA)

# PostgreSQL: fillfactor 50 (migration 0007). A flush rewrites the cumulative row of every key
# it reports; with room on the page and no indexed column changed, that is a HOT update (no
# index entry written). Hence also no index on last_seen, which no query reads.
hot_symbols = sa.Table(
    "hot_symbols",
    metadata,
    *_key_columns(),
    sa.Column("build_id", sa.Text, nullable=False, server_default=""),
    sa.Column("purl", sa.Text, nullable=False, server_default=""),
    sa.Column("function_id", sa.Text, nullable=False, server_default=""),
    sa.Column("invocation_count", sa.BigInteger, nullable=False),
    sa.Column("unique_callers", sa.Integer, nullable=False),
    sa.Column("total_latency_ns", sa.BigInteger, nullable=False),
    sa.Column("max_latency_ns", sa.BigInteger, nullable=False),
    sa.Column("confidence", sa.REAL, nullable=False),
    sa.Column("first_seen", UtcDateTime, nullable=False),
    sa.Column("last_seen", UtcDateTime, nullable=False),
    sa.Column("node_name", sa.Text, nullable=False, server_default=""),
    sa.Column("sample", JSON_TYPE, nullable=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint(*KEY_COLUMNS, name="pk_hot_symbols"),  # SQLite: id + uq_hot_symbols_key
    sa.Index("ix_hot_symbols_image_function", "image_digest", "function_name"),
    sa.Index("ix_hot_symbols_image_purl", "image_digest", "purl"),
    sa.Index("ix_hot_symbols_purl_prefix", "purl", postgresql_ops={"purl": "text_pattern_ops"}),
    sa.Index("ix_hot_symbols_function_id", "function_id"),
)

hot_symbol_windows = sa.Table(
    "hot_symbol_windows",
    metadata,
    *_key_columns(),
    sa.Column("window_start", UtcDateTime, nullable=False),
    sa.Column("invocation_count", sa.BigInteger, nullable=False),
    sa.Column("unique_callers", sa.Integer, nullable=False),
    sa.Column("total_latency_ns", sa.BigInteger, nullable=False),
    sa.Column("max_latency_ns", sa.BigInteger, nullable=False),
    sa.Column("first_seen", UtcDateTime, nullable=False),
    sa.Column("last_seen", UtcDateTime, nullable=False),
    sa.Index("ix_hot_symbol_windows_image_function_window", "image_digest", "function_name", "window_start"),
)

observation_windows = sa.Table(
    "observation_windows",
    metadata,
    sa.Column("image_digest", sa.Text, nullable=False),
    sa.Column("node_name", sa.Text, nullable=False),
    sa.Column("window_start", UtcDateTime, nullable=False),
    sa.Column("event_count", sa.BigInteger, nullable=False),
    sa.Column("posture_level", sa.SmallInteger, nullable=True),
    sa.Column("window_seconds", sa.Integer, nullable=True),
    sa.Column("source", sa.Text, nullable=False, server_default=""),
    # Migration 0005: the gap Tetragon reported in the window (NULL: none); image_digest "" = node-wide.
    sa.Column("gap_start", UtcDateTime, nullable=True),
    sa.Column("gap_end", UtcDateTime, nullable=True),
    sa.Column("throttle_count", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("dropped_events", sa.BigInteger, nullable=False, server_default="0"),
    # Migration 0009: the rank by today's posture rule (contracts/posture.py); NULL: older agents only.
    sa.Column("evidenced_level", sa.SmallInteger, nullable=True),
    # Migration 0013: the agent_id that wrote the mark (evidenced_level 0; "*": several; NULL: older
    # agents, or no mark): a restate row clears only its own agent's mark (store/marks.py).
    sa.Column("marked_by", sa.Text, nullable=True),
    # SQLite: id + uq_observation_windows_key on the same columns.
    sa.PrimaryKeyConstraint("image_digest", "node_name", "window_start", name="pk_observation_windows"),
    sa.Index("ix_observation_windows_window_start", "window_start"),  # retention (migration 0007)
    # An agent's latest window of its node (agent/node_history.py; migration 0010).
    sa.Index("ix_observation_windows_node_window", "node_name", "window_start"),
)

# Migration 0004: exactly-once flushes (store/ledger.py) and rows the database refused.
flush_ledger = sa.Table(
    "flush_ledger",
    metadata,
    sa.Column("agent_id", sa.Text, nullable=False),
    sa.Column("flush_seq", sa.BigInteger, nullable=False),
    sa.Column("part", sa.Text, nullable=False),
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.Column("committed_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("agent_id", "flush_seq", "part", name="pk_flush_ledger"),
    sa.Index("ix_flush_ledger_committed_at", "committed_at"),
)

quarantined_rows = sa.Table(
    "quarantined_rows",
    metadata,
    _id(),
    sa.Column("agent_id", sa.Text, nullable=False),
    sa.Column("table_name", sa.Text, nullable=False),
    sa.Column("row_json", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("quarantined_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("agent_id", "id", name="pk_quarantined_rows"),  # SQLite: id alone
)

# Migration 0006: signed runtime witnesses (witness/, docs/witnesses.md).
runtime_witnesses = sa.Table(
    "runtime_witnesses",
    metadata,
    _id(),
    sa.Column("claim_id", sa.Text, nullable=False),
    sa.Column("image_digest", sa.Text, nullable=False),
    sa.Column("purl", sa.Text, nullable=False),
    sa.Column("function", sa.Text, nullable=False),
    sa.Column("vulnerability", sa.Text, nullable=False, server_default=""),
    sa.Column("state", sa.Text, nullable=False, server_default=""),
    sa.Column("key_id", sa.Text, nullable=False),
    sa.Column("envelope_sha256", sa.Text, nullable=False),
    sa.Column("envelope", sa.Text, nullable=False),
    sa.Column("issued_at", UtcDateTime, nullable=False),
    # PostgreSQL (0008): as strict as the digest alone, since an envelope names its image; SQLite: digest.
    sa.UniqueConstraint("envelope_sha256", "image_digest", name="uq_runtime_witnesses_envelope"),
    sa.PrimaryKeyConstraint("id", "image_digest", name="pk_runtime_witnesses"),  # SQLite: id alone
    sa.Index("ix_runtime_witnesses_image_claim", "image_digest", "claim_id"),
)

# Migration 0014: an image's config digest and the manifest digest it is filed under.
image_pairs = sa.Table(
    "image_pairs",
    metadata,
    sa.Column("image_digest", sa.Text, nullable=False),  # the manifest digest
    sa.Column("config_digest", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("image_digest", "config_digest", name="pk_image_pairs"),
    sa.Index("ix_image_pairs_config", "config_digest"),
)

# Migration 0015: each node's proof of life, stamped by the store's clock (store/node_liveness.py).
node_liveness = sa.Table(
    "node_liveness",
    metadata,
    sa.Column("node_name", sa.Text, nullable=False),
    sa.Column("agent_id", sa.Text, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),  # store clock
    sa.Column("started_node", UtcDateTime, nullable=False),  # node clock
    sa.Column("alive_through", UtcDateTime, nullable=False),  # store clock
    sa.Column("alive_node", UtcDateTime, nullable=False),  # node clock
    sa.Column("written_at", UtcDateTime, nullable=False),  # store clock
    sa.Column("flush_seconds", sa.Float, nullable=False),
    sa.Column("window_seconds", sa.Integer, nullable=False),
    # Migration 0017: the agent's graceful stop record (store/node_stop.py); NULL: none written.
    sa.Column("stopped_at", UtcDateTime, nullable=True),  # store clock
    sa.Column("stop_agent", sa.Text, nullable=True),
    sa.Column("stop_reason", sa.Text, nullable=True),
    sa.Column("running_images", sa.Text, nullable=True),  # a JSON list of image digests
    sa.Column("images_uncertain", sa.Boolean(create_constraint=False), nullable=True),
    sa.Column("gone", sa.Boolean(create_constraint=False), nullable=True),
    sa.PrimaryKeyConstraint("node_name", name="pk_node_liveness"),
)

# Migration 0016: each build a node's ``unprobed`` fact was stored of (hot_symbols keeps its first).
node_fact_builds = sa.Table(
    "node_fact_builds",
    metadata,
    sa.Column("image_digest", sa.Text, nullable=False),  # host:<node>
    sa.Column("module", sa.Text, nullable=False),
    sa.Column("function_name", sa.Text, nullable=False),
    sa.Column("build_id", sa.Text, nullable=False),
    # a node's facts of a function: its images and names lead, as node_facts.py reads them
    sa.PrimaryKeyConstraint(
        "image_digest", "function_name", "module", "build_id", name="pk_node_fact_builds"
    ),
)

# Columns added by migration 0003; a store at an older revision lacks them.
OBSERVATION_POSTURE_COLUMNS = ("posture_level", "window_seconds", "source")
# Columns added by migration 0005 (observation gaps); likewise.
OBSERVATION_GAP_COLUMNS = ("gap_start", "gap_end", "throttle_count", "dropped_events")
# Column added by migration 0009 (the posture by today's rule); likewise.
OBSERVATION_RULE_COLUMNS = ("evidenced_level",)
