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
