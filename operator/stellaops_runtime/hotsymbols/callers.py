"""Distinct callers of each stack function, kept across drains in a bounded table of small ints.

Split from :mod:`stellaops_runtime.hotsymbols.aggregate`, which counts; this
module only remembers who called what. A stack frame's caller is the frame
below it; ``unique_callers`` of a key is how many distinct callers were seen
since the table last started over (the store keeps the maximum any delta
reported, so the number survives the table starting over).

Why ints (issue 13): the table outlives drains, so whatever it holds stays
in the agent's memory after every flush. Holding the key's function name and
a ``module!function`` string per caller cost ~300 B per key (about 25 MB at
100,000 stack keys, most of the agent's memory after a flush). Here a key is
the 60-bit hash of (image, module, function) and a caller the 60-bit hash of
(module, function): one dict entry and two ints per key, a set of ints from
the second caller on. Two different callers of one key (at most
``max_callers`` of them) collide with a probability of about 2^-45; two keys
among the 200,000 the table holds at most, of about 2^-26. A collision can
only lower or raise one key's ``unique_callers`` by the callers of the
other; no invocation count depends on this table. Python's ``hash`` of
strings is seeded per process, which is fine: the table never leaves it.

Bounded: at most ``max_keys`` keys; when full it starts over (a bound, not an
LRU) and :meth:`CallerTable.add` says so, so the aggregator can invalidate
what the fast path remembered. Pure: no I/O, no clock.
"""

from __future__ import annotations

_MASK = (1 << 60) - 1  # two 30-bit digits: the smallest int object that holds it (32 bytes)


class CallerTable:
    """Distinct callers per (image, module, function) of stack keys (see the module docstring)."""

    __slots__ = ("_by_key", "_max_callers", "_max_keys", "resets")

    def __init__(self, *, max_callers: int, max_keys: int) -> None:
        self._by_key: dict[int, int | set[int]] = {}
        self._max_callers = max_callers
        self._max_keys = max_keys
        self.resets = 0  # times the table started over at its bound

    def __len__(self) -> int:
        """Keys held."""
        return len(self._by_key)

    def add(self, image: str, module: str, function: str, caller_module: str, caller_function: str) -> bool:
        """Note one call of ``function`` from the caller; True when the table started over to make room."""
        key = hash((image, module, function)) & _MASK
        caller = hash((caller_module, caller_function)) & _MASK
        by_key = self._by_key
        known = by_key.get(key)
        if known is None:
            started_over = len(by_key) >= self._max_keys
            if started_over:
                by_key.clear()
                self.resets += 1
            by_key[key] = caller
            return started_over
        if isinstance(known, int):
            if known != caller and self._max_callers > 1:
                by_key[key] = {known, caller}
        elif len(known) < self._max_callers:
            known.add(caller)
        return False

    def count(self, image: str, module: str, function: str) -> int:
        """Distinct callers of the key noted since the table last started over."""
        known = self._by_key.get(hash((image, module, function)) & _MASK)
        if known is None:
            return 0
        return 1 if isinstance(known, int) else len(known)
