"""The outage buffer and the writer's pure merge functions, without a database.

The writer here is a recording stand-in for our own ``write`` interface (not a
fake database): the buffer's bookkeeping is pure logic. The same flows against
a real PostgreSQL that goes down and comes back are in
tests/integration/test_store_outage.py.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.store.engine import StoreUnavailable
from stellaops_runtime.store.pending import MAX_RETRY_SECONDS, PendingWrites
from stellaops_runtime.store.writer import merge_by_key, merge_by_window, merge_observations

S = 1_000_000_000
W = 60 * S


def key(fn: str = "malloc", module: str = "/lib/libc.so.6") -> HotSymbolKey:
    return HotSymbolKey("sha256:aa", module, fn, EvidenceKind.INVOKED)


def delta(fn: str = "malloc", *, window: int = 0, count: int = 1, **kw: object) -> HotSymbolDelta:
    start = window * W
    return HotSymbolDelta(
        key=key(fn),
        window_start_ns=start,
        invocation_count=count,
        first_seen_ns=start + S,
        last_seen_ns=start + 2 * S,
        **kw,  # type: ignore[arg-type]
    )


class Recorder:
    """Collects what would have been written; fails while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.calls: list[tuple[list[HotSymbolDelta], list[ObservationWindow]]] = []

    def write(self, deltas: list[HotSymbolDelta], windows: list[ObservationWindow]) -> int:
        if self.down:
            raise StoreUnavailable("store down")
        self.calls.append((list(deltas), list(windows)))
        return len(deltas) + len(windows)

    def invocations(self) -> int:
        return sum(d.invocation_count for ds, _ in self.calls for d in ds)


# -- pure merges ----------------------------------------------------------------


def test_merge_by_key_folds_windows_oldest_first_without_touching_inputs() -> None:
    a = delta(window=2, count=3, node_name="late", unique_callers=1, sample={"x": 1})
    b = delta(window=1, count=4, node_name="early", unique_callers=5, max_latency_ns=9, build_id="b1")
    c = delta("free", window=1, count=1)
    merged = {d.key.function_name: d for d in merge_by_key([a, b, c])}
    m = merged["malloc"]
    assert m.invocation_count == 7
    assert m.node_name == "late"  # the latest window's reporter
    assert m.unique_callers == 5 and m.max_latency_ns == 9
    assert m.first_seen_ns == 1 * W + S and m.last_seen_ns == 2 * W + 2 * S
    assert m.build_id == "b1" and m.sample == {"x": 1}
    assert merged["free"].invocation_count == 1
    assert a.invocation_count == 3 and b.invocation_count == 4  # inputs untouched


def test_merge_by_window_keeps_windows_apart() -> None:
    rows = merge_by_window([delta(window=1, count=2), delta(window=1, count=3), delta(window=2, count=5)])
    assert sorted((d.window_start_ns // W, d.invocation_count) for d in rows) == [(1, 5), (2, 5)]


def test_merge_observations_adds_counts() -> None:
    rows = merge_observations(
        [
            ObservationWindow("i", "n", 0, 2),
            ObservationWindow("i", "n", 0, 3),
            ObservationWindow("i", "m", 0, 1),
        ]
    )
    assert sorted((w.node_name, w.event_count) for w in rows) == [("m", 1), ("n", 5)]


# -- the buffer -----------------------------------------------------------------


def test_add_merges_per_key_and_window() -> None:
    p = PendingWrites(max_pending_rows=100)
    d = delta(count=2)
    p.add([d, delta(count=3), delta(window=1)], [ObservationWindow("sha256:aa", "n", 0, 4)])
    p.add([], [ObservationWindow("sha256:aa", "n", 0, 6)])
    assert p.pending_rows == 3  # (malloc, w0), (malloc, w1), observation (n, w0)
    assert d.invocation_count == 2  # the caller's delta is not modified


async def test_flush_success_and_failure_keep_exact_counts() -> None:
    p = PendingWrites(max_pending_rows=100)
    store = Recorder()
    p.add([delta(count=2), delta("free", count=1)], [ObservationWindow("sha256:aa", "n", 0, 3)])
    store.down = True
    assert await p.flush(store) is False
    assert (p.failures, p.pending_rows, p.rows_flushed) == (1, 3, 0)
    assert p.last_error == "store down"
    p.add([delta(count=5)], [])
    store.down = False
    assert await p.flush(store) is True
    assert (p.flushes, p.pending_rows, p.rows_flushed, p.last_error) == (1, 0, 3, None)
    assert store.invocations() == 8
    assert await p.flush(store) is True  # nothing pending: no write
    assert len(store.calls) == 1


async def test_rows_added_during_a_flush_stay_pending() -> None:
    p = PendingWrites(max_pending_rows=100)
    started, release = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    class Slow(Recorder):
        def write(self, deltas: list[HotSymbolDelta], windows: list[ObservationWindow]) -> int:
            loop.call_soon_threadsafe(started.set)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(5)
            return super().write(deltas, windows)

    store = Slow()
    p.add([delta(count=1)], [])
    task = asyncio.create_task(p.flush(store))
    await started.wait()
    p.add([delta(count=10), delta("free", count=1)], [])  # same key as in flight, and a new one
    assert p.pending_rows == 3
    release.set()
    assert await task is True
    assert p.pending_rows == 2 and store.invocations() == 1
    assert await p.flush(store) is True
    assert store.invocations() == 12


async def test_failed_flush_merges_back_under_rows_added_meanwhile() -> None:
    p = PendingWrites(max_pending_rows=100)
    started, release = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    class FailingSlow(Recorder):
        def write(self, deltas: list[HotSymbolDelta], windows: list[ObservationWindow]) -> int:
            loop.call_soon_threadsafe(started.set)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(5)
            raise StoreUnavailable("down")

    p.add([delta(count=1, node_name="old")], [])
    task = asyncio.create_task(p.flush(FailingSlow()))
    await started.wait()
    p.add([delta(count=10, node_name="new")], [])
    release.set()
    assert await task is False
    store = Recorder()
    assert await p.flush(store) is True
    [(deltas, _)] = store.calls
    assert [(d.invocation_count, d.node_name) for d in deltas] == [(11, "new")]


def test_bound_drops_oldest_windows_first_and_counts_them() -> None:
    p = PendingWrites(max_pending_rows=3)
    p.add([delta("a", window=5, count=7), delta("b", window=5, count=1)], [])
    p.add([delta("a", window=1, count=100)], [])  # older window arrives late: it is the one dropped
    assert (p.pending_rows, p.dropped_rows, p.dropped_invocations) == (3, 0, 0)
    p.add([delta("c", window=6, count=2), delta("d", window=7, count=3)], [])
    assert p.pending_rows == 3
    assert p.dropped_rows == 2
    assert p.dropped_invocations == 100 + 1  # window 1, then the newest row of window 5 ("b")


async def test_stored_plus_dropped_equals_added() -> None:
    p = PendingWrites(max_pending_rows=10)
    store = Recorder()
    store.down = True
    added = 0
    for w in range(8):
        batch = [delta(f"f{i}", window=w, count=w + i + 1) for i in range(4)]
        added += sum(d.invocation_count for d in batch)
        p.add(batch, [])
        assert await p.flush(store) is False
        assert p.pending_rows <= 10
    store.down = False
    assert await p.flush(store) is True
    assert store.invocations() + p.dropped_invocations == added
    assert p.rows_flushed + p.dropped_rows == 32
    stored_windows = {d.window_start_ns // W for ds, _ in store.calls for d in ds}
    assert min(stored_windows) >= 5  # the oldest windows went first


def test_retry_delay_is_capped_exponential_with_jitter_and_resets() -> None:
    p = PendingWrites(rng=random.Random(1))
    assert 0.25 <= p.next_retry_delay() <= 0.5
    store = Recorder()
    store.down = True
    delays = []
    for _ in range(12):
        p.add([delta()], [])
        asyncio.run(p.flush(store))
        delays.append(p.next_retry_delay())
    assert 0.25 <= delays[0] <= 0.5
    assert 0.5 <= delays[1] <= 1.0
    assert all(d <= MAX_RETRY_SECONDS for d in delays)
    assert delays[-1] >= MAX_RETRY_SECONDS / 2


async def test_retry_delay_resets_after_success() -> None:
    p = PendingWrites(rng=random.Random(2))
    store = Recorder()
    store.down = True
    for _ in range(6):
        p.add([delta()], [])
        await p.flush(store)
    assert p.next_retry_delay() >= 8.0
    store.down = False
    assert await p.flush(store) is True
    assert p.next_retry_delay() <= 0.5


def test_bound_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PendingWrites(max_pending_rows=0)


def test_pending_observations_merge_posture_by_max_level_and_counts_add() -> None:
    from stellaops_runtime.contracts.posture import Posture

    p = PendingWrites(max_pending_rows=100)
    p.add([], [ObservationWindow("sha256:aa", "n", 0, 4, Posture.EBPF_DEEP, 60, "tetragon")])
    p.add([], [ObservationWindow("sha256:aa", "n", 0, 6, Posture.PASSIVE, 60, "tetragon")])
    p.add([], [ObservationWindow("sha256:aa", "n", 0, 1)])
    p.add([], [ObservationWindow("sha256:aa", "m", 0, 1, Posture.PASSIVE, 60, "tetragon")])
    assert p.pending_rows == 2
    rows = merge_observations(
        [
            ObservationWindow("i", "n", 0, 1, Posture.ACTIVE_TRACING, 60, "tetragon"),
            ObservationWindow("i", "n", 0, 2, Posture.FULL_INSTRUMENTATION, 60, "tetragon"),
            ObservationWindow("i", "n", 0, 3),
        ]
    )
    assert rows == [ObservationWindow("i", "n", 0, 6, Posture.FULL_INSTRUMENTATION, 60, "tetragon")]


async def test_pending_flush_hands_over_the_merged_posture() -> None:
    from stellaops_runtime.contracts.posture import Posture

    p = PendingWrites(max_pending_rows=100)
    store = Recorder()
    p.add([], [ObservationWindow("sha256:aa", "n", 0, 4, Posture.ACTIVE_TRACING, 60, "tetragon")])
    store.down = True
    assert await p.flush(store) is False
    p.add([], [ObservationWindow("sha256:aa", "n", 0, 1, Posture.EBPF_DEEP, 60, "tetragon")])
    store.down = False
    assert await p.flush(store) is True
    [(_, windows)] = store.calls
    assert windows == [ObservationWindow("sha256:aa", "n", 0, 5, Posture.EBPF_DEEP, 60, "tetragon")]
