"""Spooled counts whose lines another agent's stored counts cover are stored as gaps (s39/x).

store/export_spans.py: every transaction storing counts of the export file writes the spans
(inode, first byte, byte after the last line) its agent counted; a spooled batch keeps its
agent's spans, and at its replay, in the transaction that would store it, another agent's
stored span overlapping one of them turns its rows into gaps: the counts of an agent whose
store was down for its whole life (no position row) are never stored beside another agent's
counts of the same lines (tests/e2e/test_export_spool_whole_life.py runs the real agents).
Checked here on real SQLite and PostgreSQL stores: the ledger's retry after a lost COMMIT
acknowledgement during the replay, a spool of an agent before the spans (none: stored as
before), hostile spans in a spool file, the spans kept by the spool file, the pruning.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pgproxy import PgProxy

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.export_position import read_position
from stellaops_runtime.store.export_spans import PRUNE_NS, read_spans, write_spans
from stellaops_runtime.store.pending import PendingWrites
from stellaops_runtime.store.spool import read_spool, write_spool

S = 1_000_000_000
T0 = 1_740_787_200 * S
IMG = "sha256:" + "e" * 64
NODE = "node-1"
INO = 77


def _delta(fn: str, count: int) -> HotSymbolDelta:
    return HotSymbolDelta(
        key=HotSymbolKey(IMG, "/lib/libz.so.1", fn, EvidenceKind.INVOKED),
        window_start_ns=T0,
        invocation_count=count,
        first_seen_ns=T0 + S,
        last_seen_ns=T0 + 2 * S,
        node_name=NODE,
    )


def _position(agent: str, lo: int, hi: int, **over: Any) -> dict[str, Any]:
    cp = {"path_sha256": "a" * 64, "dev": 1, "ino": INO, "pos": hi, "head_len": 0, "head_sha256": "b" * 64}
    doc = {"node": NODE, "agent_id": agent, "checkpoint": cp, "at_ns": time.time_ns(), "at_boot": 5,
           "boot_id": "id", "spans": [[INO, lo, hi, ""]]}  # fmt: skip
    return {**doc, **over}


def _spooled(agent: str, position: dict[str, Any] | None, count: int = 3) -> Batch:
    """A batch of ``agent`` as the spool file gives it back (through its JSON)."""
    units: list[Any] = [
        _delta("inflate", count),
        ObservationWindow(IMG, NODE, T0, 5, Posture.EBPF_DEEP, 60, "tetragon"),
    ]
    return Batch(agent, 1, units, from_spool=True, export_position=position)


def _stored_live(
    store: Any, agent: str, lo: int, hi: int, count: int = 3, position: dict[str, Any] | None = None
) -> None:
    """Another agent's live flush of bytes ``lo``..``hi`` (its spans written with its counts)."""
    pending = PendingWrites(agent_id=agent)
    pending.position_of = lambda: position or _position(agent, lo, hi)
    pending.add([_delta("inflate", count)], [])
    assert asyncio.run(pending.flush(store))


def _invoked(store: Any) -> int:
    return sum(r["invocation_count"] for r in store.read_hot_symbols() if r["function_name"] == "inflate")


def _gaps(store: Any) -> list[dict[str, Any]]:
    return [w for w in store.read_observation_windows() if w.get("gap_end") is not None]


def _replay(store: Any, batches: list[Batch]) -> PendingWrites:
    pending = PendingWrites(agent_id=f"{NODE}/next")
    pending.load(batches)
    assert asyncio.run(pending.flush(store))
    return pending


def test_a_spooled_batch_whose_lines_another_agent_stored_is_a_gap(url: str) -> None:
    store = open_store(url)
    try:
        _stored_live(store, f"{NODE}/x", 100, 900)  # X resumed at its old record and read Y's lines
        pending = _replay(store, [_spooled(f"{NODE}/y", _position(f"{NODE}/y", 500, 800))])
        assert _invoked(store) == 3  # X's counts alone, never Y's too
        assert pending.spool_recounted_rows == 2
        gaps = _gaps(store)
        assert gaps and all(g["image_digest"] == IMG for g in gaps)  # the window of Y's lost counts: unknown
        assert {(a, i, lo, hi) for a, i, lo, hi, _ in read_spans(store.db, NODE)} == {
            (f"{NODE}/x", INO, 100, 900)
        }
        assert read_position(store.db, NODE)[0] == f"{NODE}/x"  # type: ignore[index]  # a replay writes no row
    finally:
        store.close()


def test_a_spooled_batch_before_the_other_agents_bytes_is_stored_with_its_spans(url: str) -> None:
    store = open_store(url)
    try:
        _stored_live(store, f"{NODE}/x", 500, 900)  # X read from where Y's lines end
        pending = _replay(store, [_spooled(f"{NODE}/y", _position(f"{NODE}/y", 100, 500))])
        assert _invoked(store) == 6 and pending.spool_recounted_rows == 0 and _gaps(store) == []
        assert sorted(read_spans(store.db, NODE)) == [
            (f"{NODE}/x", INO, 500, 900, ""),
            (f"{NODE}/y", INO, 100, 500, ""),
        ]
        # The same agent's later batch (its spans widened) is not refused by its own spans.
        later = _spooled(f"{NODE}/y", _position(f"{NODE}/y", 100, 450), 1)
        later.seq = 2
        _replay(store, [later])
        assert _invoked(store) == 7
    finally:
        store.close()


def test_a_file_that_took_a_deleted_files_inode_is_another_file(url: str) -> None:
    """The same inode with another first 1024 bytes (a file made after another was deleted) is
    another file: a spooled batch of it is stored beside the old file's spans."""
    store = open_store(url)
    try:
        _stored_live(store, f"{NODE}/x", 0, 9000)
        with store.db.begin() as conn:  # X's span of the old file, its head known
            conn.execute(
                "UPDATE "
                + ("signals" if store.db.dialect == "postgresql" else "main")
                + ".export_spans SET head = "
                + ("%s" if store.db.dialect == "postgresql" else "?"),
                ("c" * 64,),
            )
        new = _position(f"{NODE}/y", 0, 5000, spans=[[INO, 0, 5000, "d" * 64]])
        pending = _replay(store, [_spooled(f"{NODE}/y", new)])
        assert _invoked(store) == 6 and pending.spool_recounted_rows == 0
        same = _position(f"{NODE}/z", 0, 5000, spans=[[INO, 0, 5000, "c" * 64]])
        pending = _replay(store, [_spooled(f"{NODE}/z", same)])
        assert _invoked(store) == 6 and pending.spool_recounted_rows == 2  # the old file's: a gap
    finally:
        store.close()


def test_a_spool_with_hostile_spans_is_a_gap_once_another_agent_stored_never_a_crash(
    url: str, tmp_path: Path
) -> None:
    """A spool file's positions and spans that are not ours (not well formed) cannot be checked,
    never a crash: with another agent's counts of the export file stored, they are gaps (s40/e,
    tests/integration/test_export_spans_doubt.py); a batch that says it holds no export counts
    (a null position) is stored."""
    store = open_store(url)
    try:
        _stored_live(store, f"{NODE}/x", 0, 900)
        hostile: list[Any] = [
            None,
            {"node": NODE, "agent_id": "old"},  # no spans at all
            _position("h1", 0, 10, spans="0-10"),
            _position("h2", 0, 10, spans=[[INO, 10, 0, ""]]),
            _position("h3", 0, 10, spans=[[INO, 0, 1 << 63, ""]]),
            _position("h4", 0, 10, spans=[[INO, 0, 10.5, ""]]),
            _position("h5", 0, 10, spans=[[INO, 0, 10, ""]] * 9),
            _position("h9", 0, 10, spans=[[INO, 0, 10]]),
            _position("h10", 0, 10, spans=[[INO, 0, 10, "X" * 64]]),
            _position("h11", 0, 10, spans=[[INO, 0, 10, None]]),
            _position("h6", 0, 10, node="node\0x"),
            _position("h7", 0, 10, agent_id=["x"]),
            _position("h8", 0, 10, at_ns="now"),
            _position("h12", 0, 10, agent_id="y\udcff"),  # s40/e: no UTF-8 (surrogateescape-decoded)
            _position("h13", 0, 10, node="n\udcff"),
        ]
        batches = [_spooled(f"{NODE}/old{i}", p, 1) for i, p in enumerate(hostile)]
        for i, b in enumerate(batches):
            b.seq = i + 1
        path = tmp_path / "hot.spool"
        write_spool(path, batches)
        pending = _replay(store, read_spool(path) or [])
        assert _invoked(store) == 3 + 1 and pending.spool_recounted_rows == 0
        assert pending.spool_unverified_rows == 2 * (len(hostile) - 1) and pending.quarantined_rows == 0
    finally:
        store.close()


def test_the_spool_file_keeps_a_batchs_spans(tmp_path: Path) -> None:
    path = tmp_path / "hot.spool"
    pos = _position(f"{NODE}/y", 100, 500)
    write_spool(path, [Batch(f"{NODE}/y", 4, [_delta("f", 1)], export_position=pos)])
    (back,) = read_spool(path) or []
    assert back.from_spool and back.export_position == pos


def test_spooled_export_counts_wait_for_the_export_lock(url: str) -> None:
    """Another agent following the file now may store counts of the same lines later: the spooled
    batch is written only once this agent holds the export lock (agent/watch_record.py)."""
    store = open_store(url)
    try:
        held = [False]
        pending = PendingWrites(agent_id=f"{NODE}/next")
        pending.spool_gate = lambda: held[0]
        pending.load([_spooled(f"{NODE}/y", _position(f"{NODE}/y", 100, 500))])
        assert not asyncio.run(pending.flush(store)) and _invoked(store) == 0
        assert "export lock" in (pending.last_error or "")
        held[0] = True
        assert asyncio.run(pending.flush(store)) and _invoked(store) == 3
    finally:
        store.close()


def test_spans_older_than_the_spool_are_pruned_when_read(url: str) -> None:
    store = open_store(url)
    try:
        with store.db.begin() as conn:
            write_spans(conn, NODE, "old", [(INO, 0, 10, "")], 1)
            write_spans(conn, NODE, "new", [(INO, 0, 10, "")], time.time_ns())
            write_spans(conn, NODE, "new", [(INO, 5, 20, "")], 2)  # widened, never narrowed
        assert read_spans(store.db, NODE) == [("new", INO, 0, 20, "")]
        assert PRUNE_NS > 30 * 86400 * S
    finally:
        store.close()


@pytest.mark.postgres
def test_a_lost_commit_ack_during_the_replay_stores_the_gap_once(pg_url: str) -> None:
    target = urlsplit(pg_url.replace("postgresql+psycopg", "postgresql"))
    proxy = PgProxy(target.hostname or "127.0.0.1", target.port or 5432)
    store = open_store(proxy.url(pg_url))
    try:
        _stored_live(store, f"{NODE}/x", 100, 900)
        pending = PendingWrites(agent_id=f"{NODE}/next")
        pending.load(
            [
                _spooled(f"{NODE}/y", _position(f"{NODE}/y", 0, 500)),
                _spooled(f"{NODE}/z", _position(f"{NODE}/z", 900, 950)),
            ]
        )
        proxy.drop_commit_acks = 1
        assert asyncio.run(pending.flush(store)) is False  # not acknowledged: the replay cannot tell
        assert asyncio.run(pending.flush(store)) is True  # the retry: the ledger says stored
        assert pending.duplicate_rows == 2 and _invoked(store) == 6  # X's and Z's, once each
        assert len(_gaps(store)) == 1
    finally:
        store.close()
        proxy.close()


@pytest.mark.postgres
def test_a_node_clock_far_off_never_prunes_the_spans_a_resume_needs(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """s39/rx: spans were stamped and pruned on the agents' own clocks, so a node whose clock was
    40 days behind when a spool was replayed (a board without an RTC before NTP), or ahead when an
    agent resumed, deleted the replayed spool's spans at that resume: the resume no longer saw the
    lines stored and counted them again. On PostgreSQL the server's clock stamps and prunes them."""
    from types import SimpleNamespace

    from stellaops_runtime.store import export_spans

    days40 = 40 * 86400 * S
    store = open_store(pg_url)
    try:
        monkeypatch.setattr(export_spans, "time", SimpleNamespace(time_ns=lambda: time.time_ns() - days40))
        _replay(store, [_spooled(f"{NODE}/y", _position(f"{NODE}/y", 100, 500))])  # the clock behind
        monkeypatch.setattr(export_spans, "time", SimpleNamespace(time_ns=lambda: time.time_ns() + days40))
        assert [s[:4] for s in read_spans(store.db, NODE)] == [(f"{NODE}/y", INO, 100, 500)]  # ahead
        monkeypatch.undo()
        assert [s[:4] for s in read_spans(store.db, NODE)] == [(f"{NODE}/y", INO, 100, 500)]
    finally:
        store.close()


def test_rows_behind_spooled_counts_waiting_for_the_export_lock_are_stored(url: str) -> None:
    """s39/rx: the gate held every batch behind a spooled export batch, so while the export lock
    could not be taken (Tetragon's export directory not there yet after a reboot, Tetragon down)
    the node-wide gaps of that very time (nobody watched: the restart hole, the outage) stayed in
    memory, and a day read as watched gave 'not observed' for calls nobody could see. Only the
    spooled export batch waits for the lock now; the rows behind it are stored."""
    store = open_store(url)
    try:
        held = [False]
        pending = PendingWrites(agent_id=f"{NODE}/next")
        pending.spool_gate = lambda: held[0]
        pending.load([_spooled(f"{NODE}/y", _position(f"{NODE}/y", 100, 500))])
        start = T0 + 3600 * S
        hole = ObservationWindow("", NODE, start, 0, None, 3600, "", start, start + 600 * S)  # node-wide
        pending.add([], [hole])
        assert not asyncio.run(pending.flush(store))  # the spooled batch still waits ...
        assert "export lock" in (pending.last_error or "") and _invoked(store) == 0
        assert [(g["image_digest"], g["node_name"]) for g in _gaps(store)] == [("", NODE)]  # ... not the gap
        assert pending.spool_batches_left == 1
        held[0] = True
        assert asyncio.run(pending.flush(store)) and _invoked(store) == 3 and pending.spool_batches_left == 0
        assert pending.last_error is None
    finally:
        store.close()


def test_a_stop_with_spooled_counts_the_export_lock_holds_back_spools_them_at_once(
    tmp_path: Path, sqlite_at_head: Any
) -> None:
    """s39/rx: an agent stopping while its spooled export counts wait for a lock it does not hold
    (another agent follows the file, or the export directory is missing) retried the final flush
    until the shutdown deadline (20 s by default), though no retry could store them: they are
    spooled again after the first attempt stored everything else."""
    from stellaops_runtime.agent.flusher import Flusher
    from stellaops_runtime.contracts.config import AgentConfig

    async def no_drain() -> None:
        return None

    spool = tmp_path / "hot.spool"
    cfg = AgentConfig(store={"url": sqlite_at_head(tmp_path / "hot.db"), "spoolPath": str(spool)})
    f = Flusher(cfg, agent_id=f"{NODE}/next", drain=no_drain, stop=lambda _reason: None)
    f.pending.spool_gate = lambda: False
    f.pending.load([_spooled(f"{NODE}/y", _position(f"{NODE}/y", 100, 500))])
    f.pending.add([], [ObservationWindow("", NODE, T0, 0, None, 60, "", T0, T0 + 60 * S)])
    attempts = []
    real = f.pending.flush

    async def counted(*a: Any, **k: Any) -> bool:
        attempts.append(1)
        return await real(*a, **k)

    f.pending.flush = counted  # type: ignore[method-assign]
    try:
        assert asyncio.run(f.final_flush(time.monotonic() + 3))
        assert len(attempts) == 1 and [(g["image_digest"]) for g in _gaps(f.store)] == [""]
        [back] = read_spool(spool) or []
        assert back.agent_id == f"{NODE}/y" and back.export_position is not None
    finally:
        if f.store is not None:
            f.store.close()
