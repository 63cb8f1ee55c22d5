"""A long outage's backlog is written in batches a store can take within the flush timeout.

Probe (s29/h3): every flush froze the whole outage buffer into ONE batch,
written in one transaction that must end within ``store.flushTimeout``. After
a long outage the buffer holds up to ``maxPendingRows`` (1,000,000) rows; at
the store benchmark's 26,000 rows/s (6,700 at a fleet's saturation) that is
far past the 30 s default, so the batch was abandoned at the timeout and
retried whole, for ever: the agent never caught up and every later count was
eventually dropped. Frozen batches now hold at most ``MAX_BATCH_ROWS`` rows.

The store here is a fake that takes a batch only when it is small enough to be
written before the timeout (what a slow store does to a large transaction),
and keeps a ledger of (agent, sequence) like the real one.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.store.batches import Batch, BatchResult
from stellaops_runtime.store.engine import StoreUnavailable
from stellaops_runtime.store.pending import MAX_BATCH_ROWS, PendingWrites

S = 1_000_000_000
T0 = 1_740_787_200 * S
IMG = "sha256:" + "e" * 64


def delta(i: int, window: int) -> HotSymbolDelta:
    start = T0 + window * 60 * S
    key = HotSymbolKey(IMG, "/lib/libz.so.1", f"fn_{i}", EvidenceKind.INVOKED)
    return HotSymbolDelta(key=key, window_start_ns=start, invocation_count=1 + i % 5, first_seen_ns=start,
                          last_seen_ns=start + 1, node_name="n")  # fmt: skip


class SlowStore:
    """Takes a batch of at most ``fits`` rows; a larger one times out (nothing stored)."""

    def __init__(self, fits: int) -> None:
        self.fits = fits
        self.ledger: set[tuple[str, int]] = set()
        self.written: Counter[tuple[str, int]] = Counter()
        self.observations = 0
        self.sizes: list[int] = []
        self.windows: list[int] = []  # each batch's oldest window, in write order

    def write_batch(self, batch: Batch) -> BatchResult:
        if batch.rows > self.fits:
            raise StoreUnavailable("store write timed out after 30s")
        if (batch.agent_id, batch.seq) in self.ledger:
            return BatchResult(duplicate=batch.rows)
        self.ledger.add((batch.agent_id, batch.seq))
        deltas, obs = batch.split(0, len(batch.units))
        for d in deltas:
            self.written[(d.key.function_name, d.window_start_ns)] += d.invocation_count
        self.observations += len(obs)
        self.sizes.append(batch.rows)
        self.windows.append(min(u.window_start_ns for u in batch.units if u is not None))
        return BatchResult(written=batch.rows)

    def abort(self) -> None:
        pass


def test_a_backlog_larger_than_the_store_takes_at_once_is_written_exactly_once() -> None:
    p = PendingWrites(agent_id="node/a")
    deltas = [delta(i, w) for w in range(3) for i in range(40_000)]  # 120,000 rows, 3 windows
    want = Counter({(d.key.function_name, d.window_start_ns): d.invocation_count for d in deltas})
    p.add(deltas, [ObservationWindow(IMG, "n", T0 + w * 60 * S, 7) for w in range(3)])
    store = SlowStore(fits=MAX_BATCH_ROWS)
    assert asyncio.run(p.flush(store)) is True, p.last_error
    assert p.pending_rows == 0 and p.failures == 0
    assert store.written == want  # every count, once
    assert store.observations == 3
    assert store.sizes == [50_000, 50_000, 20_003] and p.rows_flushed == 120_003
    assert store.windows == sorted(store.windows)  # oldest windows first
    assert sorted(s for _, s in store.ledger) == [1, 2, 3]


def test_batches_are_cut_at_the_limit_and_a_failed_one_is_retried_as_it_was() -> None:
    p = PendingWrites(agent_id="node/a", max_batch_rows=100)
    p.add([delta(i, i // 400) for i in range(1_050)], [])
    store = SlowStore(fits=0)  # down: nothing fits
    assert asyncio.run(p.flush(store)) is False
    assert p.pending_rows == 1_050
    store.fits = 100
    assert asyncio.run(p.flush(store)) is True
    assert store.sizes == [100] * 10 + [50]
    assert sum(store.written.values()) == sum(1 + i % 5 for i in range(1_050))
    spool = PendingWrites(agent_id="node/b", max_batch_rows=100)
    spool.add([delta(i, 0) for i in range(250)], [])
    assert [(b.seq, b.rows) for b in spool.take_all()] == [(1, 100), (2, 100), (3, 50)]
