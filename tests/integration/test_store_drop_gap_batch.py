"""A row dropped from a frozen batch leaves its gap in that batch, never in a later one.

The outage buffer (store/pending.py) drops the oldest rows past
``max_pending_rows``, and a dropped hot-symbol row becomes a gap on its image,
node and window, so no "not observed" can rest on that window. The oldest
rows are often in a batch frozen by a failed flush, beside the observation
window of their image. The gap went to the buffer, i.e. into a later batch:
the frozen batch was stored first, saying the image was watched in the
window without the dropped calls, and until the later batch was stored (or
for good, when the store failed again and the agent stopped) ``query
observed`` answered "not observed" (exit 1) for a function whose calls had
been dropped. Now the gap takes the dropped row's place in its batch: it is
stored with (or before) the window's observation, under the same ledger
range; and when that range turns out to be stored already (a lost
acknowledgement), so was the dropped row, and no gap is needed.

Real SQLite store, real ``query observed``; the writer fails the second batch
the way a store that goes down again does.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from stellaops_runtime.cli.main import main
from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.batches import Batch, BatchResult
from stellaops_runtime.store.engine import StoreUnavailable, open_store
from stellaops_runtime.store.pending import PendingWrites
from stellaops_runtime.store.writer import HotSymbolStore

S = 1_000_000_000
W = 60 * S
IMG = "sha256:" + "e" * 64
NODE = "node-1"
T0 = (int(dt.datetime.now(dt.UTC).timestamp()) // 3600 - 2) * 3600 * S  # two hours ago, on the hour


def delta(fn: str, window: int, count: int) -> HotSymbolDelta:
    start = T0 + window * W
    return HotSymbolDelta(
        key=HotSymbolKey(IMG, "/lib/libz.so.1", fn, EvidenceKind.INVOKED),
        window_start_ns=start, invocation_count=count, first_seen_ns=start + S,
        last_seen_ns=start + 2 * S, node_name=NODE,
    )  # fmt: skip


def watched(window: int, events: int) -> ObservationWindow:
    return ObservationWindow(IMG, NODE, T0 + window * W, events, Posture.EBPF_DEEP, 60, "tetragon")


class FailingAfter:
    """The real store; every write after the first ``ok`` ones fails as if the store went down."""

    def __init__(self, store: HotSymbolStore, ok: int) -> None:
        self.store, self.ok = store, ok

    def write_batch(self, batch: Batch) -> BatchResult:
        if self.ok <= 0:
            raise StoreUnavailable("store down again")
        self.ok -= 1
        return self.store.write_batch(batch)

    def abort(self) -> None:
        self.store.abort()


def answer(url: str, fn: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    capsys.readouterr()
    code = main(["query", "observed", "--store", url, "--image", IMG, "--function", fn, "--json"])
    return code, json.loads(capsys.readouterr().out)


async def test_the_gap_of_a_row_dropped_from_a_frozen_batch_is_stored_with_that_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/hot.db"
    with open_store(url) as store:
        p = PendingWrites(max_pending_rows=3, agent_id="node-1/a")
        p.add([delta("crc32", 0, 5), delta("inflate", 0, 7)], [watched(0, 12)])
        assert not await p.flush(FailingAfter(store, 0))  # frozen: [crc32, inflate, watched]
        p.add([delta("deflate", 5, 1)], [])  # past the bound: the oldest row (crc32) goes
        assert (p.dropped_rows, p.dropped_invocations) == (1, 5)
        # The frozen batch is stored; the next write fails and the agent goes away.
        assert not await p.flush(FailingAfter(store, 1))

    code, doc = answer(url, "crc32", capsys)
    assert code == 3, doc  # unknown: its calls in window 0 were dropped; never "not observed"
    assert doc["answer"] == "unknown" and doc["gaps"], doc
    code, doc = answer(url, "inflate", capsys)
    assert code == 0 and doc["answer"] == "observed", doc
    with open_store(url) as store:
        (row,) = store.read_observation_windows()
    assert (row["event_count"], row["dropped_events"]) == (12, 5)
    assert row["gap_start"] is not None and row["gap_end"] is not None


async def test_a_dropped_row_whose_range_was_already_stored_adds_no_gap(tmp_path: Path) -> None:
    """A lost acknowledgement: the batch was stored, so the dropped row was too; its retry adds nothing."""
    url = f"sqlite:///{tmp_path}/hot.db"
    with open_store(url) as store:
        p = PendingWrites(max_pending_rows=3, agent_id="node-1/a")
        p.add([delta("crc32", 0, 5), delta("inflate", 0, 7)], [watched(0, 12)])
        (frozen,) = p.take_all()
        store.write_batch(Batch(frozen.agent_id, frozen.seq, list(frozen.units)))  # committed, ack lost
        p.load([frozen])
        p.add([delta("deflate", 5, 1)], [])
        assert p.dropped_rows == 1
        assert await p.flush(store)
        rows = {r["function_name"]: r["invocation_count"] for r in store.read_hot_symbols()}
        assert rows == {"crc32": 5, "inflate": 7, "deflate": 1}
        (row,) = store.read_observation_windows()
        assert (row["event_count"], row["dropped_events"], row["gap_start"]) == (12, 0, None)
