"""``boot_of`` reads the wall clock between two reads of the boot clock: a span's start is never late.

Defect (s45/TJ): ``boot_of`` read the wall clock, then the boot clock. What ran between the two reads
(a preemption of a few ms on a loaded node) made a span's start boottime late by that much, so the
boottime elapsed came out short of the real one, and :func:`covering` over a wall clock stepped back
left out the calls stamped in that time at the span's edge ("not observed" over time nobody watched).
A span's start now takes the earliest boottime the bracket allows, its end the latest.
``now_pair`` read the same way (wall, then boot) for either end of a span: it now reads the wall
clock between two boot reads (again when a preemption came between them) and takes their middle,
and :func:`covering` allows for half their distance.

The clocks here are a scripted pair (one true time, advancing by a chosen amount at every read), the
only way to place a preemption between two reads at will.
"""

from __future__ import annotations

import time
import types

import pytest

from stellaops_runtime.hotsymbols import clock_span
from stellaops_runtime.hotsymbols.clock_span import boot_bracket, boot_of, covering, now_pair

MS = 1_000_000
S = 1_000_000_000
OFFSET = 1_700_000_000 * S  # wall clock minus boot clock before the step


class ScriptedClocks:
    """One true time (the boot clock's); the wall clock is it plus OFFSET, minus ``step`` from
    ``step_at`` on. Every read takes ``per_read`` ns (what ran between two reads)."""

    def __init__(self) -> None:
        self.t = 10 * S
        self.per_read = 1_000
        self.step_at: int | None = None
        self.step = 0
        self.advances: list[int] = []  # the next reads' own times, before ``per_read`` applies again

    def wall_at(self, t: int) -> int:
        stepped = self.step_at is not None and t >= self.step_at
        return t + OFFSET - (self.step if stepped else 0)

    def _advance(self) -> None:
        self.t += self.advances.pop(0) if self.advances else self.per_read

    def time_ns(self) -> int:
        now = self.wall_at(self.t)
        self._advance()
        return now

    def clock_gettime_ns(self, clock: int) -> int:
        assert clock == time.CLOCK_BOOTTIME
        now = self.t
        self._advance()
        return now


@pytest.fixture()
def clocks(monkeypatch: pytest.MonkeyPatch) -> ScriptedClocks:
    c = ScriptedClocks()
    fake = types.SimpleNamespace(
        time_ns=c.time_ns, clock_gettime_ns=c.clock_gettime_ns, CLOCK_BOOTTIME=time.CLOCK_BOOTTIME
    )
    monkeypatch.setattr(clock_span, "time", fake)
    return c


def test_the_bracket_holds_the_moment_s_boottime(clocks: ScriptedClocks) -> None:
    moment = clocks.t
    clocks.t += 300 * MS  # read back later
    clocks.per_read = 5 * MS  # preempted between the reads
    early, late = boot_bracket(clocks.wall_at(moment))
    assert early <= moment <= late
    assert late - early <= 2 * 5 * MS  # the bracket is the reads' own time, no wider
    assert boot_of(clocks.wall_at(moment)) <= moment  # a start: never late (before: 5 ms late)
    assert boot_of(clocks.wall_at(moment), end=True) >= moment  # an end: never early


def test_a_span_over_a_step_back_holds_the_calls_at_its_edge(clocks: ScriptedClocks) -> None:
    """The start read back while preempted; the wall clock stepped back 10 s just before the end."""
    start = clocks.t
    start_wall = clocks.wall_at(start)
    clocks.t += 100 * MS
    clocks.per_read = 5 * MS
    start_boot = boot_of(start_wall)
    clocks.per_read = 1_000
    end = start + 2 * S
    clocks.step_at, clocks.step = end - MS // 2, 10 * S
    clocks.t = end
    end_wall = clocks.time_ns()
    end_boot = boot_of(end_wall, end=True)
    a, b = covering(start_wall, start_boot, end_wall, end_boot)
    # A call 1 ms before the end, before the step: stamped on the old clock. Before the fix the
    # span ended ~5 ms short of it (start_wall + an elapsed time short by the preemption).
    call = clocks.wall_at(end - MS)
    assert a <= call <= b
    after_step = clocks.wall_at(end - MS // 4)  # and one after the step, on the new clock
    assert a <= after_step <= b


def test_now_pair_reads_again_when_preempted_between_its_reads(clocks: ScriptedClocks) -> None:
    clocks.advances = [5 * MS]  # preempted right after the first read
    wall, boot = now_pair()
    moment = wall - OFFSET  # the true boottime of that wall reading (no step)
    assert abs(boot - moment) <= 1_000  # before: the boot read after the preemption, 5 ms late


def test_a_span_from_a_preempted_now_pair_holds_the_calls_at_its_edge(clocks: ScriptedClocks) -> None:
    """``now_pair`` at an outage's start, preempted once; the wall clock steps back 10 s just before
    its end. A call 1 ms before the end, on the old clock, is in the span (before: ~4 ms short)."""
    clocks.advances = [5 * MS]
    start_wall, start_boot = now_pair()
    end = clocks.t + 2 * S
    clocks.step_at, clocks.step = end - MS // 2, 10 * S
    clocks.t = end
    end_wall, end_boot = now_pair()
    a, b = covering(start_wall, start_boot, end_wall, end_boot)
    assert a <= clocks.wall_at(end - MS) <= b
    assert a <= clocks.wall_at(end - MS // 4) <= b
