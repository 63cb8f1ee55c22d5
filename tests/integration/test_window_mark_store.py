"""The unwatched-container mark survives another agent's row of its window, on SQLite and PostgreSQL.

A window marked ``evidenced`` None (rank 0: hotsymbols/day_calls.py) by one agent was written
again by another (an agent restarted inside the window, or two agents at once on the node in a
surge rollout) with the value that agent knew, and the store kept the latest value: the mark was
gone and the node's day read watched ("not observed", seen failing before: evidenced_level 3).
Now a stored mark is kept against any row with events or a posture, and only a restate row (no
events, no posture, carrying ``evidenced``: the marking agent's "calls seen later that day",
hotsymbols/window_units.py ``restated``) writes it away. Rows of one batch are merged by the same
rule (store/marks.py), and a restate row in a batch is written after the window's other rows,
carrying the latest value the batch holds for the window.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns, observation_windows
from stellaops_runtime.store.writer import HotSymbolStore

T0 = datetime_to_ns(dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC))
IMG = "sha256:" + "f7" * 32
MARK, DEEP, ACTIVE, PASSIVE = Posture.NONE, Posture.EBPF_DEEP, Posture.ACTIVE_TRACING, Posture.PASSIVE


def row(events: int, posture: Posture | None, evidenced: Posture | None) -> ObservationWindow:
    return ObservationWindow(IMG, "n1", T0, events, posture, 60, "tetragon", evidenced=evidenced)


def restate(evidenced: Posture) -> ObservationWindow:
    return ObservationWindow(IMG, "n1", T0, 0, None, 60, "", evidenced=evidenced)


@pytest.fixture
def store(url: str) -> Iterator[HotSymbolStore]:
    s = open_store(url)
    yield s
    s.close()


def stored(store: HotSymbolStore) -> tuple[int, int | None]:
    o = observation_windows.c
    with store.engine.connect() as conn:
        r = conn.execute(sa.select(o.event_count, o.evidenced_level).where(o.image_digest == IMG)).one()
    return int(r.event_count), r.evidenced_level


def test_a_mark_is_kept_against_another_agent_s_row_and_cleared_by_a_restate(store: HotSymbolStore) -> None:
    store.write([], [row(5, DEEP, MARK)])  # the agent before the restart marked the window
    store.write([], [row(3, DEEP, DEEP)])  # the new agent writes it again with what it knew
    assert stored(store) == (8, 0)
    store.write([], [row(0, PASSIVE, None)])  # a lifecycle row, a gap row: no say
    assert stored(store) == (8, 0)
    store.write([], [restate(ACTIVE)])  # the marking agent saw its calls later that day
    assert stored(store) == (8, ACTIVE.rank)
    store.write([], [row(1, DEEP, DEEP)])  # unmarked: the latest value, as before
    assert stored(store) == (9, DEEP.rank)


def test_a_marked_lifecycle_row_keeps_its_mark_against_events(store: HotSymbolStore) -> None:
    store.write([], [row(0, PASSIVE, MARK)])
    store.write([], [row(2, DEEP, PASSIVE)])
    assert stored(store) == (2, 0)


def test_two_agents_at_once_in_one_batch_keep_the_mark(store: HotSymbolStore) -> None:
    store.write([], [row(2, DEEP, MARK), row(4, DEEP, DEEP)])  # surge: both agents' rows, one batch
    assert stored(store) == (6, 0)
    store.write([], [row(1, DEEP, DEEP), row(4, DEEP, MARK)])
    assert stored(store) == (11, 0)


def test_the_marking_agent_s_clear_in_the_batch_that_writes_the_window_again(store: HotSymbolStore) -> None:
    store.write([], [row(2, ACTIVE, MARK)])  # flush 1: the silent container's first window
    # flush 2: its calls in the same window; the drain writes the window and the restate row
    store.write([], [row(3, DEEP, DEEP), restate(DEEP)])
    assert stored(store) == (5, DEEP.rank)


def test_a_restate_then_a_later_row_in_one_batch_ends_at_the_latest_value(store: HotSymbolStore) -> None:
    store.write([], [row(2, ACTIVE, MARK)])
    store.write([], [restate(DEEP), row(3, DEEP, PASSIVE)])  # a silent container known after the clear
    assert stored(store) == (5, PASSIVE.rank)
    store.write([], [restate(MARK), row(1, DEEP, DEEP)])  # marked again (the day's first call)
    assert stored(store) == (6, 0)
