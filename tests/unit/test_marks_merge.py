"""Rows of one window merged before the store sees them keep the store's rule for the mark.

The store keeps the unwatched-container mark (``evidenced`` None, rank 0) against a row with events
or a posture, and only a restate row (no events, no posture) writes it away (store/marks.py). The
outage buffer (store/pending_buffer.py) merged every row of a window into one, so the marking
agent's restate row written after a row of the window with events became a row with events, and
the store kept the mark after the agent had seen the container's calls (seen failing before: one
row). Now the buffer and a batch (store/upsert.py) keep a window's restate row apart, written after
its row, with the latest value of the rows that came after it; PostgreSQL writes it in a second
pass (one ON CONFLICT statement may touch a row once).
"""

from __future__ import annotations

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store import pending_buffer
from stellaops_runtime.store.pg_write import obs_passes
from stellaops_runtime.store.upsert import merge_observations

IMG = "sha256:" + "f7" * 32
MARK, DEEP, PASSIVE = Posture.NONE, Posture.EBPF_DEEP, Posture.PASSIVE


def row(events: int, evidenced: Posture | None, win: int = 0) -> ObservationWindow:
    return ObservationWindow(IMG, "n1", win, events, DEEP, 60, "tetragon", evidenced=evidenced)


def restate(evidenced: Posture, win: int = 0) -> ObservationWindow:
    return ObservationWindow(IMG, "n1", win, 0, None, 60, "", evidenced=evidenced)


def said(rows: list) -> list[tuple[int, Posture | None, Posture | None]]:
    return [(o.event_count, o.posture, o.evidenced) for o in rows]


def buffered(*rows: ObservationWindow) -> list:
    buf: pending_buffer.Buffer = {}
    for o in rows:
        pending_buffer.add_observation(buf, o)
    return [u for batch in pending_buffer.freeze(buf, 100) for u in batch]


def test_the_outage_buffer_keeps_the_restate_row_after_the_window_s_row() -> None:
    got = buffered(row(2, MARK), row(3, DEEP), restate(DEEP))
    assert said(got) == [(5, DEEP, MARK), (0, None, DEEP)]


def test_a_row_after_a_restate_row_gives_it_its_value_but_a_mark_stays_a_mark() -> None:
    assert said(buffered(restate(DEEP), row(3, PASSIVE))) == [(3, DEEP, PASSIVE), (0, None, PASSIVE)]
    assert said(buffered(restate(MARK), row(3, DEEP))) == [(3, DEEP, DEEP), (0, None, MARK)]
    assert said(buffered(restate(DEEP), row(3, MARK), row(1, DEEP))) == [(4, DEEP, MARK), (0, None, MARK)]


def test_a_batch_merges_the_same_way_and_postgres_writes_restates_in_a_second_pass() -> None:
    rows = merge_observations([row(2, MARK), restate(DEEP), row(1, DEEP, win=60), row(3, DEEP)])
    assert said(rows) == [(5, DEEP, MARK), (1, DEEP, DEEP), (0, None, DEEP)]
    assert [len(p) for p in obs_passes(rows)] == [2, 1]
    assert obs_passes([restate(DEEP)]) == [[restate(DEEP)]]  # alone: one pass


def test_a_restate_row_dropped_by_the_outage_bound_leaves_the_mark_or_a_gap() -> None:
    buf: pending_buffer.Buffer = {}
    pending_buffer.add_observation(buf, restate(DEEP))
    dropped = pending_buffer.pop_droppable(buf, 0)
    assert dropped == restate(DEEP) and buf == {}
    assert pending_buffer.dropped_gap(dropped, 60) is None  # a clear lost: the stored mark stays
    gap = pending_buffer.dropped_gap(restate(MARK), 60)  # a mark lost: a gap over its window
    assert gap is not None and gap.has_gap
