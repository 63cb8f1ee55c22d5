"""A replay without the export lock while an agent following the file has left no trace (s42/E3).

s41/E2's hole: agent E holds the export lock and counts lines L of the export file, but has
stored nothing yet (it resumed at an older record of its own, or it is the first agent of an
install and reads the file from its start). Meanwhile replayer R, which does not hold the lock
(an agent moved to Tetragon's gRPC stream, or ``export_unguarded``), replays dead agent A's
spooled batch of L: store/export_spans.py found no trace of E (no position row, no span), so R
stored L as counts, and E's first flush stored its counts of L too: L counted twice. Nothing R
can read tells it E exists, so such a batch is now stored as a gap (unknown), never as counts.

Both agents' code paths against one real store (SQLite and PostgreSQL): E's decision where to
read (sources/export_store.py ``reconcile`` on the store's row and spans, or the store's node
history for a read from the start), R's replay through PendingWrites with ``spool_unlocked``
(agent/watch_record.py), E's first flush through PendingWrites with its position and spans.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.agent.node_history import last_window_ns
from stellaops_runtime.hotsymbols.clock_span import now_pair
from stellaops_runtime.sources.export_store import OWN, reconcile
from stellaops_runtime.store.batches import batch_from_json, batch_to_json
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.export_position import read_position
from stellaops_runtime.store.export_spans import read_spans
from stellaops_runtime.store.pending import PendingWrites
from tests.integration.test_export_spans_doubt import _old_format
from tests.integration.test_export_spans_store import NODE, _delta, _gaps, _invoked, _position, _spooled
from tests.integration.test_export_store_reconcile import _cp

LINE = b'{"process_kprobe":{}}\n'
E, R, A = f"{NODE}/e", f"{NODE}/r", f"{NODE}/a"


def _file(tmp_path: Path) -> tuple[Path, int, int]:
    log = tmp_path / "tetragon.log"
    log.write_bytes(LINE * 10)
    return log, os.stat(log).st_ino, len(LINE) * 10


def _span_position(agent: str, ino: int, lo: int, hi: int) -> dict[str, Any]:
    position = _position(agent, lo, hi, spans=[[ino, lo, hi, ""]])
    position["checkpoint"]["ino"] = ino
    return position


def _replay_unlocked(store: Any, ino: int, lo: int, hi: int) -> PendingWrites:
    """R replays A's spooled batch of bytes ``lo``..``hi`` without the export lock."""
    pending = PendingWrites(agent_id=R)
    pending.spool_unlocked = lambda: True  # no export source (gRPC only), or export_unguarded
    pending.load([_spooled(A, _span_position(A, ino, lo, hi))])
    assert asyncio.run(pending.flush(store))
    return pending


def _first_flush(store: Any, ino: int, lo: int, hi: int) -> None:
    """E's first stored flush: its counts of bytes ``lo``..``hi`` with its position and spans."""
    pending = PendingWrites(agent_id=E)
    pending.position_of = lambda: _span_position(E, ino, lo, hi)
    pending.add([_delta("inflate", 3)], [])
    assert asyncio.run(pending.flush(store))


def test_a_replay_without_the_lock_while_a_resumed_agent_has_stored_nothing_is_a_gap(
    url: str, tmp_path: Path
) -> None:
    """E resumes at its own older record (the store holds no trace of anyone: OWN), reads on; R
    replays A's batch of the same lines before E's first flush. Seen failing before the fix: 6
    calls stored where 3 were made."""
    log, ino, end = _file(tmp_path)
    store = open_store(url)
    try:
        older = _cp(log, 2 * len(LINE))
        with log.open("rb") as f:  # E holds the lock: reads the row and spans, then decides
            row, spans = read_position(store.db, NODE), read_spans(store.db, NODE)
            how, cp, _, _ = reconcile(f, str(log), (older, now_pair()), row, E, spans=spans)
        assert how == OWN and cp is not None
        pending = _replay_unlocked(store, ino, cp["pos"], end)
        _first_flush(store, ino, cp["pos"], end)
        assert _invoked(store) == 3, "the lines were counted twice"
        assert pending.spool_unverified_rows == 2
        assert _gaps(store), "A's windows are not a gap"
    finally:
        store.close()


def test_a_replay_without_the_lock_while_the_first_agent_reads_from_the_start_is_a_gap(
    url: str, tmp_path: Path
) -> None:
    """E is the first agent of its install (no watch record): the store holds no window of the node,
    so it reads the file from its start (exportFromStart); R replays A's batch of the same lines
    before E's first flush. Seen failing before the fix: 6 calls stored where 3 were made."""
    _log, ino, end = _file(tmp_path)
    store = open_store(url)
    try:
        assert last_window_ns(store.db, NODE) is None  # E's question: a new node, read from the start
        pending = _replay_unlocked(store, ino, 0, end)
        _first_flush(store, ino, 0, end)
        assert _invoked(store) == 3, "the lines were counted twice"
        assert pending.spool_unverified_rows == 2
        assert _gaps(store), "A's windows are not a gap"
    finally:
        store.close()


@pytest.mark.parametrize(
    "kind", ["spans", "before_the_spans", "grpc_of_session_39", "spans_not_well_formed", "no_export_counts"]
)
def test_what_a_replay_without_the_lock_stores_where_no_other_agent_left_a_trace(url: str, kind: str) -> None:
    """The price: with no trace of any other agent in the store (a node moved from the export file to
    the gRPC stream while its store was away), a batch that may hold export counts is a gap all the
    same, its counts unknown (nothing rules out a follower with none stored yet); so is a gRPC-only
    agent's batch of a spool file of session 39 or before (it wrote no ``export_position`` key for
    a batch of no export counts either: which it is, is not known); a batch that says it holds no
    export counts is stored as counts."""
    batch = _spooled(A, _span_position(A, 77, 0, 500))
    if kind == "before_the_spans":
        batch = _old_format(batch)
    elif kind == "grpc_of_session_39":
        batch = _old_format(_spooled(A, None))
    elif kind == "spans_not_well_formed":
        batch = _spooled(A, {**_span_position(A, 77, 0, 500), "spans": [[77, 500, 0, ""]]})
    elif kind == "no_export_counts":
        batch = batch_from_json(batch_to_json(_spooled(A, None)))
    store = open_store(url)
    try:
        pending = PendingWrites(agent_id=R)
        pending.spool_unlocked = lambda: True
        pending.load([batch])
        assert asyncio.run(pending.flush(store))
        if kind == "no_export_counts":
            assert _invoked(store) == 3 and pending.spool_unverified_rows == 0 and not _gaps(store)
        else:
            assert _invoked(store) == 0 and pending.spool_unverified_rows == 2 and _gaps(store)
            assert read_position(store.db, NODE) is None and read_spans(store.db, NODE) == []
    finally:
        store.close()
