"""Images that ran while the event source was away get a gap (hotsymbols/run_windows.py).

The lifecycle registry still knows, while Tetragon is away, which containers ran on the node.
Each of their images gets a gap (source ``none``) over the part of each window between the last
watched sample and the sample that found the source back, so a question about the image meets
the time it ran here unwatched, even when it sent no event here that day and another node
watched it all along (before, nothing was recorded for it: "not observed" rested on the other
node alone). What is not known is not marked: the agent's first sample (the time before the
agent is the watch record's), a runtime that is away too, a container that had stopped before.
"""

from __future__ import annotations

from stellaops_runtime.contracts.hotsymbols import NODE_WIDE, ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.hotsymbols.run_windows import MAX_WINDOWS, UNWATCHED_SOURCE, Run, RunWindows

S = 1_000_000_000
WS = 10
W = WS * S
T0 = 1_900_000_000 * S - (1_900_000_000 * S) % W  # a window boundary
A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def gaps(out: list[ObservationWindow]) -> dict[tuple[str, int], tuple[int, int, str]]:
    return {
        (o.image_digest, o.window_start_ns): (o.gap_start_ns, o.gap_end_ns, o.source)
        for o in out
        if o.has_gap
    }


def test_an_image_running_while_the_source_is_away_gets_a_gap_over_that_time() -> None:
    r = RunWindows(window_seconds=WS, node_name="n1")
    runs = [Run(A, T0 - 100 * S, 0, True), Run(B, T0 - 100 * S, T0 + 12 * S, False)]
    for t in range(T0, T0 + 5 * S + 1, S):
        r.tick(t, True, runs, True)  # watched
    # The source goes away after T0+5s; samples at T0+6s .. T0+25s find it away; back at T0+26s.
    for t in range(T0 + 6 * S, T0 + 25 * S + 1, S):
        r.tick(t, False, runs, True)
    r.tick(T0 + 26 * S, True, runs, True)
    out = r.drain([], "tetragon")
    assert gaps(out) == {
        (A, T0): (T0 + 5 * S, T0 + W, UNWATCHED_SOURCE),  # from the last watched sample
        (A, T0 + W): (T0 + W, T0 + 2 * W, UNWATCHED_SOURCE),
        (A, T0 + 2 * W): (T0 + 2 * W, T0 + 25 * S, UNWATCHED_SOURCE),  # to the last sample away
        (B, T0): (T0 + 5 * S, T0 + W, UNWATCHED_SOURCE),
        (B, T0 + W): (T0 + W, T0 + 12 * S, UNWATCHED_SOURCE),  # B stopped at T0+12s
    }
    assert all(o.event_count == 0 and o.posture is None for o in out)
    assert r.stats.unwatched == 5
    assert gaps(r.drain([], "tetragon")) == {}  # emitted once


def test_a_gap_merges_into_the_images_own_window_of_events() -> None:
    r = RunWindows(window_seconds=WS, node_name="n1")
    runs = [Run(A, T0 - 100 * S, 0, True)]
    r.tick(T0 + S, True, runs, True)
    r.tick(T0 + 3 * S, False, runs, True)
    own = ObservationWindow(A, "n1", T0, 7, Posture.ACTIVE_TRACING, WS, "tetragon")
    (row,) = r.drain([own], "tetragon")
    assert (row.event_count, row.posture, row.gap_start_ns, row.gap_end_ns) == (
        7, Posture.ACTIVE_TRACING, T0 + S, T0 + 3 * S,
    )  # fmt: skip
    assert row.source == "none,tetragon"


def test_what_is_not_known_is_not_marked() -> None:
    r = RunWindows(window_seconds=WS, node_name="n1")
    runs = [Run(A, T0 - 100 * S, 0, True), Run(B, T0 - 100 * S, T0 - 50 * S, False)]
    r.tick(T0 + S, False, runs, True)  # the agent's first sample: no span before it
    r.tick(T0 + 2 * S, False, [], False)  # the runtime is away too: nothing known ran
    assert gaps(r.drain([], "tetragon")) == {}
    r.tick(T0 + 3 * S, False, runs, True)  # known again: from the last sample
    assert gaps(r.drain([], "tetragon")) == {(A, T0): (T0 + 2 * S, T0 + 3 * S, UNWATCHED_SOURCE)}


def test_a_long_outage_stays_bounded_and_still_covers_the_time() -> None:
    r = RunWindows(window_seconds=1, node_name="n1")
    images = [f"sha256:{i:064x}" for i in range(3)]
    runs = [Run(img, 1, 0, True) for img in images]
    t0 = 2_000_000_000 * S
    r.tick(t0, True, runs, True)
    end = t0 + (MAX_WINDOWS // 2) * S  # three images over half MAX_WINDOWS windows each
    r.tick(end, False, runs, True)
    out = r.drain([], "tetragon")
    assert len(out) <= MAX_WINDOWS + MAX_WINDOWS // 2  # at most one node-wide row per window
    covered: dict[str, set[int]] = {img: set() for img in (*images, NODE_WIDE)}
    for o in out:
        assert o.has_gap and o.source == UNWATCHED_SOURCE
        covered[o.image_digest].add(o.window_start_ns)
    every = set(range(t0, end, S))
    for img in images:  # each window of each image: its own gap, or the node's
        assert covered[img] | covered[NODE_WIDE] == every, img
    assert covered[NODE_WIDE]  # the bound was reached
