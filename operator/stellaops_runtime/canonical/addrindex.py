"""Address -> function lookup over sorted arrays, and the bounded LRU the caches use.

A symbol source (``.symtab``, ``.dynsym``, DWARF, ``.gopclntab``) becomes one
:class:`AddressTable`: parallel lists of start addresses, end addresses and raw
names, sorted by start, searched with ``bisect``. It is built once per build-id
and kept in an LRU, so a warm lookup is one bisect plus a list index.

Rules, chosen so the same address always gives the same name:

- Aliases (several symbols at one address, e.g. libc's ``read``/``__read``/
  ``__libc_read``) keep one name: fewest leading underscores, then GLOBAL over
  WEAK over LOCAL, then the shortest, then the alphabetically first.
- A symbol with a size covers ``[start, start + size)``. A zero-size symbol
  (hand-written assembly often has no size) covers up to the next symbol's
  start, but never past the end of its own section.
- An address in a gap (padding between sized functions) belongs to no function.
- Nested symbols (a function that contains another symbol) are found by
  looking back a few entries for one whose range still covers the address.

Names are demangled lazily, on the first hit, and memoized per entry.

Tables are built on the agent's parse-worker thread (canonical/parseworker.py)
while the pipeline thread keeps running: symbols are sorted in runs of
``_SORT_RUN`` and the runs then merged, because one ``sorted()`` over 500,000
shuffled entries is a single C call holding the GIL (a 358 ms pause of the
pipeline thread measured on a loaded 2-core machine; 44 ms in runs).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from stellaops_runtime.canonical.demangle import demangle

STB_LOCAL = 0
STB_GLOBAL = 1
STB_WEAK = 2

_BIND_RANK = {STB_GLOBAL: 0, STB_WEAK: 1, STB_LOCAL: 2}
_NESTED_LOOKBACK = 8
_SORT_RUN = 32_768

# (start, size, raw name, binding, section end or 0 when unknown)
RawSymbol = tuple[int, int, str, int, int]


def _start(sym: RawSymbol) -> int:
    return sym[0]


def sorted_by_start(symbols: Iterable[RawSymbol]) -> list[RawSymbol]:
    """``symbols`` sorted by start address, in GIL-friendly steps (runs, then one merge of runs)."""
    items = symbols if isinstance(symbols, list) else list(symbols)
    if len(items) <= _SORT_RUN:
        return sorted(items, key=_start)
    runs: list[RawSymbol] = []
    for i in range(0, len(items), _SORT_RUN):
        runs.extend(sorted(items[i : i + _SORT_RUN], key=_start))
    runs.sort(key=_start)  # timsort only merges the sorted runs: a fraction of a full sort
    return runs


def _alias_rank(sym: RawSymbol) -> tuple[int, int, int, int, str]:
    name = sym[2]
    underscores = len(name) - len(name.lstrip("_"))
    return (0 if sym[1] else 1, underscores, _BIND_RANK.get(sym[3], 3), len(name), name)


class AddressTable:
    """Functions of one symbol source, sorted by start address."""

    __slots__ = ("_by_canonical", "_by_name", "canonical", "ends", "names", "source", "starts")

    def __init__(self, source: str, symbols: Iterable[RawSymbol]) -> None:
        self.source = source
        ordered = sorted_by_start(symbols)
        starts: list[int] = []
        sizes: list[int] = []
        limits: list[int] = []
        names: list[str] = []
        i, n = 0, len(ordered)
        while i < n:
            sym = ordered[i]
            j = i + 1
            while j < n and ordered[j][0] == sym[0]:
                j += 1
            if j > i + 1:  # aliases: rank only these (most addresses have one symbol)
                group = ordered[i:j]
                sym = min(group, key=_alias_rank)
                size = sym[1] or max(g[1] for g in group)
            else:
                size = sym[1]
            starts.append(sym[0])
            sizes.append(size)
            limits.append(sym[4])
            names.append(sym[2])
            i = j
        ends: list[int] = []
        n = len(starts)
        for i in range(n):
            if sizes[i]:
                ends.append(starts[i] + sizes[i])
                continue
            nxt = starts[i + 1] if i + 1 < n else 0
            limit = limits[i]
            if nxt and limit:
                ends.append(min(nxt, limit))
            else:
                ends.append(nxt or limit or starts[i] + 1)
        self.starts = starts
        self.ends = ends
        self.names = names
        self.canonical: list[str | None] = [None] * n
        self._by_name: dict[str, int] | None = None
        self._by_canonical: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.starts)

    def find(self, address: int) -> int:
        """Index of the function containing ``address``, or -1."""
        i = bisect_right(self.starts, address) - 1
        if i < 0:
            return -1
        if address < self.ends[i]:
            return i
        ends = self.ends
        for j in range(i - 1, max(-1, i - 1 - _NESTED_LOOKBACK), -1):
            if address < ends[j]:
                return j
        return -1

    def canonical_name(self, i: int) -> str:
        name = self.canonical[i]
        if name is None:
            name = self.canonical[i] = demangle(self.names[i])
        return name

    def find_name(self, name: str) -> int:
        """Index of the function named ``name`` (raw symbol first, then canonical name), or -1."""
        if self._by_name is None:
            by_name: dict[str, int] = {}
            for i, raw in enumerate(self.names):
                by_name.setdefault(raw, i)
            self._by_name = by_name
        i = self._by_name.get(name, -1)
        if i >= 0:
            return i
        if self._by_canonical is None:
            by_canon: dict[str, int] = {}
            for i in range(len(self.names)):
                by_canon.setdefault(self.canonical_name(i), i)
            self._by_canonical = by_canon
        return self._by_canonical.get(name, -1)


K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A dict bounded by entry count; the least recently used entry is evicted first."""

    __slots__ = ("_data", "_on_evict", "evictions", "max_entries")

    def __init__(self, max_entries: int, *, on_evict: Callable[[V], None] | None = None) -> None:
        if max_entries < 1:
            raise ValueError(f"LRU size must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._data: OrderedDict[K, V] = OrderedDict()
        self._on_evict = on_evict
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: K) -> bool:
        return key in self._data

    def get(self, key: K) -> V | None:
        data = self._data
        value = data.get(key)
        if value is not None:
            data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        data = self._data
        data[key] = value
        data.move_to_end(key)
        while len(data) > self.max_entries:
            _, old = data.popitem(last=False)
            self.evictions += 1
            if self._on_evict is not None:
                self._on_evict(old)

    def pop(self, key: K) -> V | None:
        return self._data.pop(key, None)

    def clear(self) -> None:
        while self._data:
            _, old = self._data.popitem(last=False)
            if self._on_evict is not None:
                self._on_evict(old)
