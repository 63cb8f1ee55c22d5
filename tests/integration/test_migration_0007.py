"""Migration 0007 on a store holding data written at revision 0006, on real PostgreSQL and SQLite.

PostgreSQL: the per-window history becomes a day-partitioned table with every
row copied over unchanged (recent days in day partitions, a 500-day-old row in
the DEFAULT partition), the answers the queries give are the same before and
after, writes go on adding up, and the downgrade gives 0006's shape back with
the same sums. SQLite: the same rows and answers, the index changes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store import day_counts, queries
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import alembic_config, create_store_engine, migrate, open_store
from stellaops_runtime.store.partitions import partition_name
from stellaops_runtime.store.schema import (
    datetime_to_ns,
    hot_symbol_windows,
    hot_symbols,
    observation_windows,
)

IMG = "sha256:" + "f" * 64
TODAY = dt.datetime.now(dt.UTC).date()
DAYS_AGO = (0, 1, 10, 29, 500, -5)  # -5: a row from a skewed clock, five days ahead


def _start(days_ago: int, minute: int) -> dt.datetime:
    return dt.datetime.combine(TODAY - dt.timedelta(days=days_ago), dt.time(), dt.UTC) + dt.timedelta(
        minutes=minute
    )


def _fill_0006(conn: sa.Connection) -> None:
    """Rows as revision 0006's writer left them: one per (key, window), cumulative rows, watched days."""
    for i, d in enumerate(DAYS_AGO):
        for minute in (0, 61):
            s, n = _start(d, minute), 100 * i + minute
            conn.execute(
                hot_symbol_windows.insert().values(
                    image_digest=IMG, module="/lib/x.so", function_name="fn", evidence_kind="invoked",
                    window_start=s, invocation_count=n, unique_callers=2, total_latency_ns=n,
                    max_latency_ns=9, first_seen=s, last_seen=s,
                )
            )  # fmt: skip
    for d in range(40):
        conn.execute(
            observation_windows.insert().values(
                image_digest=IMG, node_name="node-1", window_start=_start(d, 0), event_count=5,
                posture_level=3, window_seconds=60, source="tetragon",
            )
        )  # fmt: skip
    total = sum(100 * i + m for i in range(len(DAYS_AGO)) for m in (0, 61))
    conn.execute(
        hot_symbols.insert().values(
            image_digest=IMG, module="/lib/x.so", function_name="fn", evidence_kind="invoked",
            invocation_count=total, unique_callers=2, total_latency_ns=total, max_latency_ns=9,
            confidence=1.0, first_seen=_start(500, 0), last_seen=_start(-5, 61), updated_at=_start(0, 0),
        )
    )  # fmt: skip


def _history(conn: sa.Connection) -> list[tuple[Any, ...]]:
    c = hot_symbol_windows.c
    return [tuple(r) for r in conn.execute(sa.select(hot_symbol_windows).order_by(c.window_start))]


def _downgrade(engine: sa.Engine, revision: str) -> None:
    from alembic import command

    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def _answers(conn: sa.Connection) -> tuple[Any, ...]:
    return (
        day_counts.calls_per_day(
            conn, image=IMG, function="fn", days=60, until=TODAY + dt.timedelta(days=10)
        ),
        day_counts.observed_days_without_calls(conn, image=IMG, function="fn"),
        [
            (r.invocation_count, r.first_seen, r.last_seen)
            for r in queries.observed(conn, image=IMG, function="fn")
        ],
        queries.observed(conn, image=IMG, function="fn", since=_start(30, 0))[0].invocation_count,
    )


@pytest.mark.postgres
def test_0007_partitions_the_history_of_a_0006_store_and_keeps_every_row(pg_empty_url: str) -> None:
    engine = create_store_engine(pg_empty_url)
    try:
        migrate(engine, revision="0006")
        with engine.begin() as conn:
            _fill_0006(conn)
        with engine.connect() as conn:
            before, answers = _history(conn), _answers(conn)
        # 40 watched days, 4 of them with calls; but windows of agents before migration 0009 are
        # never watched at a posture that can see calls (test_migration_0009.py): no day counts.
        assert len(before) == 12 and answers[1] == 0 and answers[0]

        migrate(engine, revision="0007")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM signals.alembic_version")).scalar() == "0007"
            assert (
                conn.execute(
                    sa.text("SELECT relkind FROM pg_class WHERE oid = 'signals.hot_symbol_windows'::regclass")
                ).scalar()
                == "p"
            )
            assert _history(conn) == before
            assert _answers(conn) == answers
            where = dict(
                conn.execute(
                    sa.text(
                        "SELECT tableoid::regclass::text, count(*) FROM signals.hot_symbol_windows GROUP BY 1"
                    )
                ).all()
            )
            # days with rows get a partition; 500 days ago and 5 days ahead go to DEFAULT
            assert where.pop("signals.hot_symbol_windows_default") == 4
            assert where == {
                f"signals.{partition_name(TODAY - dt.timedelta(days=d))}": 2 for d in (0, 1, 10, 29)
            }
            names = set(
                conn.execute(
                    sa.text(
                        "SELECT inhrelid::regclass::text FROM pg_inherits "
                        "WHERE inhparent = 'signals.hot_symbol_windows'::regclass"
                    )
                ).scalars()
            )
            for n in range(-1, 3):  # yesterday .. today + 2 exist, empty or not
                assert f"signals.{partition_name(TODAY + dt.timedelta(days=n))}" in names
            indexes = set(
                conn.execute(
                    sa.text("SELECT indexname FROM pg_indexes WHERE schemaname = 'signals'")
                ).scalars()
            )
            assert (
                "ix_hot_symbols_last_seen" not in indexes and "ix_observation_windows_window_start" in indexes
            )
            opts = conn.execute(
                sa.text("SELECT reloptions FROM pg_class WHERE oid = 'signals.hot_symbols'::regclass")
            ).scalar()
            assert opts == ["fillfactor=50"]

        # the writer goes on: a new flush adds up with the migrated rows
        with open_store(pg_empty_url) as store:
            key = HotSymbolKey(IMG, "/lib/x.so", "fn", EvidenceKind.INVOKED)
            w = datetime_to_ns(_start(0, 0))
            store.write_batch(Batch("node-1/m", 1, [HotSymbolDelta(key, w, 7, w, w)]))
            total = sum(r[5] for r in before) + 7
            assert store.read_hot_symbols()[0]["invocation_count"] == total
            assert sum(x["invocation_count"] for x in store.read_windows()) == total

        _downgrade(engine, "0006")  # and back: 0006's shape, one row per (key, window), same sums
        with engine.connect() as conn:
            back = _history(conn)
            assert len(back) == 12 and sum(r[5] for r in back) == total
            assert (
                conn.execute(sa.text("SELECT count(*) FROM signals.hot_symbol_windows WHERE id > 0")).scalar()
                == 12
            )
        migrate(engine)
        with engine.connect() as conn:
            assert sum(r[5] for r in _history(conn)) == total
    finally:
        engine.dispose()


def test_0007_on_sqlite_keeps_rows_and_answers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = create_store_engine(f"sqlite:///{tmp_path}/hot.db")
    try:
        migrate(engine, revision="0006")
        with engine.begin() as conn:
            _fill_0006(conn)
        with engine.connect() as conn:
            before, answers = _history(conn), _answers(conn)
        migrate(engine)
        with engine.connect() as conn:
            assert _history(conn) == before and _answers(conn) == answers
            indexes = {i["name"] for i in sa.inspect(conn).get_indexes("hot_symbols")}
            assert "ix_hot_symbols_last_seen" not in indexes
            assert "ix_observation_windows_window_start" in {
                i["name"] for i in sa.inspect(conn).get_indexes("observation_windows")
            }
    finally:
        engine.dispose()
