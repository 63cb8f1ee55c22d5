"""The wall-clock span of an unwatched time, whichever way the wall clock stepped inside it.

Gaps are recorded in wall-clock time (event times are wall clock), but the
wall clock can step: NTP correcting a node that booted with a wrong clock, an
operator running ``date -s``, a VM resumed from a snapshot. An outage measured
only by two wall-clock readings loses time when the clock steps back inside
it: its end comes before its start, and the span was dropped. Yet every call
made in it was stamped on one side of the step or the other, and none was
seen, so a "not observed" must not rest on either side.

Each moment is therefore read on two clocks: the wall clock and
``CLOCK_BOOTTIME`` (steady, and it keeps counting through a suspend, which is
unwatched time too). Between two moments ``elapsed`` boottime passed; the
calls made between them were stamped somewhere in ``[start, start + elapsed]``
(before a step, on the old clock) or ``[end - elapsed, end]`` (after it, on
the new one). :func:`covering` returns the one span that holds both. When the
clock did not step it is ``[start, end]``: the two clocks may disagree by up to
:data:`READ_SLACK_NS` (two reads are never at the same instant; NTP slews
rather than steps under 128 ms) before a step is assumed. When it stepped
forward it is ``[start, end]`` too (wider than the real outage: the safe side). Over a step the
elapsed time is taken :data:`READ_SLACK_NS` longer: a moment's boottime (:func:`now_pair`,
:func:`boot_of`) may be off by the reads' own time, and only a longer elapsed time is safe.
"""

from __future__ import annotations

import time

READ_SLACK_NS = 1_000_000  # the clocks' disagreement taken for the time between two reads, not a step
# A pair's two boot-clock reads this close bracket its wall-clock read (a few us apart unless the
# thread was preempted between them: then read again, up to PAIR_TRIES times, the closest kept).
PAIR_TIGHT_NS = 100_000
PAIR_TRIES = 4


def boot_ns() -> int:
    """Nanoseconds since the node booted, counting suspended time; never steps."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def now_pair() -> tuple[int, int]:
    """``(wall ns, boottime ns)`` of one moment.

    The wall clock is read between two reads of the boot clock and the boottime is their middle,
    off by at most half their distance (:data:`PAIR_TIGHT_NS` unless preempted at every try), which
    :func:`covering` allows for. One read of each, wall first, gave a boottime late by whatever ran
    between them: a span's start late, its elapsed time short, a span over a step back narrowed.
    """
    best = (0, 0, -1)
    for _ in range(PAIR_TRIES):
        before = boot_ns()
        wall = time.time_ns()
        after = boot_ns()
        if best[2] < 0 or after - before < best[2]:
            best = (wall, before + (after - before) // 2, after - before)
        if after - before <= PAIR_TIGHT_NS:
            break
    return best[0], best[1]


def boot_bracket(wall_ns: int) -> tuple[int, int]:
    """The earliest and the latest boottime a recent wall-clock moment may have had, read back from
    now (a step since is not seen).

    The wall clock is read between two reads of the boot clock, so the boottime of that read lies
    in their bracket, whatever ran between the reads (a preemption, a page fault). A span's start
    takes the earliest, its end the latest: the boottime elapsed between them is then never less
    than the real one, and :func:`covering` only widens a span by the reads' error. A single read
    of each, wall first, made a start late by the time between the reads: the elapsed time came out
    short, and a span over a step back lost that time at its edges.
    """
    before = boot_ns()
    wall = time.time_ns()
    after = boot_ns()
    back = max(0, wall - wall_ns)
    return before - back, after - back


def boot_of(wall_ns: int, *, end: bool = False) -> int:
    """The boottime of a recent wall-clock moment as a span's start (the earliest it may have been),
    or with ``end`` as a span's end (the latest): :func:`boot_bracket`."""
    return boot_bracket(wall_ns)[1 if end else 0]


def covering(start_wall: int, start_boot: int | None, end_wall: int, end_boot: int) -> tuple[int, int]:
    """The wall-clock span holding every moment between two (see the module docstring).

    ``start_boot`` None: the start's boottime is unknown (a moment of another boot) and the
    span is the two wall-clock readings, ordered.
    """
    if start_boot is None:
        return min(start_wall, end_wall), max(start_wall, end_wall)
    elapsed = max(0, end_boot - start_boot)
    if end_wall >= start_wall and abs((end_wall - start_wall) - elapsed) <= READ_SLACK_NS:
        return start_wall, end_wall  # no step
    elapsed += READ_SLACK_NS  # each moment's boottime may be off by half its reads' distance
    return min(start_wall, end_wall - elapsed), max(end_wall, start_wall + elapsed)
