"""A real PostgreSQL outage: the server is stopped and started under a live store.

Nothing added while the store is down may be lost or counted twice: the final
rows must be exactly the sum of everything added. With a small bound, what
is stored plus what was dropped (and counted) must equal what was added.
"""

from __future__ import annotations

import pytest
from pg import PgServer

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.store.engine import StoreUnavailable, open_store
from stellaops_runtime.store.pending import PendingWrites

pytestmark = pytest.mark.postgres

S = 1_000_000_000
W = 60 * S
T0 = 1_740_787_200 * S  # 2025-03-01
IMG = "sha256:" + "c" * 64


def batch(window: int, *, functions: int = 20, base: int = 1) -> list[HotSymbolDelta]:
    start = T0 + window * W
    return [
        HotSymbolDelta(
            key=HotSymbolKey(IMG, "/lib/libz.so.1", f"fn_{i}", EvidenceKind.INVOKED),
            window_start_ns=start,
            invocation_count=base + i,
            first_seen_ns=start + S,
            last_seen_ns=start + 2 * S,
            node_name="node-1",
        )
        for i in range(functions)
    ]


def total(deltas: list[HotSymbolDelta]) -> int:
    return sum(d.invocation_count for d in deltas)


async def test_outage_keeps_rows_and_final_counts_are_exact(pg: PgServer, pg_url: str) -> None:
    store = open_store(pg_url)
    pending = PendingWrites(max_pending_rows=10_000)
    added = 0
    try:
        first = batch(0)
        pending.add(first, [ObservationWindow(IMG, "node-1", T0, 100)])
        added += total(first)
        assert await pending.flush(store) is True

        pg.stop()
        try:
            more = batch(1) + batch(0, base=1000)  # new window and the same rows as before, again
            pending.add(more, [ObservationWindow(IMG, "node-1", T0, 50)])
            added += total(more)
            assert await pending.flush(store) is False
            assert await pending.flush(store) is False
            assert pending.failures == 2 and pending.pending_rows == 41
            assert pending.last_error and store.url.split("@")[-1] in pending.last_error
            with pytest.raises(StoreUnavailable):
                store.write(batch(9), [])
            late = batch(2)
            pending.add(late, [])
            added += total(late)
            assert pending.pending_rows == 61
            assert pending.next_retry_delay() > 0
        finally:
            pg.start()

        assert await pending.flush(store) is True
        assert pending.pending_rows == 0 and pending.last_error is None
        assert pending.rows_flushed == 21 + 61
        rows = store.read_hot_symbols()
        assert len(rows) == 20
        assert sum(r["invocation_count"] for r in rows) == added
        windows = store.read_windows()
        assert len(windows) == 60 and sum(w["invocation_count"] for w in windows) == added
        assert [o["event_count"] for o in store.read_observation_windows()] == [150]
    finally:
        store.close()


async def test_bound_drops_oldest_and_stored_plus_dropped_equals_added(pg: PgServer, pg_url: str) -> None:
    store = open_store(pg_url)
    pending = PendingWrites(max_pending_rows=50, window_seconds=W // S)
    added = 0
    try:
        pg.stop()
        try:
            for w in range(6):  # 6 windows x 20 rows against a bound of 50
                b = batch(w, base=w * 100)
                pending.add(b, [])
                added += total(b)
                assert await pending.flush(store) is False
                assert pending.pending_rows <= 50 + pending.gap_rows_from_drops
        finally:
            pg.start()
        assert await pending.flush(store) is True
        assert pending.dropped_rows == 70
        stored = sum(r["invocation_count"] for r in store.read_hot_symbols())
        assert stored + pending.dropped_invocations == added
        # Every window that lost rows is stored as a gap, with exactly the lost invocations.
        gaps = {
            (o["window_start"].timestamp() * S - T0) // W: o["dropped_events"]
            for o in store.read_observation_windows()
            if o["gap_end"] is not None
        }
        assert sorted(gaps) == [0, 1, 2, 3] and sum(gaps.values()) == pending.dropped_invocations
        kept = sorted({(w["window_start"].timestamp() * S - T0) // W for w in store.read_windows()})
        assert kept == [3, 4, 5]  # windows 0-2 went first, then 10 of the 20 rows of window 3
    finally:
        store.close()
