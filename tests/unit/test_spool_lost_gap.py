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

import time
from pathlib import Path

from stellaops_runtime.agent.spool_keeper import SpoolKeeper
from stellaops_runtime.agent.watch_record import WatchRecord, record_path, write_record
from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.hotsymbols.clock_span import now_pair
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_export import TetragonExportSource
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.pending import PendingWrites


def _setup(tmp_path: Path, *, record: bool) -> tuple[WatchRecord, TetragonExportSource, int]:
    """A store holding one window of the node 10 minutes ago; with ``record``, a record of the last
    agent's stop (a second ago) and a spool file that cannot be read; else no record."""
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
            keeper.on_lost = rec.spool_lost  # as agent/watch_record.py attach_watch_record wires it
            Path(spool).write_bytes(b"not a spool file\n{}\n")
            keeper.load()
            assert keeper.corrupt == 1
        rec.store_opened(store)
    finally:
        store.close()
    return rec, source, start


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
