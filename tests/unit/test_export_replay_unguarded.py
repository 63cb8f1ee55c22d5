"""A follower holding the export lock yet ``export_unguarded`` replays as one without the lock (s42/E3).

sources/export_lock.py: a follower whose export directory was renamed away and made again at the
path locks the new one too on its next poll; while it cannot (another agent locked it first, it
refuses the lock, more than MAX_LATER directories) the follower still holds its first lock yet
reports ``export_unguarded``: another agent may follow the same file beside it. Its replay of a
spooled batch of export counts was weighed as one holding the lock (``spool_unlocked`` read
``not lock.held``), so the exact span check ran although that other agent may hold counts of the
same lines not stored yet, which the check cannot see; both were stored. Its replay is now weighed
as unlocked (store/export_spans.py ``guard``: stored as gaps).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import SimpleNamespace

from stellaops_runtime.agent.watch_record import attach_watch_record
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_export import TetragonExportSource
from stellaops_runtime.store.pending import PendingWrites


def test_a_follower_whose_directory_made_again_another_agent_locked_replays_as_unlocked(
    tmp_path: Path,
) -> None:
    export_dir = tmp_path / "tetragon"
    export_dir.mkdir()
    export = export_dir / "tetragon.log"
    export.write_bytes(b"{}\n")
    source = TetragonExportSource(str(export), queue=EventQueue(10))
    pending = PendingWrites()
    agent = SimpleNamespace(
        config=SimpleNamespace(store=SimpleNamespace(spool_path=str(tmp_path / "hot.spool"))),
        node_name="node-a",
        agent_id="node-a/1",
        queue=source.queue,
        source=source,
        flusher=SimpleNamespace(pending=pending, spool=SimpleNamespace(window_ns=None), on_open=None),
        outages=SimpleNamespace(record=None),
    )
    attach_watch_record(agent)
    assert pending.spool_unlocked is not None
    assert source.lock.take() == "held"
    other = None
    try:
        assert pending.spool_unlocked() is False  # the one follower: its replay's check is exact
        export_dir.rename(tmp_path / "tetragon.old")  # made again at the path ...
        export_dir.mkdir()
        other = os.open(export_dir, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ... and another agent locked it first
        source.lock.keep()
        assert source.lock.held and source.lock.unguarded  # export_unguarded 1
        assert pending.spool_unlocked() is True, "weighed as holding the only export lock"
        assert pending.spool_gate is not None and pending.spool_gate() is True  # it replays meanwhile
    finally:
        source.lock.release()
        if other is not None:
            os.close(other)
