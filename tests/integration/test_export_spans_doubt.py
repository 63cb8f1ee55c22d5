"""Spooled counts of the export file whose lines could not be checked (s40/e).

store/export_spans.py checks a spooled batch of the export file against the spans other agents
stored. An inode at or above 2**63 (XFS with inode64, overlay, btrfs, NFS hand such out) made
the spans "not well formed": no agent wrote any and no replay was checked, so counts another
agent had stored already were stored again, silently. The ``ino`` bigint column now keeps the
inode's 64 bits as a signed number. Real SQLite and PostgreSQL stores.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

from stellaops_runtime.hotsymbols.clock_span import now_pair
from stellaops_runtime.sources.export_store import NONE, reconcile
from stellaops_runtime.store.batches import Batch, batch_from_json, batch_to_json
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.export_position import read_position
from stellaops_runtime.store.export_spans import read_spans
from stellaops_runtime.store.pending import PendingWrites
from stellaops_runtime.store.spool import read_spool, write_spool
from tests.integration.test_export_spans_store import (
    IMG,
    NODE,
    _gaps,
    _invoked,
    _position,
    _replay,
    _spooled,
    _stored_live,
)
from tests.integration.test_export_store_reconcile import _cp

BIG = (1 << 64) - 3  # an inode no signed 64-bit integer holds


def test_spans_of_an_inode_past_2_63_are_stored_and_checked(url: str) -> None:
    store = open_store(url)
    try:
        big = _position(f"{NODE}/x", 100, 900, spans=[[BIG, 100, 900, ""]])
        big["checkpoint"]["ino"] = BIG
        _stored_live(store, f"{NODE}/x", 100, 900, position=big)
        assert [s[:4] for s in read_spans(store.db, NODE)] == [(f"{NODE}/x", BIG, 100, 900)]
        pending = _replay(
            store, [_spooled(f"{NODE}/y", _position(f"{NODE}/y", 500, 800, spans=[[BIG, 500, 800, ""]]))]
        )
        assert _invoked(store) == 3 and pending.spool_recounted_rows == 2  # X's counts alone
        assert _gaps(store)
        # The same inode number's low 63 bits are another file: never met by its two's complement.
        low = BIG - (1 << 63)
        pending = _replay(
            store, [_spooled(f"{NODE}/z", _position(f"{NODE}/z", 500, 800, spans=[[low, 500, 800, ""]]))]
        )
        assert _invoked(store) == 6 and pending.spool_recounted_rows == 0
        assert {s[1] for s in read_spans(store.db, NODE)} == {BIG, low}
    finally:
        store.close()


def _old_format(batch: Batch) -> Batch:
    """``batch`` as a spool file of an agent before the spans gives it back: no export_position key."""
    d = batch_to_json(batch)
    d.pop("export_position", None)
    return batch_from_json(d)


def _old_spool(path: Path, batch: Batch) -> None:
    """The spool file an agent before s39 wrote (store/spool.py's format 1, its batches without an
    ``export_position`` key), written byte by byte as it did."""
    d = batch_to_json(batch)
    d.pop("export_position", None)
    header = {"format": "stellaops-runtime-spool", "version": 1, "batches": 1, "rows": batch.rows,
              "created_unix": 1764000000}  # fmt: skip
    body = (json.dumps(header, sort_keys=True) + "\n" + json.dumps(d, sort_keys=True) + "\n").encode()
    path.write_bytes(body + json.dumps({"sha256": hashlib.sha256(body).hexdigest()}).encode() + b"\n")


def test_an_old_agents_spooled_counts_are_a_gap_once_another_agent_stored_export_counts(
    url: str, tmp_path: Path
) -> None:
    """An agent before s39 spooled no spans: which lines its counts cover is not known. Another
    agent of the node stored counts of the export file (its position row, its spans): it may have
    counted the same lines, so the old batch's windows are a gap, said and counted, never its counts
    beside the other agent's."""
    store = open_store(url)
    try:
        _stored_live(store, f"{NODE}/x", 100, 900)
        _old_spool(tmp_path / "hot.spool", _spooled(f"{NODE}/y", None))
        pending = _replay(store, read_spool(tmp_path / "hot.spool") or [])
        assert _invoked(store) == 3  # X's counts alone
        assert pending.spool_unverified_rows == 2 and pending.spool_recounted_rows == 0
        assert [g["image_digest"] for g in _gaps(store)] == [IMG]
    finally:
        store.close()


def test_an_old_agents_spool_is_stored_where_no_other_agent_followed_an_export_file(url: str) -> None:
    """Replayed by an agent holding the export lock, no agent of the node but the spool's own stored
    counts of an export file (none, or the spool's agent stored some before its store went away):
    nobody else can have counted its lines, its counts are stored as before (replayed without the
    lock, as on a node watched by Tetragon's gRPC stream, it is a gap: test_export_unlocked_replay.py)."""
    store = open_store(url)
    try:
        pending = _replay(store, [_old_format(_spooled(f"{NODE}/y", None))])
        assert _invoked(store) == 3 and pending.spool_unverified_rows == 0 and _gaps(store) == []
        _stored_live(store, f"{NODE}/w", 0, 100)
        own = _old_format(_spooled(f"{NODE}/w", None))
        own.seq = 2
        pending = _replay(store, [own])  # W's own row and spans: W's later counts
        assert _invoked(store) == 9 and pending.spool_unverified_rows == 0
        new_grpc = _spooled(f"{NODE}/g", None)  # a new agent's batch of no export counts says so
        assert "export_position" in batch_to_json(new_grpc)
        pending = _replay(store, [batch_from_json(batch_to_json(new_grpc))])
        assert _invoked(store) == 12 and pending.spool_unverified_rows == 0
    finally:
        store.close()


def test_an_old_agents_counts_stored_unchecked_keep_another_agents_older_record_from_resuming(
    url: str, tmp_path: Path
) -> None:
    """s41/E2 (s40's limit): an old agent's spooled counts stored as counts (no other agent's trace)
    left no span and no row, so an agent of another spool path that resumed later at its own older
    record read the same lines again and stored them a second time. They now leave the node's
    export position marked unknown (where it has no row): that agent reads from the file's end,
    with a gap; the next counts of an export agent replace the mark with their position."""
    store = open_store(url)
    try:
        pending = _replay(store, [_old_format(_spooled(f"{NODE}/y", None))])
        assert _invoked(store) == 3 and pending.spool_unverified_rows == 0  # stored, as before
        log = tmp_path / "tetragon.log"
        log.write_bytes(b'{"a":1}\n' * 10)
        older = _cp(log, 8)  # D's record, before the lines the old agent may have counted
        with log.open("rb") as f:
            row, spans = read_position(store.db, NODE), read_spans(store.db, NODE)
            how, _, _, why = reconcile(f, str(log), (older, now_pair()), row, f"{NODE}/d", spans=spans)
        assert how == NONE and "not known" in why, (how, why)
        _stored_live(store, f"{NODE}/w", 0, 100)  # an export agent's counts: its position replaces the mark
        assert (read_position(store.db, NODE) or ("",))[0] == f"{NODE}/w"
        pending = _replay(store, [_old_format(_spooled(f"{NODE}/v", None))])  # never over another's row
        assert (
            pending.spool_unverified_rows == 2 and (read_position(store.db, NODE) or ("",))[0] == f"{NODE}/w"
        )
    finally:
        store.close()


def test_the_doubt_survives_a_spool_written_again(tmp_path: Path) -> None:
    """An agent that could not store an old agent's batches spools them again (merged, store/spool.py):
    they stay of unknown lines, never taken for a batch that says it holds no export counts."""
    path = tmp_path / "hot.spool"
    write_spool(path, [_old_format(_spooled(f"{NODE}/y", None)), _spooled(f"{NODE}/g", None)])
    old, new = read_spool(path) or []
    assert not old.export_known and new.export_known


def test_a_replay_without_the_export_lock_is_a_gap_once_another_agent_stored_export_counts(url: str) -> None:
    """An agent with no export source (or whose export lock cannot be taken) replays spooled export
    counts without the lock: another agent following the file may hold counts of the same lines not
    stored yet, which its check cannot see. Where another agent left a trace, they are a gap."""
    store = open_store(url)
    try:
        _stored_live(store, f"{NODE}/x", 500, 900)
        pending = PendingWrites(agent_id=f"{NODE}/next")
        pending.spool_unlocked = lambda: True
        pending.load([_spooled(f"{NODE}/y", _position(f"{NODE}/y", 100, 500))])  # disjoint spans
        assert asyncio.run(pending.flush(store))
        assert _invoked(store) == 3 and pending.spool_unverified_rows == 2
        # With the lock held, the same check is exact: disjoint spans are stored.
        pending = PendingWrites(agent_id=f"{NODE}/next2")
        pending.spool_unlocked = lambda: False
        pending.load([_spooled(f"{NODE}/z", _position(f"{NODE}/z", 100, 500))])
        assert asyncio.run(pending.flush(store))
        assert _invoked(store) == 6 and pending.spool_unverified_rows == 0
    finally:
        store.close()


def test_an_old_agents_spool_waits_for_the_export_lock_like_any_spooled_export_counts(url: str) -> None:
    """s40/RE: the export lock held back only batches whose position says they hold export counts,
    so an agent waiting for the lock stored an old agent's batch at once (which lines it holds is
    not known): while the agent holding the lock had its first counts of the same lines in flight
    (no trace yet), both were stored. Now it waits for the lock too, and is weighed after."""
    store = open_store(url)
    try:
        held = [False]  # another agent follows the file and holds the lock: its first flush in flight
        pending = PendingWrites(agent_id=f"{NODE}/next")
        pending.spool_gate = lambda: held[0]
        pending.spool_unlocked = lambda: not held[0]
        pending.load([_old_format(_spooled(f"{NODE}/y", None))])
        assert not asyncio.run(pending.flush(store)) and pending.waits_for_lock
        _stored_live(store, f"{NODE}/x", 100, 900)  # its counts land, then it stops: the lock is ours
        held[0] = True
        assert asyncio.run(pending.flush(store))
        assert _invoked(store) == 3 and pending.spool_unverified_rows == 2  # X's counts alone
    finally:
        store.close()
