"""How a privacy rule's cost grows with a hostile field, against a linear reference.

Why this exists: every privacy rule must stay linear in a field's length, and no test may assert an
absolute time (the machine is shared). A rule's CPU time on a field of 64 KiB is compared with its
time on the field's first 16 KiB: a rule that reads a bounded window once per start costs about
four times as much, one that reads the rest of the field from every start about sixteen times.

The time is the calling thread's own CPU time, with the collector off: the process's CPU time also
counted any thread an earlier test left running in the same worker, and a 64 KiB run, longer than
the interpreter's 5 ms switch interval, paid for that thread's slices where a 16 KiB run did not (a
clean-clone CI run measured 14-20x for rules that cost 4x alone).

The default privacy rules no longer depend on the process's history (a combination of rules was
compiled off the filtering thread and the whole set ran meanwhile, with another cost): each rule
runs by its own regex, compiled at the first filter (privacy/rule_scan.py), so a field costs the
same in any worker.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

__all__ = ["growth"]


def _cpu(fn: Callable[[str], object], text: str) -> float:
    best = float("inf")
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(5):
            t0 = time.thread_time()
            fn(text)
            best = min(best, time.thread_time() - t0)
    finally:
        if enabled:
            gc.enable()
    return best


def growth(fn: Callable[[str], object], unit: str, size: int = 65536) -> float:
    """``fn``'s CPU time on ``unit`` repeated to ``size`` characters over its time on a quarter.

    The lowest time of each size over up to eight tries, taken in turns, the later ones spread over
    about five seconds: a rule that is quadratic costs about 16x in every try, while a shared
    machine can put one 64 KiB run's CPU time far off for a while (a worker late in a full run
    measured 18.8x, and a clean-clone run 18.0x over three tries in a row, with the thread's own
    time and the collector off, for a rule that measures 4x in every other run).
    """
    big = (unit * (size // len(unit) + 1))[:size]
    small = big[: size // 4]
    best_big = best_small = float("inf")
    for attempt in range(8):
        if attempt >= 3:
            time.sleep(0.25 * attempt)  # out of whatever held the machine during the last tries
        best_small = min(best_small, _cpu(fn, small))
        best_big = min(best_big, _cpu(fn, big))
        if best_big / max(best_small, 1e-6) < 6:
            break
    return best_big / max(best_small, 1e-6)
