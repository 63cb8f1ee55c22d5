"""A spooled batch older than the flush ledger's 30 days is stored as a gap, not counted again.

The ledger (store/ledger.py) keeps the rows of an agent that stopped with batches pending for
``LEDGER_RETENTION`` (30 days), so a batch whose COMMIT went through but whose acknowledgement
was lost, spooled at the agent's shutdown, is found "already stored" when the next agent replays
it. After 30 days its ledger row is pruned: a spool file replayed later (a node down a month)
stored the batch's counts a second time. Seen failing before the fix (the call's 7 invocations
read 14). Now a batch carries when it was frozen (kept in the spool file, through merges), and a
spooled batch frozen longer ago than the ledger keeps its rows (less a day for two clocks apart),
by the ledger's clock, is stored as gaps over its windows, as an unverified batch is
(store/export_spans.py): its counts are lost, said and counted, never doubled. SQLite and
PostgreSQL (``url``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.batches import Batch, BatchResult, batch_from_json, batch_to_json
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.errors import StoreUnavailable
from stellaops_runtime.store.ledger import LEDGER_RETENTION, prune_ledger
from stellaops_runtime.store.pending import PendingWrites
from stellaops_runtime.store.schema import datetime_to_ns
from stellaops_runtime.store.spool import read_spool, write_spool
from stellaops_runtime.store.spool_age import outlived_ledger
from stellaops_runtime.store.writer import HotSymbolStore

S = 1_000_000_000
IMG = "sha256:" + "e" * 64
KEY = HotSymbolKey(IMG, "/usr/lib/libz.so.1", "crc32", EvidenceKind.INVOKED)
DAY = 86_400


def _rows(days_ago: int) -> list[HotSymbolDelta | ObservationWindow]:
    at = (
        datetime_to_ns(dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0))
        - days_ago * DAY * S
    )
    return [
        HotSymbolDelta(KEY, at, 7, at + S, at + 2 * S),
        ObservationWindow(IMG, "node-2", at, 3, Posture.EBPF_DEEP, 60, "tetragon"),
    ]


def _frozen(monkeypatch: pytest.MonkeyPatch, days_ago: int, seq: int) -> Batch:
    """A batch as the agent's flush froze it ``days_ago`` days ago (by its clock then)."""
    then = time.time() - days_ago * DAY
    with monkeypatch.context() as m:
        m.setattr(time, "time", lambda: then)
        return Batch("node-2/gone", seq, list(_rows(days_ago)))


def _age_ledger(url: str, days: int) -> None:
    """The ledger rows written ``days`` days ago, as a month's wait would have left them."""
    eng = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    table = "signals.flush_ledger" if url.startswith("postgresql") else "flush_ledger"
    with eng.begin() as c:
        rows = c.execute(sa.text(f"SELECT agent_id, flush_seq, part, committed_at FROM {table}")).all()
        for agent, seq, part, at in rows:
            at = dt.datetime.fromisoformat(at) if isinstance(at, str) else at
            c.execute(
                sa.text(
                    f"UPDATE {table} SET committed_at = :at "
                    "WHERE agent_id = :a AND flush_seq = :s AND part = :p"
                ),
                {"at": at - dt.timedelta(days=days), "a": agent, "s": seq, "p": part},
            )
    eng.dispose()


def _age_claim(spool: Path, days: int) -> None:
    """The spooled batches' first claim ``days`` days earlier, as a month's wait would have left it."""
    [b] = read_spool(spool) or []
    assert b.claimed_unix is not None
    b.claimed_unix -= days * DAY
    write_spool(spool, [b])


def test_a_spooled_batch_older_than_the_ledger_is_a_gap_not_counted_twice(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "spool.jsonl"
    with open_store(url) as s:
        batch = _frozen(monkeypatch, 31, 1)
        assert s.write_batch(batch).written == 2  # committed; its acknowledgement lost at a store outage
        write_spool(spool, [batch])  # so the agent spooled it at its shutdown
        _age_ledger(url, 31)
        _age_claim(spool, 31)  # its first attempt's moment, by the ledger's clock, as old
        assert prune_ledger(s.db) == 1  # a month on: the ledger's row of it is pruned
        [loaded] = read_spool(spool) or []
        write_spool(spool, [loaded])  # an agent that could not reach the store spooled it again
        [replayed] = read_spool(spool) or []
        assert replayed.frozen_unix == loaded.frozen_unix == batch.frozen_unix  # its freeze, not a spooling
        assert replayed.claimed_unix == loaded.claimed_unix is not None  # its first claim, not a replay's
        result = s.write_batch(replayed)  # the node's next agent, a month later
        [row] = s.read_hot_symbols()
        assert row["invocation_count"] == 7  # was 14: counted twice
        assert (result.written, result.unverified) == (1, 2)
        start = replayed.units[1].window_start_ns  # its window is a gap now: no "not observed" over it
        gaps = [o for o in s.read_observation_windows() if o["gap_end"] is not None]
        assert [(datetime_to_ns(o["gap_start"]), o["dropped_events"]) for o in gaps] == [(start, 7)]


def test_a_younger_spooled_batch_is_stored_and_a_stored_one_found(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule takes nothing from a spool the ledger still covers: a batch frozen 28 days ago is
    stored as it is, and one the ledger holds is answered "already stored"."""
    spool = tmp_path / "spool.jsonl"
    with open_store(url) as s:
        stored, pending = _frozen(monkeypatch, 28, 1), _frozen(monkeypatch, 28, 2)
        s.write_batch(stored)
        write_spool(spool, [stored, pending])
        again, new = read_spool(spool) or []
        assert s.write_batch(again).duplicate == 2
        result = s.write_batch(new)
        assert (result.written, result.unverified) == (2, 0)
        assert sum(r["invocation_count"] for r in s.read_hot_symbols()) == 14


@pytest.mark.parametrize("stamp", [10**30, -(10**12), 253_402_300_800, "1", 1.5])
def test_a_freeze_time_no_datetime_holds_is_not_known(stamp: object) -> None:
    """A spool line's ``frozen_unix`` out of every datetime's range (a file edited by hand) raised
    OverflowError/ValueError inside the write, which the ledger takes for a refused row: every row
    of the batch went to quarantine. Seen failing before the check. Now it is not known (None): the
    batch replays as one of a file before the stamp."""
    line = batch_to_json(Batch("node-2/gone", 1, list(_rows(1))))
    batch = batch_from_json({**line, "frozen_unix": stamp})
    assert batch.frozen_unix is None
    assert not outlived_ledger(batch, dt.datetime.now(dt.UTC), LEDGER_RETENTION)


def _live(monkeypatch: pytest.MonkeyPatch, days_ago: int, seq: int) -> Batch:
    """A batch a live agent's flush froze ``days_ago`` days ago (by its wall clock then)."""
    wall = time.time() - days_ago * DAY
    with monkeypatch.context() as m:
        m.setattr(time, "time", lambda: wall)
        return Batch("node-2/live", seq, list(_rows(days_ago)))


def _days_later(monkeypatch: pytest.MonkeyPatch, days: int) -> None:
    """The clock that counts since boot ``days`` days on (the wall clock is not asked)."""
    since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
    monkeypatch.setattr(time, "clock_gettime", lambda clock: since_boot + days * DAY)


class _AckLost:
    """The real store, whose acknowledgement of the first write is lost after its COMMIT."""

    def __init__(self, store: HotSymbolStore) -> None:
        self.store, self.lost = store, False

    def write_batch(self, batch: Batch) -> BatchResult:
        result = self.store.write_batch(batch)
        if not self.lost:
            self.lost = True
            raise StoreUnavailable("connection lost before the COMMIT's acknowledgement")
        return result

    def abort(self) -> None:
        self.store.abort()


@pytest.mark.parametrize("days_ago", [31, 28])
def test_a_live_batch_unacknowledged_past_the_ledger_is_a_gap_not_counted_twice(
    url: str, monkeypatch: pytest.MonkeyPatch, days_ago: int
) -> None:
    """A live agent whose COMMIT went through but whose acknowledgement was lost keeps the batch in
    memory and retries it; cut off from the store for a month (other agents pruning the ledger), its
    retry after the ledger's row of it was pruned stored the counts a second time (seen failing
    before: 14 where 7 is right). Now a live batch held longer than the ledger keeps its rows (by
    the clock that counts since boot, which a node's wall-clock skew does not move) is stored as
    gaps, counted in ``outlived_rows``; one held 28 days is still found "already stored"."""
    with open_store(url) as s:
        pending = PendingWrites(agent_id="node-2/live")
        [delta, window] = _rows(days_ago)
        pending.add([delta], [window])
        store = _AckLost(s)
        assert not asyncio.run(pending.flush(store))  # committed; its acknowledgement lost
        _age_ledger(url, days_ago)
        assert prune_ledger(s.db) == (days_ago > 30)
        _days_later(monkeypatch, days_ago)
        assert asyncio.run(pending.flush(store))  # the same agent, its store reachable again
        assert [r["invocation_count"] for r in s.read_hot_symbols()] == [7]  # never 14
        gaps = [o for o in s.read_observation_windows() if o["gap_end"] is not None]
        if days_ago > 30:
            assert (pending.outlived_rows, pending.duplicate_rows) == (2, 0)
            assert [datetime_to_ns(o["gap_start"]) for o in gaps] == [window.window_start_ns]
        else:
            assert (pending.outlived_rows, pending.duplicate_rows, gaps) == (0, 2, [])


def test_a_live_batch_s_age_is_not_its_node_s_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node whose wall clock is a month behind the server must not lose a fresh batch's counts:
    a live batch's age is counted since boot, not from its wall-clock stamp."""
    batch = _live(monkeypatch, 40, 1)  # the node's wall clock at the freeze: 40 days behind
    assert not outlived_ledger(batch, dt.datetime.now(dt.UTC), LEDGER_RETENTION)


class _Down:
    """The real store, out of reach for the first ``n`` attempts: each fails before any statement."""

    def __init__(self, store: HotSymbolStore, n: int) -> None:
        self.store, self.n = store, n

    def write_batch(self, batch: Batch) -> BatchResult:
        if self.n:
            self.n -= 1
            raise StoreUnavailable("connection refused")
        return self.store.write_batch(batch)

    def abort(self) -> None:
        self.store.abort()


def test_a_live_batch_that_never_reached_the_store_keeps_its_counts_after_a_month(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch frozen at the start of a store outage of 31 days never reached a COMMIT (each attempt
    failed before its first statement): no ledger row of it can exist, so nothing can double. Its
    age counted from the freeze stored it as gaps, its counts lost (seen failing before: 0 calls,
    2 rows outlived); from its first attempt that reached the database, it is stored whole."""
    with open_store(url) as s:
        pending = PendingWrites(agent_id="node-2/live")
        [delta, window] = _rows(0)
        pending.add([delta], [window])
        store = _Down(s, 2)
        assert not asyncio.run(pending.flush(store))  # frozen, the store down
        _days_later(monkeypatch, 31)
        assert not asyncio.run(pending.flush(store))  # still down a month on
        assert asyncio.run(pending.flush(store))  # back
        assert [r["invocation_count"] for r in s.read_hot_symbols()] == [7]
        assert (pending.outlived_rows, pending.rows_flushed) == (0, 2)


def test_a_spooled_batch_no_attempt_of_which_reached_the_store_keeps_its_counts(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node down a month whose agent could not reach the store before it stopped: its spooled
    batch, frozen 31 days ago, never reached a COMMIT, so no ledger row of it can exist and nothing
    can double. Judged by its freeze, its counts were lost as gaps (seen failing before: 0 calls,
    2 rows unverified). The spool file now says whether (and when, by the ledger's clock) an
    attempt reached the database; one that never did is stored whole, however old."""
    spool = tmp_path / "spool.jsonl"
    with open_store(url) as s:
        write_spool(spool, [_frozen(monkeypatch, 31, 1)])  # the store out of reach until the stop
        [replayed] = read_spool(spool) or []
        result = s.write_batch(replayed)  # the node's next agent, a month later
        assert (result.written, result.unverified) == (2, 0)
        assert [r["invocation_count"] for r in s.read_hot_symbols()] == [7]


@pytest.mark.parametrize("claimed", ["absent", "1", 10**30])
def test_a_spool_line_without_a_known_claim_is_judged_by_its_freeze(
    monkeypatch: pytest.MonkeyPatch, claimed: object
) -> None:
    """A spool file of before s46 (no ``claimed_unix``) or one whose value no datetime holds does not
    say whether an attempt reached the store: judged by its freeze as before (31 days: a gap)."""
    line = batch_to_json(_frozen(monkeypatch, 31, 1))
    assert line["claimed_unix"] is None  # never reached the store: said so in the file
    old = {k: v for k, v in line.items() if k != "claimed_unix"}
    batch = batch_from_json(old if claimed == "absent" else {**old, "claimed_unix": claimed})
    assert not batch.claim_known and outlived_ledger(batch, dt.datetime.now(dt.UTC), LEDGER_RETENTION)
