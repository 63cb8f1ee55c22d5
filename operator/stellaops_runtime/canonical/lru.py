"""A dict bounded by entry count, least recently used evicted first: the symbolizer's caches' bound.

Why it exists: every cache of the canonicalizer (binaries, file identities,
frames, refusals) must be bounded, with a hook to close what is evicted.
Split from canonical/addrindex.py, which re-exports it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A dict bounded by entry count; the least recently used entry is evicted first."""

    __slots__ = ("_on_evict", "data", "evictions", "max_entries")

    def __init__(self, max_entries: int, *, on_evict: Callable[[V], None] | None = None) -> None:
        if max_entries < 1:
            raise ValueError(f"LRU size must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        # read directly (``get`` inlined) on the canonicalizer's per-frame path; written only here
        self.data: OrderedDict[K, V] = OrderedDict()
        self._on_evict = on_evict
        self.evictions = 0

    def __len__(self) -> int:
        return len(self.data)

    def __contains__(self, key: K) -> bool:
        return key in self.data

    def get(self, key: K) -> V | None:
        data = self.data
        value = data.get(key)
        if value is not None:
            data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        data = self.data
        data[key] = value
        data.move_to_end(key)
        while len(data) > self.max_entries:
            _, old = data.popitem(last=False)
            self.evictions += 1
            if self._on_evict is not None:
                self._on_evict(old)

    def pop(self, key: K) -> V | None:
        return self.data.pop(key, None)

    def clear(self) -> None:
        while self.data:
            _, old = self.data.popitem(last=False)
            if self._on_evict is not None:
                self._on_evict(old)
