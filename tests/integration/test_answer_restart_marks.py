"""An agent restarted within a day still marks a container nobody saw calling that day.

On node n1 on 2026-06-01 a traced container of image A makes calls seen on user stacks from
10:00; the agent restarts at 12:00 and from then on the traced container sends no call (idle,
or its policy gone). A second container of A starts at 12:10 and runs silent (no policy traces
it) to 12:30. The agent before the restart saw the caller; the new agent saw none, so it did not
mark the silent container's first window and the store counted the day watched: ``query
observed`` said "not observed" (exit 1) about a function only the second container called
(seen failing before the fix: watched_days 1, not_observed). Now an agent judges the day it
started without the calls the agent before it saw (hotsymbols/day_calls.py ``started_ns``): a
container it did not see calling that day is marked, and the answer is unknown naming n1.

A restart inside the window the agent before it marked (the second container from 11:51:05 to
11:51:50, the restart at 11:51:30, the traced container's event without a stack at 11:51:40): the
new agent wrote that window again with its event, unmarked, and the store kept that latest
value, so the day read watched too (seen failing before); now the new agent marks it itself.

What stays watched: a day after the start the new agent saw whole; a container that showed its
calls to the new agent.

A mark the agent before wrote for a container the new agent never knew (it ran silent and exited
before the restart): the new agent, replaying the export file from before the window, marked
that window itself (blind on its start day: a container it had not seen calling) and, once that
container called, restated the window; the store let that restate clear the other agent's mark,
so the day read watched and "not observed" was said (seen failing before the fix: watched_days
1). Now each agent's marks and restates carry its ``agent_id`` (store/marks.py ``stamped``, as the
agent's pipeline drains them) and a restate clears only its own agent's mark.

Rows are the real aggregator's (as the agent's pipeline drains them, with the lifecycle's run
windows), one aggregator per agent, written through the real store (SQLite and PostgreSQL); the
CLI in-process, once as a subprocess.
"""

from __future__ import annotations

from typing import Any

import pytest

from stellaops_runtime.hotsymbols.aggregate import HotSymbolAggregator
from stellaops_runtime.hotsymbols.run_windows import Run, RunWindows
from stellaops_runtime.store import marks
from stellaops_runtime.store.engine import open_store
from tests.cli_run import cli_json
from tests.integration.test_answer_unwatched_container_day import (
    DAY,
    SECOND,
    TRACED,
    A,
    S,
    at,
    event,
    observed,
    run_of,
    watched_days,
)
from tests.node_alive import alive_after


def agent_rows(
    events: list[Any], runs: list[Run], start: int, end: int, started_ns: int | None, agent_id: str = ""
) -> tuple[list, list]:
    """One agent's rows from ``start`` to ``end`` (its registry sampled every 20 s, drained every 10
    samples), as test_answer_unwatched_container_day.agent_rows, the agent started at ``started_ns``;
    its marks and restate rows name ``agent_id`` (as agent/pipeline.py drains them)."""
    a = HotSymbolAggregator(window_seconds=60, min_confidence=0.0, started_ns=started_ns)
    a.runs = RunWindows(window_seconds=60, node_name="n1", settle_ns=0)
    pending = sorted((e for e in events if start <= e.timestamp_ns <= end), key=lambda e: e.timestamp_ns)
    deltas: list = []
    windows: list = []
    t, n = start, 0
    while t <= end:
        while pending and pending[0].timestamp_ns <= t:
            a.observe(pending.pop(0))
        now = [r if r.running or r.stopped_ns <= t else Run(r.image, r.started_ns, 0, True, r.container_id)
               for r in runs if r.started_ns <= t]  # fmt: skip
        a.runs.tick(t, True, now, True)
        n += 1
        if n % 10 == 0:
            d, w = a.drain()
            deltas += d
            windows += marks.stamped(w, agent_id)
        t += 20 * S
    a.runs.final = True
    d, w = a.drain()
    return deltas + d, windows + marks.stamped(w, agent_id)


def two_agents(
    url: str,
    events: list[Any],
    runs: list[Run],
    restart: int,
    *,
    until: int = 0,
    runs2: list[Run] | None = None,
) -> None:
    """The agent before the restart (running since the day before, to ``until`` when both ran at
    once) and the one after it (knowing ``runs2`` when its registry saw other runs), each writing
    its rows; the one after it ran on: a record of n1 the next day (tests/node_alive.py), so the rest
    of June 1 is watched, not open (store/coverage_open.py)."""
    with open_store(url) as s:
        s.write(*agent_rows(events, runs, at(9, 59), until or restart - S, at(0) - 3600 * S, "n1/before"))
        s.write(
            *agent_rows(events, runs if runs2 is None else runs2, restart, at(13, 50), restart, "n1/after")
        )
        s.write([], alive_after("n1", at(0, day=2)))


def before_restart_calls(day: int = 1) -> list[Any]:
    """The traced container's calls at 10:00:05 and every 20 minutes to 11:40:05."""
    return [event(at(10, 0, 5, day=day) + k * 1200 * S, TRACED) for k in range(6)]


UNWATCHED = {
    # the second container starts after the restart: only the new agent ran beside it
    "silent container after the restart": (at(12), [run_of(SECOND, at(12, 10), at(12, 30))], []),
    # the agent before it marked 11:51; the new agent, started at 11:51:30, writes 11:51 again
    "restart inside the window the agent before it marked": (
        at(11, 51, 30),
        [run_of(SECOND, at(11, 51, 5), at(11, 51, 50))],
        [event(at(11, 51, 40), TRACED, stack=False)],
    ),
}


@pytest.mark.parametrize("case", UNWATCHED)
def test_a_silent_container_after_a_restart_takes_the_day_out(
    url: str, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    restart, second, after = UNWATCHED[case]
    two_agents(url, [*before_restart_calls(), *after], [run_of(TRACED, at(9)), *second], restart)
    assert watched_days(url, capsys) == 0
    code, doc = observed(url, capsys, *DAY)
    assert (code, doc["answer"]) == (3, "unknown"), doc["reason"]
    [unseen] = doc["unseen"]
    assert (unseen["node"], unseen["day"]) == ("n1", "2026-06-01"), unseen
    assert "on node n1 on 2026-06-01 in a container that showed no call all that day" in doc["reason"]
    code, doc = cli_json(
        "query", "observed", "--store", url, "--image", A, "--function", "inflate", "--json", *DAY
    )
    assert (code, doc["answer"]) == (3, "unknown"), doc["reason"]  # the real CLI as a subprocess


def test_two_agents_at_once_keep_the_mark_the_one_that_saw_the_silent_container_wrote(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A surge rollout: the old agent runs to 12:10, the new one from 12:00; the second container
    runs 12:02:05 to 12:03:50 and only the old agent's registry lists it. Both see the traced
    container's call at 12:02:30; the new agent writes the 12:02 window after the old one marked it,
    with its own value (EbpfDeep), and the store kept that (seen failing before: watched_days 1)."""
    events = [*before_restart_calls(), event(at(12, 2, 30), TRACED)]
    traced = run_of(TRACED, at(9))
    runs = [traced, run_of(SECOND, at(12, 2, 5), at(12, 3, 50))]
    two_agents(url, events, runs, at(12), until=at(12, 10), runs2=[traced])
    assert watched_days(url, capsys) == 0
    code, doc = observed(url, capsys, *DAY)
    assert (code, doc["answer"]) == (3, "unknown"), doc["reason"]
    assert "on node n1 on 2026-06-01 in a container that showed no call all that day" in doc["reason"]


def test_a_container_that_calls_to_the_new_agent_keeps_the_day(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    events = [*before_restart_calls(), event(at(12, 20, 5), SECOND), event(at(12, 40, 5), TRACED)]
    two_agents(url, events, [run_of(TRACED, at(9)), run_of(SECOND, at(12, 10))], at(12))
    assert watched_days(url, capsys) == 1
    code, doc = observed(url, capsys, *DAY)
    assert (code, doc["answer"], doc["unseen"]) == (1, "not_observed", []), doc["reason"]


def test_the_new_agent_s_restate_keeps_the_mark_the_agent_before_wrote(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The agent before saw the traced container call at 09:59:30 and marked 10:00, the first window
    of the second container (10:00:10 to 10:04, silent). Restarted at 10:06, the new agent replayed
    the export file from 10:00 and knew the traced container only (the second had exited): its event
    without a stack at 10:00:30, its calls from 11:00. Blind on its start day, it marked 10:00 for the
    traced container and restated it once that one called; the mark stays (several agents)."""
    events = [event(at(9, 59, 30), TRACED), event(at(10, 0, 30), TRACED, stack=False)]
    events += [event(at(11, 0, 5) + k * 1200 * S, TRACED) for k in range(4)]
    traced = run_of(TRACED, at(9))
    with open_store(url) as s:
        runs = [traced, run_of(SECOND, at(10, 0, 10), at(10, 4))]
        s.write(*agent_rows(events, runs, at(9, 59), at(10, 5, 59), at(0) - 3600 * S, "n1/before"))
        s.write(*agent_rows(events, [traced], at(10), at(13, 50), at(10, 6), "n1/after"))
    assert watched_days(url, capsys) == 0
    code, doc = observed(url, capsys, *DAY)
    assert (code, doc["answer"]) == (3, "unknown"), doc["reason"]
    assert "on node n1 on 2026-06-01 in a container that showed no call all that day" in doc["reason"]
