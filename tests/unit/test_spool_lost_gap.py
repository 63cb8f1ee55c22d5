"""A spool file set aside at start: the time since the node's latest stored window is a gap (s38/x).

agent/spool_keeper.py moves a spool file it cannot read aside; its counts are lost while the
windows they belong to may be in the store with the counts stored before them. The keeper
tells the watch record (``on_lost``, agent/watch_record.py ``spool_lost``), which asks the
store for the node's latest window as it opens and starts the gap there. And an answer of the
store that came after the last tick is handed to the source at the stop (before, a stop within
a second of the store's answer left the hole unmarked). The real agents are in
tests/e2e/test_spool_set_aside_gap.py.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from stellaops_runtime.agent.spool_keeper import SpoolKeeper
from stellaops_runtime.agent.watch_record import WatchRecord, record_path, write_record
from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.hotsymbols.clock_span import now_pair
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_export import TetragonExportSource
from stellaops_runtime.store.batches import Batch, batch_to_json
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.pending import PendingWrites


def _setup(
    tmp_path: Path, *, record: bool, lost_line_at: int | None = None, damaged: bool = False
) -> tuple[WatchRecord, TetragonExportSource, int]:
    """A store holding one window of the node 10 minutes ago; with ``record``, a record of the last
    agent's stop (a second ago) and a spool file that cannot be read (``lost_line_at``: one whose
    second batch line does not decode, its window that many seconds from the stored one's); else
    no record."""
    start = (time.time_ns() // 10**9 - 600) * 10**9
    spool = str(tmp_path / "hot.spool")
    if record:
        wall, boot = now_pair()
        write_record(record_path(spool), "node-a", "node-a/1", wall - 10**9, boot - 10**9, None)
    store = open_store(f"sqlite:///{tmp_path / 'hot.db'}", migrate=True)
    try:
        store.write([], [ObservationWindow("sha256:" + "a" * 64, "node-a", start, 1)])
        source = TetragonExportSource(str(tmp_path / "tetragon.log"), queue=EventQueue(10))
        rec = WatchRecord(record_path(spool), node="node-a", agent_id="node-a/2", queue=source.queue)
        rec.resume(source)
        if record:  # else the store is asked anyway (no record)
            keeper = SpoolKeeper(spool, PendingWrites(), lambda: "")
            keeper.on_lost = rec.spool_lost  # as agent/watch_record_attach.py attach_watch_record wires it
            rec.spool_lost_since = lambda: keeper.lost_since_ns
            if lost_line_at is None:
                Path(spool).write_bytes(b"not a spool file\n{}\n")
            else:
                _spool(Path(spool), start, start + lost_line_at * 10**9)
                if damaged:  # its digest no longer matches: set aside whole
                    Path(spool).write_bytes(Path(spool).read_bytes().replace(b'"seq": 1', b'"seq": 7'))
            keeper.load()
            assert keeper.corrupt == 1
        rec.store_opened(store)
    finally:
        store.close()
    return rec, source, start


def _spool(path: Path, good_ns: int, lost_ns: int) -> None:
    """A spool file of a readable batch at ``good_ns`` and one of an unknown row type at ``lost_ns``."""
    good = Batch("node-a/1", 1, [ObservationWindow("sha256:" + "a" * 64, "node-a", good_ns, 1)])
    lost = batch_to_json(
        Batch("node-a/1", 2, [ObservationWindow("sha256:" + "a" * 64, "node-a", lost_ns, 1)])
    )
    lost["units"][0]["t"] = "a-row-type-of-a-newer-agent"
    lines = [json.dumps(batch_to_json(good)).encode(), json.dumps(lost).encode()]
    header = {"format": "stellaops-runtime-spool", "version": 1, "batches": 2, "rows": 2}
    body = b"".join(ln + b"\n" for ln in [json.dumps(header).encode(), *lines])
    path.write_bytes(body + json.dumps({"sha256": hashlib.sha256(body).hexdigest()}).encode() + b"\n")


def test_a_spool_set_aside_starts_the_gap_at_the_nodes_latest_stored_window(tmp_path: Path) -> None:
    rec, source, start = _setup(tmp_path, record=True)
    rec.tick(source)
    gap = source.take_outage()
    assert gap is not None and gap[0] == start, gap  # not at the record's moment, a second ago


def test_an_answer_after_the_last_tick_is_handed_at_the_stop(tmp_path: Path) -> None:
    rec, source, start = _setup(tmp_path, record=False)
    rec.unanswered_at_stop(source)  # the stop comes before the next tick
    gap = source.take_outage()
    assert gap is not None and gap[0] == start, gap


def test_a_lost_batch_line_naming_windows_before_the_latest_stored_one_starts_the_gap_there(
    tmp_path: Path,
) -> None:
    """s41/E2: a spool batch line that does not decode (a newer agent's rows, or one merged from
    another agent's file at its shutdown: agent/spool_keeper.py) may hold windows older than the
    node's latest stored one (another agent of the path stored after it): the gap started at the
    latest stored window, so the lost counts' windows read watched without them. It starts at the
    earliest window the line names."""
    rec, source, start = _setup(tmp_path, record=True, lost_line_at=-3600)
    rec.tick(source)
    gap = source.take_outage()
    assert gap is not None and gap[0] == start - 3600 * 10**9, (gap, start)


def test_a_spool_set_aside_whole_at_start_starts_the_gap_at_the_earliest_window_its_text_names(
    tmp_path: Path,
) -> None:
    """s41/RE2: a spool file set aside whole at start (its digest, header or counts wrong) started
    the gap at the node's latest stored window, which another agent of the path may have stored
    after the lost batches' windows: they read watched without their counts. As for a file merged
    at shutdown (store/spool.py ``lost_line``), the gap starts at the earliest window its text names."""
    rec, source, start = _setup(tmp_path, record=True, lost_line_at=-3600, damaged=True)
    rec.tick(source)
    gap = source.take_outage()
    assert gap is not None and gap[0] == start - 3600 * 10**9, (gap, start)
