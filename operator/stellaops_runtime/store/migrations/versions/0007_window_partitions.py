"""The per-window history becomes append-only and partitioned by day (issue 13).

PostgreSQL:

- ``hot_symbol_windows`` is recreated as a table partitioned by RANGE of
  ``window_start``, one partition per UTC day (``hot_symbol_windows_pYYYYMMDD``)
  and a DEFAULT partition, so an insert never fails for want of a partition.
  It has no ``id`` and no unique (key, window): the writer appends one row per
  (key, window) per flush and every reader sums. One index,
  (image_digest, function_name, window_start), serves the queries. Existing
  rows are copied over unchanged: day partitions are created for every day of
  the last :data:`MAX_DAYS` that has rows (older rows go to the DEFAULT
  partition) and for yesterday .. today + 2 (database clock);
- ``hot_symbols`` gets fillfactor 50 and loses ``ix_hot_symbols_last_seen``
  (no query reads it): a flush's update of a cumulative row is then a HOT
  update, with no index entry to write;
- ``observation_windows`` gets an index on ``window_start``, for retention.

SQLite: the history keeps its shape (the upsert path needs its unique key);
``ix_hot_symbols_last_seen`` goes and the ``window_start`` index comes, as on
PostgreSQL.

The downgrade restores revision 0006's shape, with one row per (key, window)
(appended rows are summed).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

MAX_DAYS = 400
_KEY = "image_digest, module, function_name, evidence_kind"
_COLS = (
    f"{_KEY}, window_start, invocation_count, unique_callers, total_latency_ns, max_latency_ns, "
    "first_seen, last_seen"
)


def _postgres() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def _day_partition(day: dt.date) -> str:
    nxt = day + dt.timedelta(days=1)
    return (
        f"CREATE TABLE IF NOT EXISTS signals.hot_symbol_windows_p{day:%Y%m%d} "
        f"PARTITION OF signals.hot_symbol_windows "
        f"FOR VALUES FROM ('{day.isoformat()} 00:00:00+00') TO ('{nxt.isoformat()} 00:00:00+00')"
    )


def upgrade() -> None:
    if not _postgres():
        op.drop_index("ix_hot_symbols_last_seen", "hot_symbols")
        op.create_index("ix_observation_windows_window_start", "observation_windows", ["window_start"])
        return
    bind = op.get_bind()
    op.execute("ALTER TABLE signals.hot_symbol_windows RENAME TO hot_symbol_windows_0006")
    op.execute(
        """
        CREATE TABLE signals.hot_symbol_windows (
            image_digest text NOT NULL,
            module text NOT NULL,
            function_name text NOT NULL,
            evidence_kind text NOT NULL,
            window_start timestamptz NOT NULL,
            invocation_count bigint NOT NULL,
            unique_callers integer NOT NULL,
            total_latency_ns bigint NOT NULL,
            max_latency_ns bigint NOT NULL,
            first_seen timestamptz NOT NULL,
            last_seen timestamptz NOT NULL
        ) PARTITION BY RANGE (window_start)
        """
    )
    op.execute(
        "CREATE INDEX ix_hot_symbol_windows_image_function_window "
        "ON signals.hot_symbol_windows (image_digest, function_name, window_start)"
    )
    op.execute(
        "CREATE TABLE signals.hot_symbol_windows_default PARTITION OF signals.hot_symbol_windows DEFAULT"
    )
    today = bind.execute(sa.text("SELECT CAST(now() AT TIME ZONE 'UTC' AS date)")).scalar_one()
    have = bind.execute(
        sa.text(
            "SELECT DISTINCT CAST(window_start AT TIME ZONE 'UTC' AS date) "
            "FROM signals.hot_symbol_windows_0006"
        )
    ).scalars()
    oldest = today - dt.timedelta(days=MAX_DAYS)
    days = {d for d in have if oldest <= d <= today + dt.timedelta(days=2)}
    days |= {today + dt.timedelta(days=n) for n in range(-1, 3)}
    for day in sorted(days):
        op.execute(_day_partition(day))
    op.execute(
        f"INSERT INTO signals.hot_symbol_windows ({_COLS}) "
        f"SELECT {_COLS} FROM signals.hot_symbol_windows_0006"
    )
    op.execute("DROP TABLE signals.hot_symbol_windows_0006")
    op.execute("DROP INDEX signals.ix_hot_symbols_last_seen")
    op.execute("ALTER TABLE signals.hot_symbols SET (fillfactor = 50)")
    op.execute(
        "CREATE INDEX ix_observation_windows_window_start ON signals.observation_windows (window_start)"
    )


def downgrade() -> None:
    if not _postgres():
        op.drop_index("ix_observation_windows_window_start", "observation_windows")
        op.create_index("ix_hot_symbols_last_seen", "hot_symbols", ["last_seen"])
        return
    op.execute("DROP INDEX signals.ix_observation_windows_window_start")
    op.execute("ALTER TABLE signals.hot_symbols RESET (fillfactor)")
    op.execute("CREATE INDEX ix_hot_symbols_last_seen ON signals.hot_symbols (last_seen)")
    op.execute("ALTER TABLE signals.hot_symbol_windows RENAME TO hot_symbol_windows_0007")
    op.execute(
        """
        CREATE TABLE signals.hot_symbol_windows (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            image_digest text NOT NULL,
            module text NOT NULL,
            function_name text NOT NULL,
            evidence_kind text NOT NULL,
            window_start timestamptz NOT NULL,
            invocation_count bigint NOT NULL,
            unique_callers integer NOT NULL,
            total_latency_ns bigint NOT NULL,
            max_latency_ns bigint NOT NULL,
            first_seen timestamptz NOT NULL,
            last_seen timestamptz NOT NULL,
            CONSTRAINT uq_hot_symbol_windows_key UNIQUE (image_digest, module, function_name, evidence_kind,
                window_start)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_hot_symbol_windows_image_window "
        "ON signals.hot_symbol_windows (image_digest, window_start)"
    )
    op.execute(
        f"""
        INSERT INTO signals.hot_symbol_windows ({_COLS})
        SELECT {_KEY}, window_start, sum(invocation_count), max(unique_callers), sum(total_latency_ns),
            max(max_latency_ns), min(first_seen), max(last_seen)
        FROM signals.hot_symbol_windows_0007
        GROUP BY {_KEY}, window_start
        """
    )
    op.execute("DROP TABLE signals.hot_symbol_windows_0007")
