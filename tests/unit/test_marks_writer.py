"""A mark names the agent that wrote it, from the drain through the outage buffer and the spool.

The store lets a restate row clear only a mark its own agent wrote (store/marks.py; the store's
side: tests/integration/test_window_mark_writer.py). Here the pure parts: which rows the agent
stamps with its ``agent_id``, how rows of one window merge before the store sees them (a batch,
the outage buffer) by the same rule, that a spooled row keeps its writer (and one spooled by an
agent before the writer was recorded reads as unknown), that a wrongly typed writer read back
from a spool is refused, and that the agent hands its ``agent_id`` to its pipeline.
"""

from __future__ import annotations

from pathlib import Path

from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store import marks, pending_buffer
from stellaops_runtime.store.batches import unit_from_json, unit_to_json
from stellaops_runtime.store.rowcheck import row_problem
from stellaops_runtime.store.upsert import merge_observations

IMG = "sha256:" + "e8" * 32
MARK, DEEP, PASSIVE = Posture.NONE, Posture.EBPF_DEEP, Posture.PASSIVE
A, B = "n1/a", "n1/b"


def row(events: int, evidenced: Posture | None, by: str = "") -> ObservationWindow:
    return ObservationWindow(IMG, "n1", 0, events, DEEP, 60, "tetragon", evidenced=evidenced, marked_by=by)


def restate(evidenced: Posture, by: str = "") -> ObservationWindow:
    return ObservationWindow(IMG, "n1", 0, 0, None, 60, "", evidenced=evidenced, marked_by=by)


def said(rows: list[ObservationWindow]) -> list[tuple[int, Posture | None, str]]:
    return [(o.event_count, o.evidenced, o.marked_by) for o in rows]


def buffered(*rows: ObservationWindow) -> list[ObservationWindow]:
    buf: pending_buffer.Buffer = {}
    for o in rows:
        pending_buffer.add_observation(buf, o)
    return [u for batch in pending_buffer.freeze(buf, 100) for u in batch if isinstance(u, ObservationWindow)]


def test_the_agent_stamps_its_marks_and_restates_only() -> None:
    rows = [row(2, MARK), row(3, DEEP), restate(PASSIVE), row(0, None)]
    assert said(marks.stamped(rows, A)) == [(2, MARK, A), (3, DEEP, ""), (0, PASSIVE, A), (0, None, "")]
    assert marks.stamped(rows, "") is rows  # no id (tools, tests): as before


def test_two_agents_marks_merge_to_several_and_another_agent_s_rows_keep_the_writer() -> None:
    assert said(merge_observations([row(2, MARK, A), row(3, MARK, B)])) == [(5, MARK, marks.SEVERAL)]
    assert said(merge_observations([row(2, MARK, A), row(3, MARK, A)])) == [(5, MARK, A)]
    assert said(merge_observations([row(2, MARK, A), row(3, DEEP, B)])) == [(5, MARK, A)]
    assert said(merge_observations([row(2, DEEP), row(3, MARK, B)])) == [(5, MARK, B)]


def test_a_restate_of_another_agent_in_one_batch_keeps_the_earlier_restate_s_mark() -> None:
    assert said(merge_observations([restate(MARK, A), restate(DEEP, B)])) == [(0, MARK, A)]
    assert said(merge_observations([restate(MARK, A), restate(MARK, B)])) == [(0, MARK, marks.SEVERAL)]
    assert said(merge_observations([restate(MARK, A), restate(DEEP, A)])) == [(0, DEEP, A)]  # its own clear
    assert said(merge_observations([restate(DEEP, A), restate(MARK, B)])) == [(0, MARK, B)]


def test_the_outage_buffer_follows_the_same_rule() -> None:
    # A's mark, then B's clear: the row keeps A's mark; the restate row is B's (the store keeps the mark)
    assert said(buffered(row(2, MARK, A), restate(DEEP, B))) == [(2, MARK, A), (0, DEEP, B)]
    assert said(buffered(restate(MARK, A), restate(DEEP, B), row(1, DEEP))) == [(1, DEEP, ""), (0, MARK, A)]
    # a restate row given a later row's mark names that row's writer
    assert said(buffered(restate(DEEP, A), row(3, MARK, B))) == [(3, MARK, B), (0, MARK, B)]


def test_a_spooled_row_keeps_its_writer_and_an_older_one_has_none() -> None:
    o = row(2, MARK, A)
    assert unit_from_json(unit_to_json(o)) == o
    older = unit_to_json(o)
    del older["marked_by"]  # spooled by an agent before the writer was recorded
    assert unit_from_json(older).marked_by == ""
    hostile = {**unit_to_json(o), "marked_by": 7}
    assert row_problem(unit_from_json(hostile)) == "marked_by is not text"


def test_the_agent_hands_its_agent_id_to_its_pipeline(tmp_path: Path) -> None:
    config = parse_config(
        {
            "tetragon": {"exportFile": str(tmp_path / "tetragon.log")},
            "symbols": {"enabled": False},
            "attribution": {"enabled": False},
            "lifecycle": {"enabled": False},
            "store": {"url": f"sqlite:///{tmp_path / 'hot.db'}", "spoolPath": str(tmp_path / "spool")},
        }
    )
    agent = Agent(config, node_name="n1")
    assert agent.agent_id.startswith("n1/") and agent.pipeline.marked_by == agent.agent_id
