"""A compact path -> owner index: what a package database becomes in memory.

A Debian image lists tens of thousands of files (this build machine's dpkg
database: 136,000), and the agent keeps one index per image it has seen.
Holding the path strings in a dict costs ~150 bytes a file; this keeps a
sorted array of the paths' 64-bit hashes and a parallel array of owner
numbers, 12 bytes a file, and looks up with a binary search (only cold
lookups reach it: answers are cached per (image, path) above it).

The hash is Python's keyed SipHash of the string (randomized per process, so
nobody can construct collisions from outside). Two distinct paths sharing a
hash is the only way to get a wrong owner: with n indexed files the chance
per lookup is about n / 2**64, ~10**-14 for 100,000 files.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable


class PathIndex:
    """Maps resolved in-root paths to owner numbers (indexes into the caller's package list)."""

    __slots__ = ("_hashes", "_owners")

    def __init__(self, entries: Iterable[tuple[str, int]]) -> None:
        hashes: list[int] = []
        owners: list[int] = []
        for path, owner in entries:
            hashes.append(hash(path))
            owners.append(owner)
        order = sorted(range(len(hashes)), key=hashes.__getitem__)
        self._hashes = array("q", [hashes[i] for i in order])
        self._owners = array("I", [owners[i] for i in order])

    def __len__(self) -> int:
        return len(self._hashes)

    def owners(self, path: str) -> list[int]:
        """Owners of ``path`` in the order they were added (usually one; directories have many)."""
        h = hash(path)
        hashes = self._hashes
        i = bisect_left(hashes, h)
        out: list[int] = []
        n = len(hashes)
        while i < n and hashes[i] == h:
            owner = self._owners[i]
            if owner not in out:
                out.append(owner)
            i += 1
        out.sort()
        return out

    def nbytes(self) -> int:
        return self._hashes.itemsize * len(self._hashes) + self._owners.itemsize * len(self._owners)
