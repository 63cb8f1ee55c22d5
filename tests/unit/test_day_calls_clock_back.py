"""A day the agent before it watched is judged without that agent's calls, also after the clock went back.

An agent judges the UTC day it started, and every day before it, as one that may have had a
caller only the agent before it saw (day_calls.py ``started_ns``). When the node's clock went
back across midnight between two agents (agent A last watched at 00:00:30 of day D+1, agent B
starts reading 23:59:50 of day D: a reboot, or a step larger than the watch record measures),
B's start day is D, so D+1 was judged on B's own calls: A may have seen a container of the
image calling on D+1, and a silent container B saw that day went unmarked, so D+1 read watched
though that container's calls could not be seen. The agent now also hands in the last moment an
agent before it watched (its watch record, the store's latest window of the node:
agent/history_days.py); every day up to that one is judged as the start day is.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from stellaops_runtime.agent.history_days import HistoryDays, recorded_moment
from stellaops_runtime.agent.watch_record_file import FORMAT
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.hotsymbols.day_calls import DAY_NS, UNWATCHED, DayCalls
from stellaops_runtime.hotsymbols.window_counts import WindowCounts

S = 1_000_000_000
A = "sha256:" + "a" * 64
DEEP, PASSIVE = Posture.EBPF_DEEP.rank, Posture.PASSIVE.rank
T1, T2 = "1f" * 32, "2e" * 32
D = 20_000  # a UTC day number
B_START = (D + 1) * DAY_NS - 10 * S  # agent B's clock at its start: 23:59:50 of day D
A_LAST = (D + 1) * DAY_NS + 30 * S  # agent A's last watching moment: 00:00:30 of day D+1
WIN = (D + 1) * DAY_NS + 60 * S  # a window of day D+1 B writes


def test_the_day_the_agent_before_watched_is_judged_as_the_start_day() -> None:
    d = DayCalls(started_ns=B_START)
    assert d.judge(A, "n1", WIN, PASSIVE, [T2]) == PASSIVE  # the start alone: D+1 is B's whole day
    d = DayCalls(started_ns=B_START)
    d.blind_through(A_LAST)
    assert d.judge(A, "n1", WIN, PASSIVE, [T2]) == UNWATCHED  # A may have seen a caller on D+1
    d.note(A, "n1", WIN + 600 * S, T2, DEEP)  # its own calls later that day: it was idle
    assert list(d.restated(set())) == [(A, "n1", WIN, PASSIVE)]


def test_a_moment_told_after_the_window_was_written_marks_it_on_a_restate_row() -> None:
    d = DayCalls(started_ns=B_START)
    assert d.judge(A, "n1", WIN, PASSIVE, [T2]) == PASSIVE  # written before the store answered
    d.blind_through(A_LAST)
    assert list(d.restated(set())) == [(A, "n1", WIN, UNWATCHED)]
    assert list(d.restated(set())) == []  # once
    d.blind_through(A_LAST - DAY_NS)  # an earlier moment changes nothing
    assert list(d.restated(set())) == []


def test_a_day_after_the_agent_before_is_judged_on_the_agent_s_own_calls() -> None:
    d = DayCalls(started_ns=B_START)
    d.blind_through(A_LAST)
    later = WIN + DAY_NS  # day D+2: B watched it whole
    assert d.judge(A, "n1", later, PASSIVE, [T2]) == PASSIVE


def test_the_aggregator_s_days_are_told() -> None:
    w = WindowCounts(60, started_ns=B_START)
    w.blind_through(A_LAST)
    assert w.units.days.judge(A, "n1", WIN, PASSIVE, [T2]) == UNWATCHED


class _Agg:
    def __init__(self) -> None:
        self.told: list[int] = []

    def blind_through(self, ns: int) -> None:
        self.told.append(ns)


def _record(tmp_path: Path, **doc: Any) -> str:
    path = tmp_path / "spool.alive"
    path.write_text(json.dumps({"format": FORMAT, "node": "n1", "agent_id": "a", **doc}))
    return str(path)


def test_the_watch_record_s_moment_is_read_as_written_whatever_the_clock(tmp_path: Path) -> None:
    # another boot's record, ahead of this clock: the gap starts at the boot, the day is still A's
    path = _record(tmp_path, alive_ns=A_LAST, boot_ns=5, boot_id="another-boot")
    assert recorded_moment(path, "n1") == A_LAST
    agg = _Agg()
    HistoryDays(agg, node="n1").record(path)
    assert agg.told == [A_LAST]


def test_an_unusable_record_tells_nothing(tmp_path: Path) -> None:
    for doc in ({"alive_ns": A_LAST, "node": "n2"}, {"alive_ns": "x"}, {"alive_ns": -1}, {"alive_ns": True}):
        path = _record(tmp_path, **doc)
        assert recorded_moment(path, "n1") is None, doc
    assert recorded_moment(str(tmp_path / "missing"), "n1") is None
    (tmp_path / "bad").write_bytes(b"\0" * 10)
    assert recorded_moment(str(tmp_path / "bad"), "n1") is None


def test_the_store_s_latest_window_of_the_node_is_told_once(tmp_path: Path) -> None:
    agg = _Agg()
    h = HistoryDays(agg, node="n1")
    h.stored(A_LAST)
    h.stored(A_LAST + DAY_NS)  # a later open: the store holds this agent's own windows by then
    assert agg.told == [A_LAST]
    h = HistoryDays(agg, node="n1")
    h.stored(None)  # the node's first agent
    assert agg.told == [A_LAST]


def test_the_agent_tells_its_pipeline_the_record_and_the_store_moments(tmp_path: Path) -> None:
    """attach_history_days as agent/runner.py calls it: a real Pipeline, the record on the spool's path."""
    from types import SimpleNamespace

    from stellaops_runtime.agent.history_days import attach_history_days
    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.contracts.config import parse_config

    spool = tmp_path / "spool"
    config = parse_config({"store": {"spoolPath": str(spool)}, "symbols": {"procRoot": str(tmp_path)}})
    pipe = Pipeline(config, node_name="n1", fast_path=False, started_ns=B_START)
    Path(str(spool) + ".alive").write_text(
        json.dumps({"format": FORMAT, "node": "n1", "agent_id": "a", "alive_ns": A_LAST, "boot_id": "other"})
    )
    opened: list[Any] = []
    flusher = SimpleNamespace(on_open=opened.append, spool=SimpleNamespace(window_ns=None))
    agent = SimpleNamespace(pipeline=pipe, node_name="n1", config=config, flusher=flusher)
    h = attach_history_days(agent)
    assert h.told == A_LAST
    days = pipe.aggregator._windows.units.days
    assert days.judge(A, "n1", WIN, PASSIVE, [T2]) == UNWATCHED
    flusher.spool.window_ns = A_LAST + DAY_NS  # the spool file's rows reach a day later still
    store = SimpleNamespace(db=SimpleNamespace(dialect="sqlite", connect=_no_windows))
    agent.flusher.on_open(store)
    assert (opened, h.told) == ([store], A_LAST + DAY_NS)


class _Conn:
    def __enter__(self) -> _Conn:
        return self

    def __exit__(self, *a: object) -> None:
        return None

    def execute(self, sql: str, args: tuple[str]) -> Any:
        return SimpleNamespace(scalar=lambda: None)


def _no_windows() -> _Conn:
    return _Conn()
