"""A history whose DEFAULT partition is gone (dropped or detached by hand), on the real PostgreSQL.

Before the fix, a row of a day with no partition was "refused" (SQLSTATE
23514, "no partition of relation ... found for row") and quarantined: its
counts never reached the cumulative table, though the row was good. Worse,
every maintenance failed on the missing table (a new day partition takes its
rows over from the DEFAULT partition, retention deletes from it), so no day
partition was created again, and two days later every row of every flush was
quarantined. Now the write is retried after the store creates its DEFAULT
partition again, maintenance repairs it too (and uses a DEFAULT partition of
any name), and a real constraint's refusal is still quarantined.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.partitions import partition_name
from tests.integration.test_store_retention import NOW, TODAY, units

pytestmark = pytest.mark.postgres

CHILDREN = (
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = 'signals.hot_symbol_windows'::regclass"
)


def scalar(engine: sa.Engine, sql: str) -> object:
    with engine.connect() as c:
        return c.execute(sa.text(sql)).scalar()


def default_partition(engine: sa.Engine) -> object:
    return scalar(
        engine,
        "SELECT c.relname FROM pg_partitioned_table pt JOIN pg_class c ON c.oid = pt.partdefid "
        "WHERE pt.partrelid = 'signals.hot_symbol_windows'::regclass",
    )


def drop_default(engine: sa.Engine) -> None:
    with engine.begin() as c:
        c.execute(sa.text("DROP TABLE signals.hot_symbol_windows_default"))


def test_a_row_no_partition_takes_is_stored_after_the_default_partition_is_created_again(
    pg_url: str,
) -> None:
    store = open_store(pg_url)
    try:
        drop_default(store.engine)
        # a spool replayed late (day 5 before today: no day partition) and today's rows
        result = store.write_batch(Batch("node-1/a", 1, units([5, 0])))  # type: ignore[arg-type]
        assert (result.written, result.quarantined, result.errors) == (4, 0, [])
        assert scalar(store.engine, "SELECT count(*) FROM signals.quarantined_rows") == 0
        assert store.read_hot_symbols()[0]["invocation_count"] == 15 + 10  # both days' calls
        assert {(w["window_start"].date(), w["invocation_count"]) for w in store.read_windows()} == {
            (TODAY - dt.timedelta(days=5), 15),
            (TODAY, 10),
        }
        assert default_partition(store.engine) == "hot_symbol_windows_default"
        assert scalar(store.engine, "SELECT count(*) FROM signals.hot_symbol_windows_default") == 1
        # retried: the ledger has it
        again = store.write_batch(Batch("node-1/a", 1, units([5, 0])))  # type: ignore[arg-type]
        assert (again.written, again.duplicate) == (0, 4)
        assert store.read_hot_symbols()[0]["invocation_count"] == 25
    finally:
        store.close()


def test_maintenance_creates_the_missing_default_partition_and_the_days_ahead(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        store.maintain(now=NOW, retention=False)
        drop_default(store.engine)
        later = NOW + dt.timedelta(days=3)
        done = store.maintain(now=later)  # failed on the missing table for ever before
        assert done.ran and done.default_created
        assert partition_name(later.date() + dt.timedelta(days=2)) in done.created
        assert default_partition(store.engine) == "hot_symbol_windows_default"
        assert not store.maintain(now=later).default_created  # once
    finally:
        store.close()


def test_a_default_partition_of_another_name_is_used_as_it_is(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        drop_default(store.engine)
        with store.engine.begin() as c:
            c.execute(
                sa.text(
                    'CREATE TABLE signals."Old ""default"" part" '
                    "PARTITION OF signals.hot_symbol_windows DEFAULT"
                )
            )
        # nine days ago and nine days ahead: no day partition, both in the DEFAULT partition
        result = store.write_batch(Batch("node-1/a", 1, units([9, -9])))  # type: ignore[arg-type]
        assert (result.written, result.quarantined) == (4, 0)
        done = store.maintain(now=NOW + dt.timedelta(days=8), retention=False)
        assert done.ran and not done.default_created
        assert done.moved_rows == 1 and partition_name(TODAY + dt.timedelta(days=9)) in done.created
        with store.engine.connect() as c:
            children = set(c.execute(sa.text(CHILDREN)).scalars())
            kept = c.execute(sa.text('SELECT count(*) FROM signals."Old ""default"" part"')).scalar()
        assert 'Old "default" part' in children and "hot_symbol_windows_default" not in children
        assert kept == 1
        done = store.maintain(now=NOW + dt.timedelta(days=8))  # the retention deletes from it too
        assert done.ran and done.deleted_rows == 0
        assert scalar(store.engine, "SELECT count(*) FROM signals.quarantined_rows") == 0
        assert store.read_hot_symbols()[0]["invocation_count"] == 19 + 1
    finally:
        store.close()


def test_a_real_constraint_of_the_history_still_quarantines_its_row(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        with store.engine.begin() as c:
            c.execute(
                sa.text(
                    "ALTER TABLE signals.hot_symbol_windows "
                    "ADD CONSTRAINT few_calls CHECK (invocation_count < 12)"
                )
            )
        result = store.write_batch(Batch("node-1/a", 1, units([0, 5])))  # type: ignore[arg-type]
        assert (result.written, result.quarantined) == (3, 1)
        assert "few_calls" in result.errors[0]
        assert store.read_hot_symbols()[0]["invocation_count"] == 10
    finally:
        store.close()


def _columns(engine: sa.Engine) -> list[tuple[str, str, bool]]:
    """The history's live columns, in order: (name, type, NOT NULL)."""
    with engine.connect() as c:
        rows = c.execute(
            sa.text(
                "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute "
                "WHERE attrelid = 'signals.hot_symbol_windows'::regclass AND attnum > 0 "
                "AND NOT attisdropped ORDER BY attnum"
            )
        ).all()
    return [(str(r[0]), str(r[1]), bool(r[2])) for r in rows]


def _swap_counts(cols: list[tuple[str, str, bool]]) -> list[tuple[str, str, bool]]:
    """invocation_count and total_latency_ns (both bigint) in each other's place."""
    names = [c[0] for c in cols]
    i, j = names.index("invocation_count"), names.index("total_latency_ns")
    out = cols[:]
    out[i], out[j] = out[j], out[i]
    return out


@pytest.mark.parametrize("order", [_swap_counts, lambda cols: cols[::-1]], ids=["swapped", "reversed"])
def test_a_hand_made_default_partition_with_another_column_order_keeps_its_rows_exact(
    pg_url: str, order: object
) -> None:
    """A DBA's DEFAULT partition (made and attached by hand) lists the columns in another order.

    A new day partition took its rows over with ``SELECT *``, by position: with two bigint columns
    swapped the moved rows' calls became latency (the count read 0, silently), and with the order
    reversed maintenance failed on the types every hour (no day partition created again)."""
    store = open_store(pg_url)
    try:
        assert callable(order)
        cols = order(_columns(store.engine))
        body = ", ".join(f"{n} {t}{' NOT NULL' * nn}" for n, t, nn in cols)
        drop_default(store.engine)
        with store.engine.begin() as c:
            c.execute(sa.text(f"CREATE TABLE signals.dba_default ({body})"))
            c.execute(
                sa.text("ALTER TABLE signals.hot_symbol_windows ATTACH PARTITION signals.dba_default DEFAULT")
            )
        result = store.write_batch(Batch("node-1/a", 1, units([-9])))  # type: ignore[arg-type]
        assert (result.written, result.quarantined) == (2, 0)
        done = store.maintain(now=NOW + dt.timedelta(days=8), retention=False)
        assert done.ran and done.moved_rows == 1
        assert partition_name(TODAY + dt.timedelta(days=9)) in done.created
        ((window,),) = [store.read_windows()]
        assert (window["invocation_count"], window["total_latency_ns"]) == (10 - 9, 0)
        assert window["window_start"].date() == TODAY + dt.timedelta(days=9)
        assert scalar(store.engine, "SELECT count(*) FROM signals.dba_default") == 0
        assert store.read_hot_symbols()[0]["invocation_count"] == 1
    finally:
        store.close()
