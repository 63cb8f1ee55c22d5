"""A spooled count whose window start is far before 1970 (a hostile spool file) still leaves a gap.

A row not stored leaves a gap over its window (store/pending_buffer.py ``gap_of``): at the outage
bound, and where a spooled batch is stored as gaps (store/export_spans.py, a replay without the
export lock). Its gap ran from ``max(1, start)`` to ``start + window``: for a start more than one
window before the epoch the end fell before the start, so the row was no gap (``has_gap`` False):
its count was not stored and nothing marked its window, the silence RE3 noted (s42). A frozen
batch's drop then raised (``put_gap`` takes only a gap), failing the flush. A start near 2**63
gave an end past what the store holds. The gap is now clamped to the store's range, at least a
nanosecond: the count would have been stored at the earliest time there is, so the gap is there;
the rows not stored are counted as before. Seen failing before the fix.
"""

from __future__ import annotations

import asyncio

import pytest

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.pending import PendingWrites
from stellaops_runtime.store.pending_buffer import dropped_gap, gap_of
from tests.integration.test_export_spans_store import _gaps
from tests.integration.test_vex import IMG, ZLIB

NODE = "node-1"
MAX_NS = 2**63 - 1


def _hostile(start: int) -> HotSymbolDelta:
    key = HotSymbolKey(IMG, ZLIB, "inflate", EvidenceKind.INVOKED)
    seen = start if type(start) is int else 10**18  # the calls' times as read; only the window is hostile
    return HotSymbolDelta(key, start, 5, seen + 1, seen + 2, node_name=NODE)


@pytest.mark.parametrize("start", [-(10**18), -(2**63), -86_400 * 10**9 - 1, MAX_NS - 10, 10**30])
def test_every_dropped_count_leaves_a_gap_the_store_can_hold(start: int) -> None:
    gap = gap_of(_hostile(start), 60)
    assert gap.has_gap and 1 <= gap.gap_start_ns < gap.gap_end_ns <= MAX_NS, gap


def test_a_frozen_spooled_batch_drops_a_hostile_count_into_a_gap() -> None:
    """The outage bound drops a loaded spool batch's oldest row: its gap takes its place."""
    pending = PendingWrites(agent_id=f"{NODE}/next", max_pending_rows=1)
    pending.load([Batch(f"{NODE}/old", 1, [_hostile(-(10**18)), _hostile(10**18)], from_spool=True)])
    assert pending.dropped_rows == 1 and pending.gap_rows_from_drops == 1, vars(pending)
    assert dropped_gap(_hostile(-(10**18)), 60) is not None


def test_a_hostile_count_replayed_as_gaps_leaves_a_gap(url: str) -> None:
    store = open_store(url)
    try:
        pending = PendingWrites(agent_id=f"{NODE}/next")
        pending.spool_unlocked = lambda: True
        position = {"spans": "not known"}  # may hold export counts: stored as gaps without the lock
        pending.load(
            [Batch(f"{NODE}/old", 1, [_hostile(-(10**18))], from_spool=True, export_position=position)]
        )
        assert asyncio.run(pending.flush(store))
        assert pending.spool_unverified_rows == 1  # the counter
        assert [g["image_digest"] for g in _gaps(store)] == [IMG], "the hostile count left no gap"
        assert not [r for r in store.read_hot_symbols() if r["function_name"] == "inflate"]
    finally:
        store.close()


@pytest.mark.parametrize("start", ["abc", None, 1.5, True])
def test_a_count_of_no_integer_window_at_the_bound_is_quarantined_not_a_crash(
    url: str, start: object
) -> None:
    """A spool line's window start of another type (a hostile or damaged file): the outage bound
    ordered the rows by it and raised TypeError (``'>' not supported``, or in ``gap_of``), failing
    the spool's load at start. Such a row has no window to be ordered by, nor a gap to leave: the
    bound keeps it, and the write quarantines it, counted (store/rowcheck.py), the good rows kept."""
    pending = PendingWrites(agent_id=f"{NODE}/next", max_pending_rows=1)
    rows = [_hostile(10**18), _hostile(start), _hostile(10**18 + 60 * 10**9)]  # type: ignore[arg-type]
    pending.load([Batch(f"{NODE}/old", 1, rows, from_spool=True)])
    assert pending.dropped_rows == 1 and pending.gap_rows_from_drops == 1, vars(pending)
    store = open_store(url)
    try:
        assert asyncio.run(pending.flush(store))
        assert pending.quarantined_rows == 1, vars(pending)
        assert [r["invocation_count"] for r in store.read_hot_symbols()] == [5]
        assert len(_gaps(store)) == 1
    finally:
        store.close()
