"""The lifecycle's windows when the wall clock steps (hotsymbols/run_windows.py).

The samples come about once a second on the wall clock, which may step back (NTP, ``date -s``).
An image that ran while the source was away must still get its gap after the step: before, every
sample behind the latest time seen was taken for the past and marked nothing, for as long as the
clock took to come back (an hour of unwatched running, no gap). With the boot clock passed in, the
sample that saw the step marks the time since the last sample on the new clock too.
"""

from __future__ import annotations

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.hotsymbols.run_windows import MAX_WINDOWS, Run, RunWindows

S = 1_000_000_000
WS = 10
W = WS * S
HOUR = 3600 * S
T0 = 1_900_000_000 * S - (1_900_000_000 * S) % W  # a window boundary
A = "sha256:" + "a" * 64


def gap_spans(out: list[ObservationWindow]) -> list[tuple[int, int]]:
    return sorted((o.gap_start_ns, o.gap_end_ns) for o in out if o.has_gap and o.image_digest == A)


def covered(spans: list[tuple[int, int]], a: int, b: int) -> bool:
    """[a, b] lies within the union of spans (which touch or overlap)."""
    t = a
    for lo, hi in spans:
        if lo <= t <= hi:
            t = max(t, hi)
    return t >= b


def test_an_image_running_unwatched_after_a_step_back_gets_its_gap() -> None:
    r = RunWindows(window_seconds=WS, node_name="n1")
    runs = [Run(A, T0 - 10 * HOUR, 0, True)]
    for t in range(T0, T0 + 3 * S + 1, S):
        r.tick(t, False, runs, True)  # the source away, the runtime in sync
    back = T0 + 4 * S - HOUR  # the clock steps back an hour
    for t in range(back, back + 5 * S + 1, S):
        r.tick(t, False, runs, True)
    spans = gap_spans(r.drain([], "tetragon"))
    assert covered(spans, T0, T0 + 3 * S), spans  # before the step
    assert covered(spans, back, back + 5 * S), spans  # after it: the image still ran unwatched


def test_with_the_boot_clock_the_sample_across_the_step_is_marked_on_the_new_clock() -> None:
    r = RunWindows(window_seconds=WS, node_name="n1")
    runs = [Run(A, T0 - 10 * HOUR, 0, True)]
    boot = 500 * S
    r.tick(T0, False, runs, True, boot_ns=boot)
    r.tick(T0 + S, False, runs, True, boot_ns=boot + S)
    r.tick(T0 + 2 * S - HOUR, False, runs, True, boot_ns=boot + 2 * S)  # a second later, an hour back
    spans = gap_spans(r.drain([], "tetragon"))
    assert covered(spans, T0, T0 + S) and covered(spans, T0 + S - HOUR, T0 + 2 * S - HOUR), spans


def test_a_step_back_while_watched_restarts_the_watch_and_windows_go_on() -> None:
    """Windows watched whole before the step are kept; after it the watch starts again on the new
    clock (its first whole window gets its row), not an hour later."""
    r = RunWindows(window_seconds=WS, node_name="n1", settle_ns=0)
    runs = [Run(A, T0 - 10 * HOUR, 0, True)]
    for t in range(T0, T0 + 2 * W + 1, S):
        r.tick(t, True, runs, True)
    back = T0 + 2 * W - HOUR
    for t in range(back, back + 3 * W + 1, S):
        r.tick(t, True, runs, True)
    rows = {o.window_start_ns for o in r.drain([], "tetragon") if o.posture is Posture.PASSIVE}
    assert {T0, T0 + W} <= rows  # whole before the step
    assert {back + W, back + 2 * W} <= rows  # whole after it
    assert back not in rows or back % W == 0


def test_a_forward_step_of_years_while_the_source_is_away_marks_the_real_time_not_every_window() -> None:
    """A node whose clock booted in the past (a reset RTC) and is set right by NTP years later, while
    Tetragon is away: the second between two samples is marked on both clocks; the years skipped hold
    no moment anything ran. Before, every window of the years was walked and held (millions: the
    agent stalled and its memory grew without bound)."""
    r = RunWindows(window_seconds=WS, node_name="n1")
    runs = [Run(A, T0 - 10 * HOUR, 0, True)]
    boot = 500 * S
    r.tick(T0, False, runs, True, boot_ns=boot)
    later = T0 + 30 * 365 * 24 * HOUR  # thirty years on, one second later
    r.tick(later, False, runs, True, boot_ns=boot + S)
    assert r.held + len(r._unwatched) <= 4
    spans = gap_spans(r.drain([], "tetragon"))
    assert covered(spans, T0, T0 + S) and covered(spans, later - S, later), spans


def test_without_the_boot_clock_a_long_jump_marks_at_most_the_bound() -> None:
    r = RunWindows(window_seconds=WS, node_name="n1")
    runs = [Run(A, T0 - 10 * HOUR, 0, True)]
    r.tick(T0, False, runs, True)
    later = T0 + 30 * 365 * 24 * HOUR
    r.tick(later, False, runs, True)
    assert len(r._unwatched) <= MAX_WINDOWS
    spans = gap_spans(r.drain([], "tetragon"))
    assert covered(spans, later - 1000 * W, later), spans[-3:]  # the latest windows, never none
