"""How a privacy rule's cost grows with a hostile field, against a linear reference.

Why this exists: every privacy rule must stay linear in a field's length, and no test may assert an
absolute time (the machine is shared). A rule's CPU time on a field of 64 KiB is compared with its
time on the field's first 16 KiB: a rule that reads a bounded window once per start costs about
four times as much, one that reads the rest of the field from every start about sixteen times.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["growth"]


def _cpu(fn: Callable[[str], object], text: str) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        fn(text)
        best = min(best, time.process_time() - t0)
    return best


def growth(fn: Callable[[str], object], unit: str, size: int = 65536) -> float:
    """``fn``'s CPU time on ``unit`` repeated to ``size`` characters over its time on a quarter."""
    big = (unit * (size // len(unit) + 1))[:size]
    return _cpu(fn, big) / max(_cpu(fn, big[: size // 4]), 1e-6)
