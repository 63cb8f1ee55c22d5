"""agent/node_history.py: the node's latest observation window, read over the agent's DB-API
connection (SQLite here; PostgreSQL in tests/e2e/test_export_record_lost.py), and in spooled rows.

A lost watch record makes the next agent ask the store whether an agent ran on the node
before (s34/h4); a wrong answer either replays an export file already counted or drops a gap.
"""

from __future__ import annotations

from pathlib import Path

from stellaops_runtime.agent.node_history import last_window_ns, spooled_window_ns
from stellaops_runtime.contracts.hotsymbols import ObservationWindow
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
