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

from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_export import TetragonExportSource
from tests.unit.test_export_spans import watched


def test_a_follower_whose_directory_made_again_another_agent_locked_replays_as_unlocked(
    tmp_path: Path,
) -> None:
    export_dir = tmp_path / "tetragon"
    export_dir.mkdir()
    export = export_dir / "tetragon.log"
    export.write_bytes(b"{}\n")
    source = TetragonExportSource(str(export), queue=EventQueue(10))
    pending = watched(tmp_path, source, source.queue)  # attach_watch_record wires the replay
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
