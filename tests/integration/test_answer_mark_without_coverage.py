"""The unwatched-container mark takes the day out even when it reaches the store on a row of its own.

The mark (``evidenced_level`` 0, hotsymbols/day_calls.py) comes on a restate row (no events, no
posture) when the day's first call is seen after the container's first window was written. Should
that window's own row be gone (dropped by the outage bound, which leaves no gap for a row without
the mark), the restate row is the window's only row, and it is no coverage row (is_coverage: no
events, no posture). The day rule read only coverage rows, so the mark was not counted and the day
stayed watched (seen failing: watched_days 1, 'not_observed'). A mark counts on any row of the image.
The day without the mark has a record of n1 the next day (tests/node_alive.py): its agent ran on, so
the rest of the day is watched, not open (store/coverage_open.py).
"""

from __future__ import annotations

import dataclasses

import pytest

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from tests.integration.test_answer_unwatched_container_day import (
    DAY,
    SECOND,
    TRACED,
    agent_rows,
    at,
    calls_all_day,
    observed,
    run_of,
    watched_days,
)
from tests.node_alive import alive_after


def test_a_mark_on_a_restate_row_alone_takes_the_day_out(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = [run_of(TRACED, at(9)), run_of(SECOND, at(12), at(12, 10))]
    deltas, windows = agent_rows(calls_all_day(), runs, at(9, 59), at(13, 50))
    [mark] = [o for o in windows if o.evidenced is Posture.NONE]
    key = (mark.image_digest, mark.node_name, mark.window_start_ns)
    kept = [o for o in windows if (o.image_digest, o.node_name, o.window_start_ns) != key]
    restate = ObservationWindow(*key, 0, None, 60, "", evidenced=Posture.NONE)  # the window's only row
    with open_store(url) as s:
        s.write(deltas, [*kept, restate])
    assert watched_days(url, capsys) == 0
    code, doc = observed(url, capsys, *DAY)
    assert (code, doc["answer"]) == (3, "unknown"), doc["reason"]
    assert [(u["node"], u["day"]) for u in doc["unseen"]] == [("n1", "2026-06-01")], doc["unseen"]


def test_without_the_mark_the_day_stays_watched(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    deltas, windows = agent_rows(calls_all_day(), [run_of(TRACED, at(9))], at(9, 59), at(13, 50))
    restate = dataclasses.replace(windows[0], event_count=0, posture=None, evidenced=Posture.EBPF_DEEP)
    with open_store(url) as s:
        s.write(deltas, [*windows, dataclasses.replace(restate, window_start_ns=at(13, 55))])
        s.write([], alive_after("n1", at(0, day=2)))  # n1's agent ran on: June 1 is not left open
    assert watched_days(url, capsys) == 1
    code, doc = observed(url, capsys, *DAY)
    assert (code, doc["answer"], doc["unseen"]) == (1, "not_observed", []), doc["reason"]
