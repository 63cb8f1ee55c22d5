"""The native source's gaps hold both sides of a wall-clock step back inside them.

The source stamps its reads with the wall clock (gaps are recorded in wall time),
and the wall clock can step back (NTP correcting a node, ``date -s``, a VM
resumed). A span measured by two wall readings across such a step ended before
it began: a drop span came out zero-length (``max(now, previous)``) and a
replaced file's unwatched span reversed, which the gap tracker discards
(hotsymbols/gaps.py ``_mark``). Calls made in that time, on either side of the
step, were then in no count and in no gap. The spans are now dated by
boottime as the switch's own gaps are (hotsymbols/clock_span.py ``covering``).

The wall clock is stepped by patching ``time.time_ns``; boottime is the real one.
"""

from __future__ import annotations

import time

import pytest

from stellaops_runtime.native import source_gaps
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.follow_files import Followed
from stellaops_runtime.native.source import NativeProbeSource
from stellaops_runtime.sources.queue import EventQueue

STEP = 60 * 1_000_000_000  # the wall clock steps back a minute


def _source(monkeypatch: pytest.MonkeyPatch) -> tuple[NativeProbeSource, list[int]]:
    """A source as its run leaves it after the load (stamps and clock sample), and the clock's shift."""
    real, shift = time.time_ns, [0]
    monkeypatch.setattr(time, "time_ns", lambda: real() + shift[0])
    src = NativeProbeSource(NativeConfig(), queue=EventQueue(10), kernel_source="")
    src._drop_read_ns = src._follow_ns = src._load_ns = time.time_ns()
    src._clock_seen(reset=True)
    return src, shift


def _counters(lost: int) -> dict[str, dict[str, int]]:
    return {"syscall": {"seen": 100, "emitted": 100 - lost, "lost": lost}}


def _before_the_step(shift: list[int]) -> int:
    """A moment after the previous read, then the step back: the moment's wall clock."""
    time.sleep(0.002)
    at = time.time_ns()  # a call made now may be among those dropped / unwatched
    time.sleep(0.002)
    shift[0] = -STEP
    return at


@pytest.mark.parametrize("polled_after", [False, True])
def test_a_drop_span_across_a_step_back_holds_the_time_before_it(
    monkeypatch: pytest.MonkeyPatch, polled_after: bool
) -> None:
    """``polled_after``: a poll sampled the clock after the step (the step is seen), or none did."""
    src, shift = _source(monkeypatch)
    at = _before_the_step(shift)
    if polled_after:
        src._clock_seen()
    src._note_drops(_counters(lost=5), time.time_ns())
    (drop,) = src.take_drops()
    assert drop.total == 5
    assert drop.start_ns <= at <= drop.end_ns, (at, drop)
    assert drop.end_ns - drop.start_ns < 2 * STEP + 10**9  # the step and the time between, not more


def test_a_followed_files_span_across_a_step_back_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    src, shift = _source(monkeypatch)
    at = _before_the_step(shift)
    now = time.time_ns()
    src._note_followed(Followed(attached=["/bin/app:f"]), now, now)
    (span,) = src.take_unwatched()
    assert span[0] <= at <= span[1], (at, span)  # was (previous look, now): reversed, then discarded
    assert span[0] <= now <= span[1], (now, span)


def test_a_clock_that_drifts_without_stepping_widens_no_span(monkeypatch: pytest.MonkeyPatch) -> None:
    """NTP slews a wall clock (up to 500 ppm: seconds a day) rather than stepping it. The offset from
    boottime sampled at each poll then moves by far less than a read's slack between two samples: no
    step. A span is then its two readings, not widened by what the offset drifted since the load.

    Both clocks are virtual here, moved by the test: with the real boottime, a loaded machine that
    preempts the source between its two clock reads for more than the slack makes a step of the
    preemption (the span then widens, the safe way), and this test failed under load."""
    src, shift = _source(monkeypatch)
    wall0 = time.time_ns() - shift[0]
    wall, boot0 = [wall0], source_gaps.boot_ns()
    monkeypatch.setattr(time, "time_ns", lambda: wall[0] + shift[0])
    monkeypatch.setattr(source_gaps, "boot_ns", lambda: boot0 + (wall[0] - wall0))
    src._clock_seen(reset=True)
    for _ in range(10_000):  # 5 s of drift since the load: 0.5 ms a second, a sample each second
        wall[0] += 1_000_000_000
        shift[0] -= 500_000
        src._clock_seen()
    src._drop_read_ns = start = time.time_ns()
    wall[0] += 2_000_000
    now = time.time_ns()
    src._note_drops(_counters(lost=1), now)
    (drop,) = src.take_drops()
    assert (drop.start_ns, drop.end_ns) == (start, now), (drop.end_ns - drop.start_ns, now - start)


@pytest.mark.parametrize("since_load", [True, False])
def test_a_look_taken_late_by_the_event_loop_widens_no_span(
    monkeypatch: pytest.MonkeyPatch, since_load: bool
) -> None:
    """A look at the targets' files reads its wall clock on the probes' thread; the event loop notes
    its span later (the executor's hand-off: 10 ms at a load of 12). The span's end was dated by the
    boottime read at the noting, not at the look: the clocks then disagreed by the hand-off, a step
    was assumed, and the span began that much before the load or the previous look (a flaky
    test_native_former_scan run). A span begun early covers time the probes watched, where the
    switch back counts Tetragon's cached copies of calls the probes counted (source_switch_overlap
    ``counted_by_probes``): counted twice. Both clocks are virtual, moved by the test."""
    src, _ = _source(monkeypatch)
    wall, boot0 = [time.time_ns()], source_gaps.boot_ns()
    wall0 = wall[0]
    monkeypatch.setattr(time, "time_ns", lambda: wall[0])
    monkeypatch.setattr(source_gaps, "boot_ns", lambda: boot0 + (wall[0] - wall0))
    src._drop_read_ns = src._follow_ns = src._load_ns = wall0  # the load
    src._clock_seen(reset=True)
    wall[0] += 3_000_000_000
    looked = wall[0]
    src._note_followed(Followed(), looked, looked)  # a look: nothing new
    src._clock_seen()
    wall[0] += 2_000_000_000
    now = wall[0]  # the next look, its answer read on the probes' thread
    wall[0] += 20_000_000  # ... taken by the event loop 20 ms later
    res = Followed(since_load=True, former=1) if since_load else Followed(attached=["/bin/app:f"])
    src._note_followed(res, now, now - 1_000)
    assert src.take_unwatched() == [(wall0 if since_load else looked, now)]
