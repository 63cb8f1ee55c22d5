"""The outage buffer and the writer's pure merge functions, without a database.

The writer here is a recording stand-in for our own ``write_batch`` interface
(not a fake database): the buffer's bookkeeping is pure logic. The same flows against
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
from stellaops_runtime.store.batches import Batch, BatchResult
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
    """Collects what would have been written, like the store's ledger; fails while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.calls: list[tuple[list[HotSymbolDelta], list[ObservationWindow]]] = []
        self.batches: list[tuple[str, int]] = []
        self.aborted = 0

    def write(self, deltas: list[HotSymbolDelta], windows: list[ObservationWindow]) -> int:
        if self.down:
            raise StoreUnavailable("store down")
        self.calls.append((list(deltas), list(windows)))
        return len(deltas) + len(windows)

    def write_batch(self, batch: Batch) -> BatchResult:
        if (batch.agent_id, batch.seq) in self.batches:  # the ledger: a retry adds nothing
            return BatchResult(duplicate=batch.rows)
        deltas, windows = batch.split(0, len(batch.units))
        n = self.write(deltas, windows)
        self.batches.append((batch.agent_id, batch.seq))
        return BatchResult(written=n)

    def abort(self) -> None:
        self.aborted += 1

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
    # Two batches: the failed one as it was frozen, then the row added after it.
    assert (p.flushes, p.pending_rows, p.rows_flushed, p.last_error) == (2, 0, 4, None)
    assert store.invocations() == 8
    assert await p.flush(store) is True  # nothing pending: no write
    assert len(store.calls) == 2


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


async def test_failed_batch_is_retried_as_it_was_then_rows_added_meanwhile() -> None:
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
    assert p.pending_rows == 2  # the frozen batch and the new buffer row, never merged
    store = Recorder()
    assert await p.flush(store) is True
    # The failed batch may have been committed (lost acknowledgement): it is retried
    # exactly as it was, with its sequence, and the rows added meanwhile follow apart.
    assert [[(d.invocation_count, d.node_name) for d in ds] for ds, _ in store.calls] == [
        [(1, "old")],
        [(10, "new")],
    ]
    assert [seq for _, seq in store.batches] == [1, 2]


async def test_bound_drops_oldest_windows_first_and_marks_their_gaps() -> None:
    p = PendingWrites(max_pending_rows=3, window_seconds=60)
    p.add([delta("a", window=5, count=7, node_name="n"), delta("b", window=5, count=1, node_name="n")], [])
    p.add([delta("a", window=1, count=100, node_name="n")], [])  # older window arrives late: dropped first
    assert (p.pending_rows, p.dropped_rows, p.dropped_invocations) == (3, 0, 0)
    p.add([delta("c", window=6, count=2, node_name="n"), delta("d", window=7, count=3, node_name="n")], [])
    assert p.dropped_rows == 2
    assert p.dropped_invocations == 100 + 1  # window 1, then the newest row of window 5 ("b")
    # Each dropped row left a gap over its whole window, with the lost invocations:
    # 3 hot-symbol rows kept (the bound) plus 2 gap rows, which the bound does not count.
    assert (p.pending_rows, p.gap_rows_from_drops) == (5, 2)
    store = Recorder()
    assert await p.flush(store) is True
    [(deltas, windows)] = store.calls
    assert sorted((d.key.function_name, d.window_start_ns // W) for d in deltas) == [
        ("a", 5),
        ("c", 6),
        ("d", 7),
    ]
    gaps = {(o.window_start_ns // W, o.gap_start_ns, o.gap_end_ns, o.dropped_events) for o in windows}
    assert gaps == {(1, 1 * W, 2 * W, 100), (5, 5 * W, 6 * W, 1)}
    assert all(o.image_digest == "sha256:aa" and o.node_name == "n" and o.has_gap for o in windows)


def test_gap_rows_are_never_dropped_and_only_they_may_exceed_the_bound() -> None:
    p = PendingWrites(max_pending_rows=2, window_seconds=60)
    tetragon_gap = ObservationWindow("sha256:aa", "n", 0, 0, None, 60, "", 5 * S, 9 * S, 1, 0)
    p.add([], [tetragon_gap])
    for w in range(1, 40):  # every window's row is dropped in turn: its gap stays
        p.add([delta(f"f{w}", window=w, count=w, node_name="n")], [])
        assert p.pending_rows - p.gap_rows_from_drops - 1 <= 2
    assert p.dropped_rows == 37 and p.gap_rows_from_drops == 37
    units = [u for b in p.take_all() for u in b.units if u is not None]
    gaps = [u for u in units if isinstance(u, ObservationWindow)]
    assert tetragon_gap in gaps and len(gaps) == 38
    assert sum(g.dropped_events for g in gaps) == p.dropped_invocations == sum(range(1, 38))
    assert sorted(u.window_start_ns // W for u in units if isinstance(u, HotSymbolDelta)) == [38, 39]


def test_a_dropped_row_turns_its_windows_observation_into_a_gap() -> None:
    """A dropped count never leaves a window that says "watched, nothing called"."""
    p = PendingWrites(max_pending_rows=2, window_seconds=60)
    p.add([delta("f", window=0, count=9, node_name="n")], [ObservationWindow("sha256:aa", "n", 0, 9)])
    p.add([delta("g", window=1, count=1, node_name="n")], [])  # over the bound: the oldest row goes
    units = [u for b in p.take_all() for u in b.units if u is not None]
    [obs] = [u for u in units if isinstance(u, ObservationWindow)]
    assert (obs.event_count, obs.has_gap, obs.dropped_events) == (9, True, 9)
    assert (obs.gap_start_ns, obs.gap_end_ns) == (1, W)  # the whole window (0 means "no gap": 1)


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
        assert p.pending_rows <= 10 + p.gap_rows_from_drops
    store.down = False
    assert await p.flush(store) is True
    assert store.invocations() + p.dropped_invocations == added
    assert sum(len(ds) for ds, _ in store.calls) + p.dropped_rows == 32
    gaps = [o for _, ws in store.calls for o in ws]
    assert all(o.has_gap for o in gaps) and sum(o.dropped_events for o in gaps) == p.dropped_invocations
    stored_windows = {d.window_start_ns // W for ds, _ in store.calls for d in ds}
    assert min(stored_windows) >= 5  # the oldest windows went first, from the frozen batch too


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
    windows = [w for _, ws in store.calls for w in ws]
    assert merge_observations(windows) == [
        ObservationWindow("sha256:aa", "n", 0, 5, Posture.EBPF_DEEP, 60, "tetragon")
    ]


# -- exactly once: frozen batches, timeouts, spool round trip ------------------------


async def test_a_retry_after_a_lost_acknowledgement_adds_nothing() -> None:
    """The store committed but the caller saw an error: the retry carries the same sequence."""

    class LostAck(Recorder):
        lose = 1

        def write_batch(self, batch: Batch) -> BatchResult:
            result = super().write_batch(batch)
            if self.lose:
                self.lose -= 1
                raise StoreUnavailable("server closed the connection unexpectedly")
            return result

    p = PendingWrites(max_pending_rows=100, agent_id="node-1/a")
    store = LostAck()
    p.add([delta(count=903)], [])
    assert await p.flush(store) is False
    p.add([delta(count=1)], [])
    assert await p.flush(store) is True
    assert store.invocations() == 904
    assert p.duplicate_rows == 1 and p.rows_flushed == 1
    assert store.batches == [("node-1/a", 1), ("node-1/a", 2)]


async def test_a_hung_write_is_aborted_and_retried_on_time() -> None:
    import threading
    import time

    class Hung(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.hang = threading.Event()
            self.hang.set()

        def write_batch(self, batch: Batch) -> BatchResult:
            if self.hang.is_set():
                self.hang.wait(0.0)
                deadline = time.monotonic() + 10
                while self.hang.is_set() and not self.aborted and time.monotonic() < deadline:
                    time.sleep(0.01)
                raise StoreUnavailable("connection shut down")
            return super().write_batch(batch)

    p = PendingWrites(max_pending_rows=100)
    store = Hung()
    p.add([delta(count=7)], [])
    t0 = time.monotonic()
    assert await p.flush(store, write_timeout=0.3) is False
    assert time.monotonic() - t0 < 3
    assert store.aborted == 1 and p.timeouts == 1 and p.abandoned == 0
    assert "timed out after 0.3s" in (p.last_error or "")
    store.hang.clear()
    assert await p.flush(store, write_timeout=0.3) is True
    assert store.invocations() == 7


async def test_no_write_starts_after_the_deadline() -> None:
    import time

    p = PendingWrites(max_pending_rows=100)
    store = Recorder()
    p.add([delta(count=2)], [])
    assert await p.flush(store, deadline=time.monotonic() - 1) is False
    assert store.calls == [] and p.pending_rows == 1
    assert "deadline" in (p.last_error or "")


def test_take_all_and_load_keep_batch_identity_and_bound() -> None:
    p = PendingWrites(max_pending_rows=100, agent_id="a/1")
    p.add([delta(count=2), delta("free", window=1)], [ObservationWindow("sha256:aa", "n", 0, 3)])
    batches = p.take_all()
    assert [(b.agent_id, b.seq, b.rows) for b in batches] == [("a/1", 1, 3)]
    assert p.pending_rows == 0
    q = PendingWrites(max_pending_rows=2, agent_id="b/2")
    q.load(batches)
    assert q.spool_loaded_rows == 3 and q.spool_batches_left == 1
    # The oldest row went; its gap took its place in the batch (same identity, same shape), so it
    # is stored with the batch's observation of that window (test_store_drop_gap_batch.py).
    assert q.dropped_rows == 1 and q.gap_rows_from_drops == 1 and q.pending_rows == 3
    (b,) = q.take_all()
    assert (b.agent_id, b.seq, len(b.units), b.rows) == ("a/1", 1, 3, 3)
    gap = b.units[0]
    assert isinstance(gap, ObservationWindow) and gap.has_gap and gap.dropped_events == 2
