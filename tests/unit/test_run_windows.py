"""Lifecycle observation windows (hotsymbols/run_windows.py): only wholly watched windows, honest posture.

An image whose container ran through a window in which the event source and
the runtime stayed connected gets a row with no events at posture Passive,
whatever other images' events showed on the node (they say nothing of which
probes selected this one); a window the watch did not cover from its first
instant to its last gets none.
"""

from __future__ import annotations

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.hotsymbols.aggregate import HotSymbolAggregator
from stellaops_runtime.hotsymbols.run_windows import MAX_WINDOWS, Run, RunWindows

S = 1_000_000_000
WS = 10
W = WS * S
T0 = 1_900_000_000 * S - (1_900_000_000 * S) % W  # a window boundary
A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def rw(settle: int = 0) -> RunWindows:
    return RunWindows(window_seconds=WS, node_name="n1", settle_ns=settle)


def node_row(w: int, posture: Posture, node: str = "n1", image: str = B) -> ObservationWindow:
    return ObservationWindow(image, node, w, 3, posture, WS, "tetragon")


def watch(r: RunWindows, start: int, end: int, runs: list[Run], step: int = S) -> None:
    for t in range(start, end + 1, step):
        r.tick(t, True, runs)


def rows_of(out: list[ObservationWindow], image: str = A) -> dict[int, ObservationWindow]:
    return {o.window_start_ns: o for o in out if o.image_digest == image}


def test_a_wholly_watched_window_gets_a_passive_row_whatever_other_images_showed() -> None:
    r = rw()
    watch(r, T0 + 5 * S, T0 + 3 * W, [Run(A, T0, 0, True)])
    out = r.drain(
        [node_row(T0 + W, Posture.ACTIVE_TRACING), node_row(T0 + 2 * W, Posture.EBPF_DEEP)], "tetragon"
    )
    mine = rows_of(out)
    # T0's window started before the watch: none. T0+3W has not ended.
    assert sorted(mine) == [T0 + W, T0 + 2 * W]
    assert [(o.event_count, o.posture, o.window_seconds, o.source, o.has_gap) for o in mine.values()] == [
        (0, Posture.PASSIVE, WS, "tetragon", False),
        (0, Posture.PASSIVE, WS, "tetragon", False),
    ]
    assert len([o for o in out if o.image_digest == B]) == 2  # the aggregator's rows are kept
    assert r.drain([], "tetragon") == []  # emitted once


def test_the_source_is_the_one_whose_events_the_node_showed() -> None:
    r = rw()
    watch(r, T0, T0 + 2 * W, [Run(A, 0, 0, True)])
    bcc = ObservationWindow(B, "n1", T0, 3, Posture.EBPF_DEEP, WS, "bcc,tetragon")
    mine = rows_of(r.drain([bcc], "tetragon"))
    assert (mine[T0].source, mine[T0].posture) == ("bcc,tetragon", Posture.PASSIVE)
    assert mine[T0 + W].source == "tetragon"  # no event: the aggregator's own source


def test_a_window_without_events_on_the_node_is_passive_and_other_nodes_do_not_count() -> None:
    r = rw()
    watch(r, T0, T0 + W, [Run(A, 0, 0, True)])
    out = r.drain([node_row(T0, Posture.FULL_INSTRUMENTATION, node="other")], "tetragon")
    assert rows_of(out)[T0].posture is Posture.PASSIVE


def test_the_images_own_events_keep_their_posture_and_a_source_drained_earlier_still_counts() -> None:
    r = rw(settle=2 * S)
    r.tick(T0, True, [])
    bcc = ObservationWindow(B, "n1", T0, 3, Posture.ACTIVE_TRACING, WS, "bcc")
    assert r.drain([bcc], "tetragon") == [bcc]
    watch(r, T0 + S, T0 + W + S, [Run(A, 0, 0, True), Run(B, 0, 0, True)])
    assert rows_of(r.drain([], "tetragon")) == {}  # not settled yet
    r.tick(T0 + W + 2 * S, True, [Run(A, 0, 0, True), Run(B, 0, 0, True)])
    own = ObservationWindow(B, "n1", T0 + W, 5, Posture.EBPF_DEEP, WS, "bcc")
    out = r.drain([own], "tetragon")
    assert (rows_of(out)[T0].posture, rows_of(out)[T0].source) == (Posture.PASSIVE, "bcc")
    assert rows_of(out, B)[T0 + W] == own.merged(
        ObservationWindow(B, "n1", T0 + W, 0, Posture.PASSIVE, WS, "bcc")
    )
    assert rows_of(out, B)[T0 + W].posture is Posture.EBPF_DEEP  # its own events' posture, not lowered


def test_a_break_inside_a_window_leaves_it_without_a_row_but_keeps_whole_earlier_ones() -> None:
    r = rw(settle=15 * S)
    watch(r, T0, T0 + W + 4 * S, [Run(A, 0, 0, True)])
    r.tick(T0 + W + 5 * S, False, [])  # the source went away mid-window
    assert r.stats.broken == 1 and r.stats.discarded == 1
    watch(r, T0 + W + 6 * S, T0 + 5 * W, [Run(A, 0, 0, True)])
    out = rows_of(r.drain([], "tetragon"))
    # T0: whole before the break. T0+W: broken. T0+2W, T0+3W, T0+4W: whole, but +4W not settled yet.
    assert sorted(out) == [T0, T0 + 2 * W]
    r.final = True  # the agent stops: whole windows need not settle
    assert sorted(rows_of(r.drain([], "tetragon"))) == [T0 + 3 * W, T0 + 4 * W]


def test_a_stopped_container_counts_up_to_its_stop_and_unknown_images_never() -> None:
    r = rw()
    stop = T0 + W + 3 * S
    for t in range(T0, T0 + 3 * W + 1, S):
        running = t < stop
        r.tick(t, True, [Run(A, T0, 0 if running else stop, running), Run("", 0, 0, True)])
    out = r.drain([], "tetragon")
    assert sorted(rows_of(out)) == [T0, T0 + W]
    assert {o.image_digest for o in out} == {A}


def test_a_container_stopped_before_the_sample_does_not_reach_later_windows() -> None:
    r = rw()
    r.tick(T0, True, [])
    r.tick(T0 + 2 * W, True, [Run(A, T0 + 2 * S, T0 + 4 * S, False)])  # a sample late by two windows
    assert sorted(rows_of(r.drain([], "tetragon"))) == [T0]


def test_a_stalled_sampler_restarts_the_watch() -> None:
    r = rw()
    r.tick(T0, True, [Run(A, 0, 0, True)])
    r.tick(T0 + 5 * W, True, [Run(A, 0, 0, True)])  # nothing sampled for five windows
    r.tick(T0 + 6 * W, True, [Run(A, 0, 0, True)])
    assert sorted(rows_of(r.drain([], "tetragon"))) == [T0 + 5 * W]  # from the restart on only


def test_a_row_for_an_image_with_events_merges_into_the_aggregators_row() -> None:
    r = rw()
    watch(r, T0, T0 + W, [Run(A, 0, 0, True)])
    out = r.drain([ObservationWindow(A, "n1", T0, 7, Posture.EBPF_DEEP, WS, "tetragon")], "tetragon")
    assert out == [ObservationWindow(A, "n1", T0, 7, Posture.EBPF_DEEP, WS, "tetragon")]


def test_the_aggregator_emits_the_runs_at_drain() -> None:
    agg = HotSymbolAggregator(window_seconds=WS, min_confidence=0.2)
    agg.runs = r = rw()
    watch(r, T0, T0 + W, [Run(A, 0, 0, True)])
    _, windows = agg.drain()
    assert windows == [ObservationWindow(A, "n1", T0, 0, Posture.PASSIVE, WS, "tetragon")]


def test_memory_is_bounded_when_nothing_drains() -> None:
    r = RunWindows(window_seconds=1, node_name="n1")
    watch(r, T0, T0 + (MAX_WINDOWS + 50) * S, [Run(A, 0, 0, True)])
    assert r.held == MAX_WINDOWS
