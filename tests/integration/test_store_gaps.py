"""Observation gaps in the store (migration 0005) on PostgreSQL and SQLite, and the answers they change.

A window with a gap Tetragon reported (a throttled cgroup, its export rate
limiter) is written with the counts, merged additively across flushes, and
makes "not observed" unknown, naming the gap, for the image it belongs to or,
node-wide, for every image observed on that node that UTC day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import NODE_WIDE, ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store import coverage, day_counts, queries
from stellaops_runtime.store.engine import create_store_engine, migrate, open_store
from stellaops_runtime.store.schema import datetime_to_ns, observation_windows
from stellaops_runtime.store.writer import HotSymbolStore

S = 1_000_000_000
W = 60 * S
T0 = datetime_to_ns(dt.datetime(2025, 3, 1, 12, tzinfo=dt.UTC))
IMG = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
ELSEWHERE = "sha256:" + "c" * 64


def at(ns: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ns // 1000)


def seen(image: str, window: int, node: str = "n1", events: int = 10) -> ObservationWindow:
    return ObservationWindow(image, node, window, events, Posture.EBPF_DEEP, 60, "tetragon")


def gap(
    image: str, window: int, start: int, end: int, *, node: str = "n1", throttles: int = 0, dropped: int = 0
) -> ObservationWindow:
    return ObservationWindow(image, node, window, 0, None, 60, "tetragon", start, end, throttles, dropped)


@pytest.fixture
def store(url: str) -> Iterator[HotSymbolStore]:
    s = open_store(url)
    yield s
    s.close()


def test_gaps_are_written_and_merged_across_flushes(store: HotSymbolStore) -> None:
    store.write([], [seen(IMG, T0), gap(IMG, T0, T0 + 30 * S, T0 + 50 * S, throttles=1)])
    store.write(
        [], [gap(IMG, T0, T0 + 20 * S, T0 + 40 * S), gap(NODE_WIDE, T0, T0 + 5 * S, T0 + 9 * S, dropped=7)]
    )
    store.write([], [seen(IMG, T0, events=5), gap(NODE_WIDE, T0, T0 + 1 * S, T0 + 2 * S, dropped=3)])
    rows = {r["image_digest"]: r for r in store.read_observation_windows()}
    mine, node = rows[IMG], rows[NODE_WIDE]
    assert (mine["event_count"], mine["posture_level"], mine["throttle_count"], mine["dropped_events"]) == (
        15, Posture.EBPF_DEEP.rank, 1, 0,
    )  # fmt: skip
    assert (mine["gap_start"], mine["gap_end"]) == (at(T0 + 20 * S), at(T0 + 50 * S))
    assert (node["event_count"], node["dropped_events"], node["gap_start"], node["gap_end"]) == (
        0, 10, at(T0 + 1 * S), at(T0 + 9 * S),
    )  # fmt: skip


def test_a_throttled_window_makes_not_observed_unknown_naming_the_gap(store: HotSymbolStore) -> None:
    store.write([], [seen(IMG, T0), seen(IMG, T0 + W), seen(IMG, T0 + 2 * W)])
    store.write([], [gap(IMG, T0 + W, T0 + W + 10 * S, T0 + W + 20 * S, throttles=2)])
    with store.engine.connect() as conn:
        groups = coverage.image_windows(conn, image=IMG)
        [g] = coverage.image_gaps(conn, image=IMG)
        assert (g.node_name, g.node_wide, g.windows, g.throttles, g.dropped_events) == ("n1", False, 1, 2, 0)
        v = coverage.absence(IMG, groups, gaps=[g])
        assert v.answer == coverage.UNKNOWN and v.coverage is not None and v.coverage.windows == 3
        assert (
            "on node n1 2025-03-01T12:01:10Z/2025-03-01T12:01:20Z (1 window): "
            "it throttled the image's cgroup (2 throttle signals)"
        ) in v.reason
        # the period after the gap rests on clean windows: not observed again
        since = at(T0 + 2 * W)
        later = coverage.image_windows(conn, image=IMG, since=since)
        assert coverage.image_gaps(conn, image=IMG, since=since) == []
        assert coverage.absence(IMG, later, since=since).answer == coverage.NOT_OBSERVED
        # gap-only rows are no coverage
        assert sum(x.windows for x in groups) == 3


def test_a_node_wide_gap_covers_images_observed_on_that_node_that_day(store: HotSymbolStore) -> None:
    store.write(
        [],
        [
            seen(IMG, T0),
            seen(OTHER, T0 + W),  # same node and day, another window: its events may be those dropped
            seen(ELSEWHERE, T0, node="n2"),  # same window, another node
            gap(NODE_WIDE, T0, T0 + 30 * S, T0 + 59 * S, dropped=12),
        ],
    )
    with store.engine.connect() as conn:
        [g] = coverage.image_gaps(conn, image=IMG)
        assert (g.node_wide, g.dropped_events, g.throttles) == (True, 12, 0)
        assert "12 events of the node were dropped (by Tetragon's export rate limiter" in g.describe()
        assert [g.dropped_events for g in coverage.image_gaps(conn, image=OTHER)] == [12]
        assert coverage.image_gaps(conn, image=ELSEWHERE) == []
        images = coverage.all_image_windows(conn)
        assert NODE_WIDE not in images and set(images) == {IMG, OTHER, ELSEWHERE}
        # "observed N days, never called": a day with a gap does not count
        assert day_counts.observed_days_without_calls(conn, image=IMG, function="f") == 0
        assert day_counts.observed_days_without_calls(conn, image=OTHER, function="f") == 0


def test_upgrade_from_0004_keeps_rows_without_gaps(empty_url: str) -> None:
    engine = create_store_engine(empty_url)
    migrate(engine, revision="0004")
    with engine.connect() as conn:
        assert not queries.has_gap_columns(conn)
        assert coverage.image_gaps(conn, image=IMG) == []  # a store before 0005 knows no gaps
    engine.dispose()
    store = open_store(empty_url)  # migrates to head
    try:
        store.write([], [seen(IMG, T0), gap(IMG, T0, T0 + S, T0 + 2 * S, throttles=1)])
        with store.engine.connect() as conn:
            assert queries.has_gap_columns(conn)
            assert [g.throttles for g in coverage.image_gaps(conn, image=IMG)] == [1]
            assert conn.execute(sa.select(sa.func.count()).select_from(observation_windows)).scalar_one() == 1
    finally:
        store.close()
    migrate(create_store_engine(empty_url), revision="0004")  # and back down


def test_a_row_the_outage_buffer_dropped_makes_its_window_unknown(store: HotSymbolStore) -> None:
    """A full outage buffer drops the oldest rows: their windows answer unknown, never "not observed".

    The image was watched in three windows; in the first, ``f`` was called, but
    that row is dropped (the buffer holds 2 rows). Without the gap the store
    would say "watched for 3 windows, f never called".
    """
    import asyncio

    from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
    from stellaops_runtime.store.pending import PendingWrites

    def call(fn: str, window: int) -> HotSymbolDelta:
        key = HotSymbolKey(IMG, "/lib/libz.so.1", fn, EvidenceKind.INVOKED)
        return HotSymbolDelta(key, window, 4, window + S, window + 2 * S, node_name="n1")

    pending = PendingWrites(max_pending_rows=2, window_seconds=60)
    pending.add([call("f", T0)], [seen(IMG, T0)])
    pending.add([call("g", T0 + W)], [seen(IMG, T0 + W)])
    pending.add([call("g", T0 + 2 * W)], [seen(IMG, T0 + 2 * W)])
    assert pending.dropped_invocations == 4 + 4  # f's row and the first g row: the oldest two
    assert asyncio.run(pending.flush(store)) is True
    assert [r["function_name"] for r in store.read_hot_symbols()] == ["g"]
    with store.engine.connect() as conn:
        gaps = coverage.image_gaps(conn, image=IMG)
        assert sum(g.dropped_events for g in gaps) == 8
        v = coverage.absence(IMG, coverage.image_windows(conn, image=IMG), gaps=gaps)
        assert v.answer == coverage.UNKNOWN, v
