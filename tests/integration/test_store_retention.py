"""Day partitions of the history and ``store.retentionDays``, on real PostgreSQL and SQLite.

- Retention removes history and observation windows older than the cutoff, in
  whole day partitions on PostgreSQL (and from the DEFAULT partition), by
  DELETE on SQLite; nothing younger than ``retentionDays`` goes, and the
  cumulative table is never touched.
- The "never called" answer stays consistent: a call and its watched day go
  together, and with the minimum (31 days) more than 30 watched days without a
  call remain possible.
- The writer keeps partitions ahead (yesterday .. today + 2); a row no day
  partition covers lands in the DEFAULT partition instead of failing; a day
  partition created later takes its rows over from there.
- ``store.retentionDays`` is validated (31 .. 3660) by the config and the store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from stellaops_runtime import pgwire
from stellaops_runtime.contracts.config import ConfigError, parse_config
from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store import day_counts
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.dbconn import Timeouts
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.partitions import LOCK_TIMEOUT_MS, maintain, partition_name, retention_cutoff
from stellaops_runtime.store.schema import datetime_to_ns
from stellaops_runtime.store.writer import MAINTAIN_EVERY_SECONDS, HotSymbolStore
from tests.node_alive import alive_after

S = 1_000_000_000
IMG = "sha256:" + "d" * 64
NOW = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
TODAY = NOW.date()


def at_day(days_ago: int, minute: int = 0) -> int:
    start = dt.datetime.combine(TODAY - dt.timedelta(days=days_ago), dt.time(), dt.UTC)
    return datetime_to_ns(start + dt.timedelta(minutes=minute))


def units(days_ago: list[int], *, fn: str = "f", minute: int = 0, calls: bool = True) -> list[object]:
    out: list[object] = []
    for d in days_ago:
        start = at_day(d, minute)
        if calls:
            key = HotSymbolKey(IMG, "/lib/x.so", fn, EvidenceKind.INVOKED)
            out.append(HotSymbolDelta(key, start, 10 + d, start + S, start + 2 * S, confidence=1.0))
        out.append(ObservationWindow(IMG, "node-1", start, 5, Posture.EBPF_DEEP, 60, "tetragon"))
    return out


@pytest.fixture
def store(url: str) -> Iterator[HotSymbolStore]:
    s = open_store(url)
    yield s
    s.close()


def history(store: HotSymbolStore) -> list[tuple[dt.datetime, int]]:
    return [(w["window_start"], w["invocation_count"]) for w in store.read_windows()]


def partitions(store: HotSymbolStore) -> set[str]:
    with store.engine.connect() as c:
        return set(
            c.execute(
                sa.text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'signals.hot_symbol_windows'::regclass"
                )
            ).scalars()
        )


def test_retention_removes_only_what_is_older_than_the_cutoff(store: HotSymbolStore) -> None:
    postgres = store.engine.dialect.name == "postgresql"
    old_days = [300, 120, 93, 92, 91, 90, 60, 31, 1, 0]
    if postgres:  # the partitions an agent running on those days would have created
        for d in old_days:
            store.maintain(now=NOW - dt.timedelta(days=d), retention=False)
    for seq, d in enumerate(old_days, 1):
        store.write_batch(Batch("node-1/a", seq, units([d], minute=30)))  # type: ignore[arg-type]
    # the last minute of the day before the cutoff, and the first minute of the cutoff day
    cutoff = retention_cutoff(NOW, 90)
    edge = (TODAY - cutoff.date()).days
    store.write_batch(Batch("node-1/a", 99, units([edge], minute=0) + units([edge + 1], minute=1439)))  # type: ignore[arg-type]
    total_before = store.read_hot_symbols()[0]["invocation_count"]
    before_days = {(TODAY - s.date()).days: s for s, _ in history(store)}
    parts_before = partitions(store) if postgres else set()

    done = store.maintain(now=NOW)
    assert done.ran and done.cutoff == cutoff == dt.datetime.combine(
        TODAY - dt.timedelta(days=91), dt.time(), dt.UTC
    )
    kept = history(store)
    kept_days = {(TODAY - s.date()).days for s, _ in kept}
    assert kept_days == {91, 90, 60, 31, 1, 0}  # day 91 from its first minute (the cutoff) on
    assert all(start >= cutoff for start, _ in kept)
    for d, start in before_days.items():
        if d not in kept_days:  # what went ended (a window lasts at most a day) over 90 days ago
            assert NOW - (start + dt.timedelta(days=1)) > dt.timedelta(days=90)
    obs = store.read_observation_windows()
    assert {o["window_start"] for o in obs} == {s for s, _ in kept}
    # the cumulative count is never touched
    assert store.read_hot_symbols()[0]["invocation_count"] == total_before
    if postgres:
        parts_after = partitions(store)
        assert "hot_symbol_windows_default" in parts_after
        old = {
            n for n in parts_before if n.startswith("hot_symbol_windows_p") and n[-8:] < f"{cutoff:%Y%m%d}"
        }
        assert old and parts_before - parts_after == old == set(done.dropped)
        assert partition_name(cutoff.date()) in parts_after
    # a second run has nothing left to do
    again = store.maintain(now=NOW)
    assert again.dropped == [] and again.deleted_rows == 0 and history(store) == kept


def test_the_never_called_answer_keeps_calls_and_watched_days_together(store: HotSymbolStore) -> None:
    # watched for the 45 days before today; called on day 41 and day 11 before today; node-1's agent
    # ran on (a record of it today): its last day is watched whole, not open (store/coverage_open.py)
    # whatever the hour this runs
    watched = list(range(1, 46))
    store.write_batch(Batch("node-1/b", 1, units(watched, calls=False)))  # type: ignore[arg-type]
    store.write_batch(Batch("node-1/b", 2, units([41, 11], fn="g")))  # type: ignore[arg-type]
    store.write([], alive_after("node-1", at_day(0)))
    with store.engine.connect() as c:
        before = day_counts.observed_days_without_calls(c, image=IMG, function="g")
    assert before == 43
    store.retention_days = 31  # the minimum
    store.maintain(now=NOW)
    cutoff_days_ago = (TODAY - retention_cutoff(NOW, 31).date()).days  # 32
    with store.engine.connect() as c:
        after = day_counts.observed_days_without_calls(c, image=IMG, function="g")
        per_day = day_counts.calls_per_day(c, image=IMG, function="g", days=60, until=TODAY)
    # day 41 went with its watch (not "watched, never called"); day 11 is still called
    assert per_day == [(TODAY - dt.timedelta(days=11), 21)]
    assert cutoff_days_ago == 32 and after == 31  # days 1..32 kept: 32 watched, one of them called
    assert after > 30  # the lowest runtime tier is still reachable at the minimum retention


@pytest.mark.postgres
def test_partitions_ahead_default_partition_and_late_partitions(pg_url: str) -> None:
    with open_store(pg_url) as store:
        ahead = partition_name(TODAY + dt.timedelta(days=2))
        with store.engine.begin() as c:
            c.execute(sa.text(f"DROP TABLE signals.{ahead}"))
        assert ahead not in partitions(store)
        # a row 400 days ahead (a skewed clock) and one 2,000 days old (a late spool): both stored
        far = [at_day(-400), at_day(2_000)]
        key = HotSymbolKey(IMG, "/lib/x.so", "h", EvidenceKind.INVOKED)
        batch = [HotSymbolDelta(key, w, 3, w, w) for w in far]
        store.write_batch(Batch("node-1/c", 1, batch))  # type: ignore[arg-type]
        # the writer's first batch put the missing partition back
        assert ahead in partitions(store)
        with store.engine.connect() as c:
            in_default = c.execute(
                sa.text("SELECT count(*) FROM signals.hot_symbol_windows_default WHERE function_name = 'h'")
            ).scalar_one()
        assert in_default == 2
        # 400 days on, the agent creates that day's partition: the row moves out of DEFAULT
        later = NOW + dt.timedelta(days=400)
        done = store.maintain(now=later, retention=False)
        assert partition_name(TODAY + dt.timedelta(days=400)) in done.created and done.moved_rows == 1
        with store.engine.connect() as c:
            rows = c.execute(
                sa.text(
                    "SELECT tableoid::regclass::text, invocation_count FROM signals.hot_symbol_windows "
                    "WHERE function_name = 'h' ORDER BY window_start"
                )
            ).all()
        assert rows == [
            ("signals.hot_symbol_windows_default", 3),
            (f"signals.{partition_name(TODAY + dt.timedelta(days=400))}", 3),
        ]
        assert store.read_hot_symbols()[0]["invocation_count"] == 6


@pytest.mark.postgres
def test_only_one_agent_maintains_at_a_time(pg_url: str) -> None:
    with open_store(pg_url) as a, open_store(pg_url) as b:
        with a.engine.begin() as c:
            c.execute(sa.text("SELECT pg_advisory_xact_lock(x'5354454C4C42'::bigint)"))
            skipped = b.maintain(now=NOW + dt.timedelta(days=10))
        assert not skipped.ran and skipped.created == []
        assert b.maintain(now=NOW + dt.timedelta(days=10)).ran


def test_the_writer_applies_the_retention_from_an_hour_after_its_first_batch(url: str) -> None:
    with open_store(url, retention_days=31) as store:
        store.write_batch(Batch("node-1/d", 1, units([200, 0])))  # type: ignore[arg-type]
        assert len(history(store)) == 2  # the first batch: partitions only, nothing deleted
        store.write_batch(Batch("node-1/d", 2, units([1])))  # type: ignore[arg-type]
        assert len(history(store)) == 3  # within the hour: nothing runs
        assert store._maintained_at is not None
        store._maintained_at -= MAINTAIN_EVERY_SECONDS  # an hour later
        store.write_batch(Batch("node-1/d", 3, units([2])))  # type: ignore[arg-type]
        assert {(TODAY - s.date()).days for s, _ in history(store)} == {0, 1, 2}
        assert store.read_hot_symbols()[0]["invocation_count"] == 210 + 10 + 11 + 12


@pytest.mark.postgres
def test_maintenance_waits_for_the_table_lock_only_so_long_and_never_fails_a_write(pg_url: str) -> None:
    assert LOCK_TIMEOUT_MS == 5_000
    with open_store(pg_url) as store, store.engine.connect() as reader:
        reader.execute(sa.text("LOCK TABLE signals.hot_symbol_windows IN ACCESS SHARE MODE"))  # a long query
        with pytest.raises(pgwire.OperationalError, match="lock timeout"):  # the agent's own client
            maintain(store.db, retention_days=90, now=NOW + dt.timedelta(days=30), lock_timeout_ms=200)
        reader.rollback()
        with store.engine.begin() as c:  # so that the writer's own call has DDL to do
            c.execute(sa.text(f"DROP TABLE signals.{partition_name(TODAY + dt.timedelta(days=2))}"))
        reader.execute(sa.text("LOCK TABLE signals.hot_symbol_windows IN ACCESS SHARE MODE"))
        store.maintain = lambda **kw: maintain(  # type: ignore[method-assign]
            store.db, retention_days=90, lock_timeout_ms=200, **kw
        )
        # the writer's own call times out on the lock: logged, and the batch is stored
        result = store.write_batch(Batch("node-1/e", 1, units([0])))  # type: ignore[arg-type]
        assert result.written == 2
        reader.rollback()
        assert len(history(store)) == 1
        assert partition_name(TODAY + dt.timedelta(days=2)) not in partitions(store)  # it gave up, for now


def test_retention_days_are_validated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert parse_config({}).store.retention_days == 90
    assert parse_config({"store": {"retentionDays": 31}}).store.retention_days == 31
    for bad in (30, 0, -5, 3_661, "ninety"):
        with pytest.raises(ConfigError, match="retentionDays"):
            parse_config({"store": {"retentionDays": bad}})
    url = f"sqlite:///{tmp_path}/hot.db"
    with pytest.raises(ValueError, match="between 31 and 3660"):
        open_store(url, retention_days=30)
    with open_store(url, retention_days=31) as s:
        assert s.retention_days == 31


def test_the_agent_opens_its_store_with_the_configured_retention(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``store.retentionDays`` of the agent's config reaches the store it opens (agent/flusher.py)."""
    import asyncio

    from stellaops_runtime.agent.flusher import Flusher

    url = f"sqlite:///{tmp_path / 'agent.db'}"
    config = parse_config({"store": {"url": url, "retentionDays": 45}})

    async def noop() -> None:
        return None

    flusher = Flusher(config, agent_id="a", drain=noop, stop=lambda why: None)
    assert asyncio.run(flusher.open())
    assert flusher.store is not None
    try:
        assert flusher.store.retention_days == 45
    finally:
        flusher.store.close()


@pytest.mark.postgres
def test_a_day_of_windows_larger_than_one_statement_may_take_is_still_removed(pg_url: str) -> None:
    """A fleet's day of observation windows (1,000 nodes x 20 images x 1,440 windows: 28.8 M rows)
    took longer to delete in one statement than ``store.statementTimeout`` (30 s; measured 0.58 s
    for 500,000 rows here): the retention was cancelled every hour, its drops rolled back with it,
    and nothing was ever removed again, while it held the history's table lock for that long. Here
    100,000 windows of one old day and a 50 ms statement timeout: seen failing before the fix
    (QueryCanceled). Now the windows go in steps of an hour of ``window_start``, each its own
    statement, in the same one transaction."""
    with open_store(pg_url) as store, store.engine.begin() as c:
        c.execute(
            sa.text(
                "INSERT INTO signals.observation_windows (image_digest, node_name, window_start, "
                "event_count, posture_level, window_seconds, source) "
                "SELECT 'sha256:' || (i % 20), 'node-' || (i / 28800), date_trunc('day', now()) "
                "- interval '100 days' + ((i / 20) % 1440) * interval '1 minute', 1, 3, 60, 'tetragon' "
                "FROM generate_series(0, 99999) i"
            )
        )
    with open_store(pg_url, timeouts=Timeouts(statement=0.05)) as store:
        done = store.maintain()
        assert done.ran and done.deleted_rows == 100_000
    with open_store(pg_url) as store:  # read without the short timeout (a scan past 100,000 dead rows)
        assert store.read_observation_windows() == []
