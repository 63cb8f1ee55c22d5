"""A moment far ahead of this agent's clock no longer makes every day until then a blind day.

agent/history_days.py tells the day judgement the last moment an agent before this one watched
(the watch record's ``alive_ns``, the store's latest window of the node, the spool file's): every
day up to it is judged as the start day is, and a silent container's first window is marked
whether or not another container showed calls to this agent. The store keeps windows stamped in
the future (a node whose clock once ran ahead: 9877622), so one window stamped in 2099 made every
later agent of that node judge every day until 2099 blind: each idle container's day marked, and
no "not observed" about that node's images for decades (seen failing before the fix: the 2099
moment told, the day a week after the start judged UNWATCHED). A moment more than
``MAX_AHEAD_DAYS`` after this agent's start is not believed (a warning says so); a nearer one is
told as before (a clock stepped back across midnight, tests/unit/test_day_calls_clock_back.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from stellaops_runtime.agent.history_days import MAX_AHEAD_DAYS, HistoryDays, attach_history_days
from stellaops_runtime.agent.watch_record_file import FORMAT
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.hotsymbols.day_calls import DAY_NS, UNWATCHED

S = 1_000_000_000
A = "sha256:" + "a" * 64
PASSIVE = Posture.PASSIVE.rank
T2 = "2e" * 32
D = 20_000  # a UTC day number
START = D * DAY_NS + 3600 * S  # this agent's clock at its start: 01:00 of day D
Y2099 = 4_080_000_000 * S  # a window stamped in 2099 by a node clock that once ran ahead


class _Agg:
    def __init__(self) -> None:
        self.told: list[int] = []

    def blind_through(self, ns: int) -> None:
        self.told.append(ns)


def test_a_moment_decades_ahead_is_not_told_a_near_one_is(caplog: pytest.LogCaptureFixture) -> None:
    agg = _Agg()
    h = HistoryDays(agg, node="n1", now_ns=START)
    h.stored(Y2099)
    assert agg.told == []
    assert "not believed" in caplog.text
    h.tell(START + 2 * DAY_NS)  # a clock stepped back two days: those days are the agent before's
    h.tell(START + MAX_AHEAD_DAYS * DAY_NS)  # the bound itself is believed
    assert agg.told == [START + 2 * DAY_NS, START + MAX_AHEAD_DAYS * DAY_NS]
    h.tell(START + (MAX_AHEAD_DAYS + 1) * DAY_NS)
    assert agg.told[-1] == START + MAX_AHEAD_DAYS * DAY_NS


def test_the_agent_s_days_after_a_store_window_stamped_in_2099_are_its_own(tmp_path: Path) -> None:
    """attach_history_days as agent/runner.py calls it: a real Pipeline, its start read from the
    clock as the agent's is; the store's latest window of the node is in 2099, the record too."""
    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.contracts.config import parse_config

    spool = tmp_path / "spool"
    config = parse_config({"store": {"spoolPath": str(spool)}, "symbols": {"procRoot": str(tmp_path)}})
    pipe = Pipeline(config, node_name="n1", fast_path=False)
    Path(str(spool) + ".alive").write_text(
        json.dumps({"format": FORMAT, "node": "n1", "agent_id": "a", "alive_ns": Y2099, "boot_id": "x"})
    )
    flusher = SimpleNamespace(on_open=None, spool=SimpleNamespace(window_ns=None))
    agent = SimpleNamespace(pipeline=pipe, node_name="n1", config=config, flusher=flusher)
    h = attach_history_days(agent)
    agent.flusher.on_open(SimpleNamespace(db=SimpleNamespace(dialect="sqlite", connect=_window_in_2099)))
    assert h.told is None
    days = pipe.aggregator._windows.units.days
    week_on = (h.now_ns // DAY_NS + 7) * DAY_NS + 600 * S  # a week after the start, this agent's own day
    assert days.judge(A, "n1", week_on, PASSIVE, [T2]) == PASSIVE  # no caller seen: no mark
    assert days.judge(A, "n1", h.now_ns, PASSIVE, [T2]) == UNWATCHED  # the start day stays blind


class _Conn:
    def __enter__(self) -> _Conn:
        return self

    def __exit__(self, *a: object) -> None:
        return None

    def execute(self, sql: str, args: tuple[str]) -> Any:
        return SimpleNamespace(scalar=lambda: "2099-04-15 12:00:00.000000")  # SQLite's text


def _window_in_2099() -> _Conn:
    return _Conn()


def test_a_store_window_stamped_in_2099_does_not_hide_the_spool_file_s_moment(tmp_path: Path) -> None:
    """The store's latest window of the node is in 2099 (not believed), the spool file's is a day
    after this agent's start (the clock stepped back across midnight since the agent before, no
    usable record): that day is the agent before's and is judged blind. Before, the two were
    reduced to their maximum first, and the 2099 one, refused, took the spool's moment with it."""
    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.contracts.config import parse_config

    spool = tmp_path / "spool"
    config = parse_config({"store": {"spoolPath": str(spool)}, "symbols": {"procRoot": str(tmp_path)}})
    pipe = Pipeline(config, node_name="n1", fast_path=False)
    flusher = SimpleNamespace(on_open=None, spool=SimpleNamespace(window_ns=None))
    agent = SimpleNamespace(pipeline=pipe, node_name="n1", config=config, flusher=flusher)
    h = attach_history_days(agent)
    spooled = (h.now_ns // DAY_NS + 1) * DAY_NS + 30 * S  # 00:00:30 of the day after the start
    flusher.spool.window_ns = spooled
    agent.flusher.on_open(SimpleNamespace(db=SimpleNamespace(dialect="sqlite", connect=_window_in_2099)))
    assert h.told == spooled


def test_a_store_window_stamped_in_2099_does_not_hide_the_store_s_own_latest_window(tmp_path: Path) -> None:
    """The store holds the node's window of 2099 (a clock that once ran ahead) and one of the day
    after this agent's start (the agent before watched into it; the clock stepped back across
    midnight since, no usable record): the latest believable window is told. Before, only the
    node's latest window was read, refused as far ahead, and the day was judged on this agent's
    calls alone."""
    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.contracts.config import parse_config
    from stellaops_runtime.contracts.hotsymbols import ObservationWindow
    from stellaops_runtime.store.engine import open_store

    spool = tmp_path / "spool"
    config = parse_config({"store": {"spoolPath": str(spool)}, "symbols": {"procRoot": str(tmp_path)}})
    pipe = Pipeline(config, node_name="n1", fast_path=False)
    flusher = SimpleNamespace(on_open=None, spool=SimpleNamespace(window_ns=None))
    agent = SimpleNamespace(pipeline=pipe, node_name="n1", config=config, flusher=flusher)
    h = attach_history_days(agent)
    next_day = (h.now_ns // DAY_NS + 1) * DAY_NS  # 00:00 of the day after the start, a window start
    store = open_store(f"sqlite:///{tmp_path / 'hot.db'}", migrate=True)
    try:
        store.write([], [ObservationWindow(A, "n1", w, 1) for w in (next_day, Y2099 - Y2099 % (60 * S))])
        agent.flusher.on_open(store)
    finally:
        store.close()
    assert h.told == next_day
