"""A row carrying the unwatched-container mark (``evidenced`` None) dropped by the outage bound.

The mark (hotsymbols/day_calls.py) is the only thing that takes the node's day out of the watch
when a container of the image ran that day without a call seen while another container did: lost,
the day reads watched and "not observed" rests on a run nobody watched. So a dropped row carrying
it leaves a gap over its window (gaps are never dropped, and a day with a gap is no watched day),
from the buffer and from a frozen batch alike; a dropped row without the mark only removes
evidence of watching, as before.
"""

from __future__ import annotations

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.pending import PendingWrites

S = 1_000_000_000
W = 60 * S
IMG = "sha256:" + "a" * 64


def marked(window: int) -> ObservationWindow:
    return ObservationWindow(
        IMG, "n1", window * W, 3, Posture.EBPF_DEEP, 60, "tetragon", evidenced=Posture.NONE
    )


def plain(window: int) -> ObservationWindow:
    return ObservationWindow(
        IMG, "n1", window * W, 2, Posture.EBPF_DEEP, 60, "tetragon", evidenced=Posture.EBPF_DEEP
    )


def gaps_of(p: PendingWrites) -> dict[int, tuple[int, int]]:
    units = [u for b in p.take_all() for u in b.units if u is not None]
    return {
        u.window_start_ns // W: (u.gap_start_ns, u.gap_end_ns)
        for u in units
        if isinstance(u, ObservationWindow) and u.has_gap
    }


def test_a_marked_row_dropped_from_the_buffer_leaves_a_gap_over_its_window() -> None:
    p = PendingWrites(max_pending_rows=2, window_seconds=60)
    p.add([], [marked(0), plain(1)])
    p.add([], [plain(2)])  # over the bound: window 0's row (the mark) goes
    assert p.dropped_rows == 1
    assert gaps_of(p) == {0: (1, W)}  # the whole window (0 means "no gap": 1)


def test_a_marked_row_dropped_from_a_frozen_batch_leaves_a_gap_in_its_place() -> None:
    p = PendingWrites(max_pending_rows=2, window_seconds=60)
    p.add([], [plain(0), marked(1)])
    p._freeze_buffer()  # as a failed flush leaves it: frozen, to be retried
    p.add([], [plain(2), plain(3)])  # the batch's two rows go, oldest first
    assert p.dropped_rows == 2
    assert gaps_of(p) == {1: (W, 2 * W)}  # the unmarked row left none


def test_a_marked_lifecycle_row_dropped_leaves_a_gap() -> None:
    ran = ObservationWindow(IMG, "n1", 0, 0, Posture.PASSIVE, 60, "tetragon", evidenced=Posture.NONE)
    p = PendingWrites(max_pending_rows=1, window_seconds=60)
    p.add([], [ran])
    p.add([], [plain(1)])
    assert p.dropped_rows == 1 and gaps_of(p) == {0: (1, W)}
