"""hotsymbols/gaps.py ``drain``: a gap in the drain never merges an image's window row with its restate row.

The aggregator's drain may carry two rows of one window: the row with its events, and a restate
row (no events, no posture, only ``evidenced``: hotsymbols/window_counts.py) saying its
unwatched-container mark went. The store keeps a mark against a row with events and lets only a
restate row clear it (store/marks.py). Merging the two into one row with events left an earlier
drain's mark in the store for good: the window read "a run no call could be seen in", and the
image's "not observed" became unknown. It happened whenever the drain also carried a gap (an
outage, a throttle, the hold before an agent's first stream), seen as a flaky
tests/e2e/test_query_answers.py on PostgreSQL.
"""

from __future__ import annotations

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.hotsymbols.gaps import GapTracker
from stellaops_runtime.store.marks import is_restate

W = 60 * 10**9
IMAGE = "sha256:" + "a" * 64


def _rows(gap: bool, *, own_gap: bool = False) -> list[ObservationWindow]:
    w0 = 1_000 * W
    row = ObservationWindow(IMAGE, "n1", w0, 5, Posture.EBPF_DEEP, 60, "tetragon", evidenced=Posture.NONE)
    restate = ObservationWindow(IMAGE, "n1", w0, 0, None, 60, "", evidenced=Posture.EBPF_DEEP)
    g = GapTracker(window_seconds=60, source="tetragon")
    if gap:
        g.source_gap("n1", w0 + 100 * W, w0 + 101 * W)  # a node-wide gap in another window
    if own_gap:
        g.native_drop("n1", w0 + W // 2, w0 + W // 2 + 1, 3)  # node-wide, the same window start
    return g.drain([row, restate])


def test_a_gap_elsewhere_in_the_drain_keeps_the_restate_row_apart() -> None:
    without, with_gap = _rows(False), _rows(True)
    image_rows = [(o.event_count, o.posture, o.evidenced) for o in with_gap if o.image_digest == IMAGE]
    assert image_rows == [(o.event_count, o.posture, o.evidenced) for o in without]
    assert any(o.image_digest == "" and o.has_gap for o in with_gap)


def test_a_gap_of_the_same_window_joins_the_row_with_events_only() -> None:
    rows = _rows(False, own_gap=True)
    mine = [o for o in rows if o.image_digest == IMAGE]
    assert [(o.event_count, o.evidenced) for o in mine] == [(5, Posture.NONE), (0, Posture.EBPF_DEEP)]
    assert not any(o.has_gap for o in mine)  # the node-wide gap is its own row (image "")
    assert any(o.image_digest == "" and o.has_gap and o.dropped_events == 3 for o in rows)


def test_an_image_gap_of_a_window_with_only_a_restate_row_in_the_drain_keeps_it_a_restate_row() -> None:
    """The drain restates a window it wrote earlier (calls later that day cleared its mark) and holds
    no event of it, while an opted-out pod of the image ran there (an image gap of the same key): the
    gap is a row of its own, the restate row stays one (merged, it carried a gap and no longer
    cleared the mark: store/marks.py ``is_restate``, a day read unwatched for good)."""
    w0 = 1_000 * W
    restate = ObservationWindow(IMAGE, "n1", w0, 0, None, 60, "", evidenced=Posture.EBPF_DEEP)
    g = GapTracker(window_seconds=60, source="tetragon")
    g.opted_out(IMAGE, "n1", w0 + W // 2)
    rows = [o for o in g.drain([restate]) if o.image_digest == IMAGE]
    assert [is_restate(o) for o in rows] == [True, False]
    assert rows[0] == restate
    assert rows[1].has_gap and rows[1].source == "opted_out" and rows[1].event_count == 0
