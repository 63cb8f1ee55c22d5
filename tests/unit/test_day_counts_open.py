"""The store's own count of watched days without calls leaves out a node's open last day.

store/day_counts.py ``observed_days_without_calls`` (the store's plain answer, held by test_store.py,
test_store_retention.py and the migration tests) has its own watched-day SQL. Before, it counted the
day of a node's latest record as watched while the evidence (store/coverage_open.py ``open_days``,
wired in evidence/store_facts.py) took it out: an agent killed on day D+1 at 10:00 left D+1 a
"watched day without calls" in the store's count. Seen failing before the fix (2 instead of 1).
A later record of the node (another image's window the next day) closes the day. SQLite at head.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store import day_counts
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from tests.node_alive import alive_after

IMG = "sha256:" + "a" * 64
D = dt.date(2026, 3, 10)


def at(day: dt.date, hours: float) -> int:
    return datetime_to_ns(dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(hours=hours))


def win(day: dt.date) -> ObservationWindow:
    return ObservationWindow(IMG, "a", at(day, 10), 5, Posture.EBPF_DEEP, 60, "tetragon")


def test_a_node_s_last_day_is_no_watched_day_without_calls_until_a_newer_record(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    url = sqlite_at_head(tmp_path / "hot.db")
    later = D + dt.timedelta(days=5)
    with open_store(url) as s:  # watched at EbpfDeep on D and D+1 on node a, then a's agent is killed
        s.write([], [win(D), win(D + dt.timedelta(days=1))])
    with open_store(url) as s, s.engine.connect() as conn:
        assert day_counts.observed_days_without_calls(conn, image=IMG, function="f", today=later) == 1
        # asked as of D: a's record of D+1 shows its agent ran on through D, which stays watched
        assert day_counts.observed_days_without_calls(conn, image=IMG, function="f", today=D) == 1
    with open_store(url) as s:  # a's agent lived on: a record of it the day after
        s.write([], alive_after("a", at(D + dt.timedelta(days=2), 0)))
    with open_store(url) as s, s.engine.connect() as conn:
        assert day_counts.observed_days_without_calls(conn, image=IMG, function="f", today=later) == 2
