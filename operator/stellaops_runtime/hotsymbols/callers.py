"""Distinct callers of each stack function, kept across drains in a bounded table of machine words.

Split from :mod:`stellaops_runtime.hotsymbols.aggregate`, which counts; this
module only remembers who called what. A stack frame's caller is the frame
below it; ``unique_callers`` of a key is how many distinct callers were seen
since the table last started over (the store keeps the maximum any delta
reported, so the number survives the table starting over).

Why hashes (issue 13): the table outlives drains, so whatever it holds stays
in the agent's memory after every flush. A key is the 60-bit hash of
(image, module, function) and a caller the 60-bit hash of (the key's image,
its module, its function), so one hash of a stack frame serves as both. Two
different callers of one key (at most ``max_callers`` of them) collide with
a probability of about 2^-45; two keys among the 200,000 the table holds at
most, of about 2^-26. A collision can only lower or raise one key's
``unique_callers`` by the callers of the other; no invocation count depends
on this table. Python's ``hash`` of strings is seeded per process, which is
fine: the table never leaves it.

Why arrays, not a dict of ints (issue 13, docs/benchmarks.md): the table's
entries are made while a window's keys are held, and a dict of them is two
int objects per key (and a set from the second caller on). Those small
objects land among the window's own in pymalloc's 1 MiB arenas, and an arena
goes back to the kernel only once its last block is freed: ~100,000 of them
kept ~9 arenas of the window's freed memory resident after every flush.
Here the table is a few ``array`` buffers (one ``malloc`` each, mapped
outside the arenas once large, returned whole when replaced), open
addressing with linear probing:

- keys: the key's hash + 1 (0 marks a free slot), its first caller, its
  number of distinct callers;
- pairs: (key hash + 1, caller) for every caller after a key's first.

Bounded: at most ``max_keys`` keys; when full it starts over (a bound, not an
LRU) and :meth:`CallerTable.add` says so, so the aggregator can invalidate
what the fast path remembered. Pure: no I/O, no clock.
"""

from __future__ import annotations

from array import array
from itertools import compress

_MASK = (1 << 60) - 1
_MIN_SLOTS = 1024  # slots of an empty table (a power of two); a table grows when half full


def _zeros(n: int) -> array[int]:
    return array("q", bytes(8 * n))


class CallerTable:
    """Distinct callers per (image, module, function) of stack keys (see the module docstring)."""

    __slots__ = (
        "_count",
        "_first",
        "_keys",
        "_mask",
        "_max_callers",
        "_max_keys",
        "_max_slots",
        "_n",
        "_pair_callers",
        "_pair_keys",
        "_pair_mask",
        "_pairs",
        "resets",
    )

    def __init__(self, *, max_callers: int, max_keys: int) -> None:
        self._max_callers = max_callers
        self._max_keys = max_keys
        # Slots that hold max_keys keys at most half full (a table never needs more).
        self._max_slots = 1 << (2 * max(max_keys, 1) - 1).bit_length()
        self.resets = 0  # times the table started over at its bound
        self._start()

    def _start(self) -> None:
        """An empty table, its buffers at their smallest (the old ones are freed whole)."""
        self._keys = _zeros(_MIN_SLOTS)  # key hash + 1; 0: free
        self._first = _zeros(_MIN_SLOTS)  # the key's first caller
        self._count = _zeros(_MIN_SLOTS)  # the key's distinct callers (1 .. max_callers)
        self._mask = _MIN_SLOTS - 1
        self._n = 0
        self._pair_keys = _zeros(_MIN_SLOTS)  # key hash + 1 of a further caller; 0: free
        self._pair_callers = _zeros(_MIN_SLOTS)
        self._pair_mask = _MIN_SLOTS - 1
        self._pairs = 0

    def __len__(self) -> int:
        """Keys held."""
        return self._n

    def add(self, image: str, module: str, function: str, caller_module: str, caller_function: str) -> bool:
        """Note one call of ``function`` from the caller; True when the table started over to make room."""
        return self.add_hashed(hash((image, module, function)), hash((image, caller_module, caller_function)))

    def add_hashed(self, key_hash: int, caller_hash: int) -> bool:
        """:meth:`add`, given ``hash((image, module, function))`` of the key and of the caller.

        A caller is hashed with its key's image (the same for both), so the aggregator hashes
        each stack frame once: as a key, and as the caller of the frame above it.
        """
        key = (key_hash & _MASK) + 1
        caller = caller_hash & _MASK
        keys = self._keys
        mask = self._mask
        i = key & mask
        k = keys[i]
        while k != key:
            if not k:  # a new key
                n = self._n
                if n >= self._max_keys or 2 * n + 2 > mask:  # full, or time to grow: the slow way
                    return self._new_key(key, caller)
                keys[i] = key
                self._first[i] = caller
                self._count[i] = 1
                self._n = n + 1
                return False
            i = (i + 1) & mask
            k = keys[i]
        if self._first[i] == caller:
            return False
        n = self._count[i]
        if n >= self._max_callers:
            return False
        # _add_pair, inlined: most calls of a stream whose stacks never repeat end here (a key's
        # further caller, already noted)
        pair_keys, callers, pair_mask = self._pair_keys, self._pair_callers, self._pair_mask
        j = hash((key, caller)) & pair_mask
        k = pair_keys[j]
        while k:
            if k == key and callers[j] == caller:
                return False
            j = (j + 1) & pair_mask
            k = pair_keys[j]
        pair_keys[j] = key
        callers[j] = caller
        self._count[i] = n + 1
        self._pairs += 1
        if 2 * self._pairs > pair_mask:
            self._grow_pairs()
        return False

    def _new_key(self, key: int, caller: int) -> bool:
        """Insert a key after starting over (the table is full) or growing (half full)."""
        started_over = self._n >= self._max_keys
        if started_over:
            self._start()
            self.resets += 1
        else:
            self._grow_keys()
        keys, mask = self._keys, self._mask
        i = key & mask
        while keys[i]:
            i = (i + 1) & mask
        keys[i] = key
        self._first[i] = caller
        self._count[i] = 1
        self._n += 1
        return started_over

    def _grow_keys(self) -> None:
        """Four times the slots (at most what ``max_keys`` needs), every key moved: a move costs
        more than a new key, so the table grows rarely (only occupied slots are visited)."""
        old_keys, old_first, old_count = self._keys, self._first, self._count
        size = max(2 * (self._mask + 1), min(4 * (self._mask + 1), self._max_slots))
        keys, first, count = _zeros(size), _zeros(size), _zeros(size)
        mask = size - 1
        for j in compress(range(len(old_keys)), old_keys):
            k = old_keys[j]
            i = k & mask
            while keys[i]:
                i = (i + 1) & mask
            keys[i] = k
            first[i] = old_first[j]
            count[i] = old_count[j]
        self._keys, self._first, self._count, self._mask = keys, first, count, mask

    def _grow_pairs(self) -> None:
        old_keys, old_callers = self._pair_keys, self._pair_callers
        size = 4 * (self._pair_mask + 1)
        keys, callers = _zeros(size), _zeros(size)
        mask = size - 1
        for j in compress(range(len(old_keys)), old_keys):
            k = old_keys[j]
            c = old_callers[j]
            i = hash((k, c)) & mask
            while keys[i]:  # every pair is distinct: only a free slot is looked for
                i = (i + 1) & mask
            keys[i] = k
            callers[i] = c
        self._pair_keys, self._pair_callers, self._pair_mask = keys, callers, mask

    def count(self, image: str, module: str, function: str) -> int:
        """Distinct callers of the key noted since the table last started over."""
        key = (hash((image, module, function)) & _MASK) + 1
        keys = self._keys
        mask = self._mask
        i = key & mask
        while True:
            k = keys[i]
            if k == key:
                return self._count[i]
            if not k:
                return 0
            i = (i + 1) & mask


# Bounds of NotedChains: hashes held in all, and frames in one chain it remembers (a hostile 200-frame
# stack is noted every time instead).
MAX_CHAIN_HASHES = 8192
MAX_CHAIN_FRAMES = 64


class NotedChains:
    """Caller chains (a stack's key hashes, innermost first) whose pairs were all noted in a CallerTable.

    Noting a pair again changes nothing until the table starts over: a pair noted stays noted, and a
    key at ``max_callers`` stays there. A stream whose stacks never repeat still repeats their
    functions (the same names at other offsets), and noting its pairs again cost ~5k instructions
    each (docs/benchmarks.md). So a chain noted whole is remembered, and noted again only once the
    table started over (then every chain is forgotten). Bounded (MAX_CHAIN_HASHES, MAX_CHAIN_FRAMES);
    the aggregator empties it at drain, so nothing of a window's stacks outlives it.
    """

    __slots__ = ("_chains", "_hashes")

    def __init__(self) -> None:
        self._chains: set[tuple[int, ...]] = set()
        self._hashes = 0

    def clear(self) -> None:
        self._chains = set()  # a new set: the old one's table is freed whole
        self._hashes = 0

    def note(self, table: CallerTable, chain: list[int]) -> int:
        """Each hash of ``chain`` as the caller of the one before it (CallerTable.add_hashed, in order),
        unless the chain was noted whole since the table last started over; returns how many times
        the table started over meanwhile (each invalidates what the fast path holds)."""
        small = len(chain) <= MAX_CHAIN_FRAMES
        key = tuple(chain) if small else ()
        if small and key in self._chains:
            return 0
        add = table.add_hashed
        below = chain[0]
        started_over = 0
        for h in chain[1:]:
            if add(below, h):
                started_over += 1
            below = h
        if started_over:
            self.clear()
        elif small:
            if self._hashes + len(key) > MAX_CHAIN_HASHES:
                self.clear()
            self._chains.add(key)
            self._hashes += len(key)
        return started_over
