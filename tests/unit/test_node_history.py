"""agent/node_history.py: the node's latest observation window, read over the agent's DB-API
connection (SQLite here; PostgreSQL in tests/e2e/test_export_record_lost.py), and in spooled rows.

A lost watch record makes the next agent ask the store whether an agent ran on the node
before (s34/h4); a wrong answer either replays an export file already counted or drops a gap.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from stellaops_runtime.agent.node_history import last_window_ns, spooled_window_ns
from stellaops_runtime.agent.watch_record import WatchRecord
from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.hotsymbols.clock_span import now_pair
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_export import TetragonExportSource
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store

T = 1_796_000_000 * 10**9  # a window start, whole seconds (the column keeps microseconds)


def _window(node: str, start: int) -> ObservationWindow:
    return ObservationWindow(
        image_digest="sha256:" + "a" * 64, node_name=node, window_start_ns=start, event_count=1
    )


def test_the_latest_window_of_the_node_and_no_other(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'hot.db'}", migrate=True)
    try:
        assert last_window_ns(store.db, "node-a") is None  # nothing yet: the node's first agent
        store.write(
            [], [_window("node-a", T), _window("node-a", T + 60 * 10**9), _window("node-b", T + 10**12)]
        )
        assert last_window_ns(store.db, "node-a") == T + 60 * 10**9
        assert last_window_ns(store.db, "node-c") is None
    finally:
        store.close()


def test_the_latest_spooled_window() -> None:
    batch = Batch(agent_id="node-a/1", seq=1, units=[_window("node-a", T), None, _window("node-a", T + 5)])
    assert spooled_window_ns([batch]) == T + 5
    assert spooled_window_ns([]) is None


def _asked(tmp_path: Path, window_start: int) -> tuple[WatchRecord, TetragonExportSource]:
    """An agent with no watch record whose store holds one window of the node at ``window_start``."""
    store = open_store(f"sqlite:///{tmp_path / 'hot.db'}", migrate=True)
    try:
        store.write([], [_window("node-a", window_start)])
        source = TetragonExportSource(str(tmp_path / "tetragon.log"), queue=EventQueue(10), from_start=True)
        rec = WatchRecord(
            str(tmp_path / "spool.alive"), node="node-a", agent_id="node-a/2", queue=source.queue
        )
        rec.resume(source)  # no record: the store is asked
        rec.store_opened(store)
    finally:
        store.close()
    rec.tick(source)  # the answer is handed to the source
    return rec, source


def test_a_window_ahead_of_the_clock_starts_the_gap_at_the_nodes_boot(tmp_path: Path, caplog) -> None:
    """An earlier agent's clock was an hour ahead (stepped back since): its windows lie in the
    future, and the hole since it, on this clock, ends now. A gap from that future window to now
    covered the future and left the hole before now unmarked."""
    before = time.time_ns()
    with caplog.at_level(logging.WARNING, logger="stellaops_runtime.agent.watch_record"):
        rec, source = _asked(tmp_path, (before // 10**9 + 3600) * 10**9)
    gap = source.take_outage()
    wall, boot = now_pair()
    assert gap is not None and gap[0] <= wall - boot + 10**9 and gap[0] < before - 10**9, gap
    assert gap[1] >= before
    assert source._history is True  # exportFromStart is not replayed: an earlier agent counted
    assert rec.restart_gaps == 1 and "ahead of the clock" in caplog.text


def test_a_window_in_the_past_starts_the_gap_there(tmp_path: Path) -> None:
    start = (time.time_ns() // 10**9 - 600) * 10**9
    _, source = _asked(tmp_path, start)
    gap = source.take_outage()
    assert gap is not None and gap[0] == start and gap[1] >= start + 600 * 10**9


def test_a_window_ahead_by_less_than_the_skew_allowed_makes_no_gap_from_the_boot(
    tmp_path: Path, caplog
) -> None:
    """A window a few seconds ahead (clocks of two agents of the node a little apart, within
    FUTURE_SKEW_NS) is an earlier agent that watched until about now: no gap from the node's boot
    for it, and no 'stepped back' warning; exportFromStart is still not replayed (s36/r1 probe)."""
    before = time.time_ns()
    with caplog.at_level(logging.WARNING, logger="stellaops_runtime.agent.watch_record"):
        rec, source = _asked(tmp_path, (before // 10**9 + 5) * 10**9)
    gap = source.take_outage()
    assert gap is not None and gap[0] >= before - 10**9, gap  # near now, never the boot
    assert source._history is True and rec.restart_gaps == 1
    assert "ahead of the clock" not in caplog.text


def test_a_window_a_few_seconds_ahead_makes_no_gap_in_the_future(tmp_path: Path) -> None:
    """A window a few seconds ahead (within FUTURE_SKEW_NS) is taken as now, as a watch record's
    moment is (agent/watch_record_file.py): the gap ran from now to that window, a few seconds of
    "unknown" in the future (s36/r1 noticed; w2)."""
    ahead = (time.time_ns() // 10**9 + 8) * 10**9
    rec, source = _asked(tmp_path, ahead)
    gap = source.take_outage()
    after = time.time_ns()
    assert gap is None or gap[1] <= after, (gap, after, ahead)  # never past the clock
    assert source._history is True and rec.restart_gaps == 1


DAY_NS = 86_400 * 10**9


def _retained_out(
    tmp_path: Path, *, position: str | None, at_ns: int
) -> tuple[WatchRecord, TetragonExportSource]:
    """Store a node's window and export position ``at_ns`` (40 days ago), let retention (31 days)
    remove the window, then start an agent with no watch record and exportFromStart."""
    from stellaops_runtime.store.export_position import write_position

    store = open_store(f"sqlite:///{tmp_path / 'hot.db'}", migrate=True, retention_days=31)
    try:
        store.write([], [_window("node-a", at_ns - 60 * 10**9)])
        with store.db.begin() as conn:
            if position is None:
                cp = {"path_sha256": "0" * 64, "ino": 1, "dev": 1, "head_sha256": "0" * 64, "pos": 10}
                doc = {"node": "node-a", "agent_id": "node-a/1", "checkpoint": cp}
                write_position(conn, doc | {"at_ns": at_ns, "at_boot": 1, "boot_id": "b"})
            else:
                conn.execute(
                    "INSERT INTO main.export_positions (node_name, agent_id, position) VALUES (?, ?, ?)",
                    ("node-a", "node-a/1", position),
                )
        store.maintain()
        assert last_window_ns(store.db, "node-a") is None  # retention removed every window
        source = TetragonExportSource(str(tmp_path / "tetragon.log"), queue=EventQueue(10), from_start=True)
        rec = WatchRecord(
            str(tmp_path / "spool.alive"), node="node-a", agent_id="node-a/2", queue=source.queue
        )
        rec.resume(source)  # no record: the store is asked
        rec.store_opened(store)
    finally:
        store.close()
    rec.tick(source)
    return rec, source


def test_a_node_whose_windows_retention_removed_is_not_a_new_node(tmp_path: Path) -> None:
    """Retention removed every window of the node and its watch record is lost: the store's export
    position (which retention keeps) says an agent ran, so exportFromStart does not replay the file
    (every line counted twice) and the gap starts at that position's moment (RAU/AU item 4)."""
    at = (time.time_ns() // 10**9 - 40 * 86_400) * 10**9
    rec, source = _retained_out(tmp_path, position=None, at_ns=at)
    assert source._history is True  # before the fix: False, the node's "first agent"
    gap = source.take_outage()
    assert gap is not None and gap[0] == at, (gap, at)
    assert rec.restart_gaps == 1


def test_a_position_with_no_moment_still_says_an_agent_ran(tmp_path: Path, caplog) -> None:
    """A position the spooled counts of unknown lines left (``{"unknown": ...}``) names no moment:
    an agent ran, the gap starts at the node's boot."""
    at = (time.time_ns() // 10**9 - 40 * 86_400) * 10**9
    with caplog.at_level(logging.WARNING, logger="stellaops_runtime.agent.watch_record"):
        rec, source = _retained_out(tmp_path, position='{"unknown": "x"}', at_ns=at)
    assert source._history is True
    gap = source.take_outage()
    wall, boot = now_pair()
    assert gap is not None and abs(gap[0] - (wall - boot)) < 10 * 10**9, gap
    assert "with no moment" in caplog.text and rec.restart_gaps == 1


def test_a_proof_of_life_that_retention_keeps_says_an_agent_ran(tmp_path: Path) -> None:
    """No window and no export position, but the node's ``node_liveness`` row (migration 0015):
    the gap starts at the moment it claimed, on the node's clock."""
    from stellaops_runtime.agent.node_history import survivor_ns
    from stellaops_runtime.store.node_liveness import Liveness, write_liveness

    at = (time.time_ns() // 10**9 - 40 * 86_400) * 10**9
    store = open_store(f"sqlite:///{tmp_path / 'hot.db'}", migrate=True)
    try:
        assert survivor_ns(store.db, "node-a") is None
        write_liveness(store.db, Liveness("node-a", "node-a/1", 5.0, at - 5 * 10**9, 1.0, at, 10.0, 60))
        assert survivor_ns(store.db, "node-a") == at
        assert survivor_ns(store.db, "node-b") is None
    finally:
        store.close()
