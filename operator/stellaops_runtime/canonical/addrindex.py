"""Address -> function lookup over sorted arrays (the bounded LRU the caches use is re-exported).

A symbol source (``.symtab``, ``.dynsym``, DWARF, ``.gopclntab``) becomes one
:class:`AddressTable`: parallel lists of start addresses, end addresses and raw
names, sorted by start, searched with ``bisect``. It is built once per build-id
and kept in an LRU, so a warm lookup is one bisect plus a list index.

It is built column-wise, never with an object per symbol: the ELF reader
(canonical/symtab.py) hands over :class:`SymbolColumns` whose names are
string-table offsets (:class:`StrtabNames`, decoded on first use; both in
canonical/symcolumns.py, re-exported here); indices
are sorted by start (``sorted(range(n), key=starts.__getitem__)``), ends come
from one ``map`` over starts and sizes, and only alias groups and symbols
without a size are visited in Python. DWARF and Go tables still hand
over per-symbol tuples (:data:`RawSymbol`), turned into columns first.

Rules, chosen so the same address always gives the same name:

- Aliases (several symbols at one address, e.g. libc's ``read``/``__read``/
  ``__libc_read``) keep one name: fewest leading underscores, then GLOBAL over
  WEAK over LOCAL, then the shortest, then the alphabetically first. Where the
  winner cannot change the entry's end, it is chosen at the entry's first
  lookup rather than while indexing (canonical/aliasgroups.py).
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
pipeline thread measured on a loaded 2-core machine; 44 ms in runs of 32,768).
Runs are 65,536 entries since issue 12's cold-speed work: containerd's and
libLLVM's tables are then sorted by one call rather than two runs and a
merge that computes every key again (docs/symbolization.md has the pause
measured). The column passes (``map``, ``compress``) are single C calls too,
each one pass over the symbols without a sort.
"""

from __future__ import annotations

import operator
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from itertools import compress, islice

from stellaops_runtime.canonical.aliasgroups import PendingAliases, best_member
from stellaops_runtime.canonical.demangle import demangle_uncached
from stellaops_runtime.canonical.lru import LRU
from stellaops_runtime.canonical.symcolumns import (
    Gathered,
    Names,
    PickedNames,
    RawSymbol,
    StrtabNames,
    SymbolColumns,
    gather,
    take,
)

__all__ = [
    "LRU",
    "STB_GLOBAL",
    "STB_LOCAL",
    "STB_WEAK",
    "AddressTable",
    "Gathered",
    "RawSymbol",
    "StrtabNames",
    "SymbolColumns",
    "sorted_by_start",
]

STB_LOCAL = 0
STB_GLOBAL = 1
STB_WEAK = 2

_NESTED_LOOKBACK = 8
# Larger alias groups are decided while indexing (on the parse worker, canonical/parseworker.py):
# deciding one at a lookup takes a pass over its members on the caller's thread (a hostile table
# could put every symbol at one address), so at most 32 names are ranked on one first lookup. C and
# C++ groups have 2-4 members; identical-code folding makes larger ones: 417 of the 4,950 groups of
# the Rust toolchain's librustc_driver have 9-196 members, 356 of them 9-32 (when only groups of up
# to 8 were left to their first read, deciding these cost its cold batch ~3 %, docs/benchmarks.md).
_LAZY_GROUP_MAX = 32
_SORT_RUN = 65_536


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


def _order_by_start(starts: Sequence[int]) -> tuple[list[int], list[int]]:
    """(indices of ``starts`` in start order, the starts in that order); stable for equal starts.

    Sorted in runs of ``_SORT_RUN``, then merged, so no single C call holds the
    GIL for long. (Packing start and index into one int to sort without a key
    was measured slower: addresses then no longer fit one machine digit, and
    CPython's sort has a fast path for those.)
    """
    key = starts.__getitem__
    n = len(starts)
    if n <= _SORT_RUN:
        order = sorted(range(n), key=key)
    else:
        order = []
        for i in range(0, n, _SORT_RUN):
            order.extend(sorted(range(i, min(n, i + _SORT_RUN)), key=key))
        order.sort(key=key)  # merges the sorted runs
    return order, take(starts, order)


def _zero_positions(sizes: list[int]) -> list[int]:
    """Indices of the zeros in ``sizes`` (symbols without a size: few), found by C-level scans."""
    out: list[int] = []
    if 0 in sizes:
        i = sizes.index(0)
        while True:
            out.append(i)
            try:
                i = sizes.index(0, i + 1)
            except ValueError:
                return out
    return out


class AddressTable:
    """Functions of one symbol source, sorted by start address."""

    __slots__ = (
        "_aliases",
        "_by_canonical",
        "_by_name",
        "_strtab",
        "canonical",
        "ends",
        "names",
        "source",
        "starts",
    )

    def __init__(self, source: str, symbols: Iterable[RawSymbol] | SymbolColumns) -> None:
        self.source = source
        cols = symbols if isinstance(symbols, SymbolColumns) else SymbolColumns.from_raw(symbols)
        order, ordered_starts = _order_by_start(cols.starts)
        n = len(order)
        # Positions whose start equals the previous one's: aliases (most addresses have one symbol).
        # Looked for only when there is one: ``any`` stops at the first, and a table without
        # aliases (Go's) is one comparison per entry, without a list of them.
        same: list[int] = []
        if any(map(operator.eq, ordered_starts, islice(ordered_starts, 1, None))):
            same = list(
                compress(range(1, n), map(operator.eq, ordered_starts, islice(ordered_starts, 1, None)))
            )
        aliases: PendingAliases | None = None
        if same:
            picks, starts, sizes, aliases = self._pick_aliases(cols, order, ordered_starts, same)
        else:
            picks, starts = order, ordered_starts
            sizes = take(cols.sizes, order)
        m = len(starts)
        ends = list(map(operator.add, starts, sizes))
        for i in _zero_positions(sizes):  # no size: to the next symbol / section end
            nxt = starts[i + 1] if i + 1 < m else 0
            limit = cols.limit_of(picks[i])
            if nxt and limit:
                ends[i] = min(nxt, limit)
            else:
                ends[i] = nxt or limit or starts[i] + 1
        self.starts = starts
        self.ends = ends
        self._aliases = aliases
        self.names: Names = PickedNames(cols.names, picks, aliases.settle if aliases is not None else None)
        self.canonical: list[str | None] = [None] * m
        # The first lookup of an entry decodes its name straight from the string table (no calls
        # through the Names views): a good part of a cold lookup (bench/symbolize_batch.py).
        raw = cols.names
        self._strtab: tuple[bytes, Sequence[int], Sequence[int], int] | None = (
            (raw.strtab, raw.offsets, picks, raw.max_bytes) if isinstance(raw, StrtabNames) else None
        )
        self._by_name: dict[str, int] | None = None
        self._by_canonical: dict[str, int] | None = None

    @staticmethod
    def _pick_aliases(
        cols: SymbolColumns, order: list[int], ordered_starts: list[int], same: list[int]
    ) -> tuple[list[int], list[int], list[int], PendingAliases | None]:
        """One entry per start (picks, starts, sizes), and the alias groups left pending.

        A group (of at most ``_LAZY_GROUP_MAX`` members) whose members with a
        size all have one size keeps that size whichever member wins, so its
        winner is chosen at the first read of its name (canonical/aliasgroups.py:
        its pick is stored past the last record); the other groups are decided
        here by the same rule. Only the groups are visited in
        Python; the rest is kept with one ``compress`` over a byte mask. ``order``
        becomes the picks (changed in place).
        """
        names, sizes_of, binds = cols.names, cols.sizes, cols.binds
        base = len(names)
        n = len(order)
        keep = bytearray(b"\x01") * n
        sizes = take(sizes_of, order)
        pending: list[int] = []  # members with a size of the pending groups, group after group
        bounds = [0]
        k, nsame = 0, len(same)
        while k < nsame:
            first = same[k] - 1  # the group [first, last) of equal starts
            last = same[k] + 1
            k += 1
            while k < nsame and same[k] == last:
                last += 1
                k += 1
            if last - first == 2 and sizes[first] and sizes[first] == sizes[first + 1]:
                # Most groups: two members of one size (C1/C2, D1/D2, read/__read). The branch
                # below with scalars: both pending, in table order; the entry's size unchanged.
                pending.append(order[first])
                pending.append(order[first + 1])
                order[first] = base + len(bounds) - 1
                bounds.append(len(pending))
                keep[last - 1] = 0
                continue
            group = sizes[first:last]
            largest = max(group)
            members = order[first:last]
            if (
                last - first <= _LAZY_GROUP_MAX
                and largest
                and group.count(largest) + group.count(0) == last - first
            ):
                pending += compress(members, group) if 0 in group else members
                order[first] = base + len(bounds) - 1  # past the last record: see aliasgroups.py
                bounds.append(len(pending))
                sizes[first] = largest
            else:  # the winner decides the size (or, without one, the section that bounds the end)
                best = best_member(members, group, [binds[o] for o in members], names.__getitem__)
                order[first] = best
                sizes[first] = sizes_of[best] or largest
            keep[first + 1 : last] = bytes(last - first - 1)
        aliases = (
            PendingAliases(base, pending, gather(binds, pending), bounds, names.__getitem__)
            if pending
            else None
        )
        return (
            list(compress(order, keep)),
            list(compress(ordered_starts, keep)),
            list(compress(sizes, keep)),
            aliases,
        )

    @classmethod
    def restored(cls, source: str, starts: list[int], ends: list[int], names: StrtabNames) -> AddressTable:
        """A table as :meth:`saved` described it (canonical/indexcache.py): entry ``i`` is named
        ``names[i]``; ``starts`` sorted, one entry per start."""
        t = cls.__new__(cls)
        t.source = source
        t.starts = starts
        t.ends = ends
        t.names = names
        t.canonical = [None] * len(starts)
        t._strtab = (names.strtab, names.offsets, range(len(starts)), names.max_bytes)
        t._by_name = None
        t._by_canonical = None
        t._aliases = None
        return t

    def saved(self) -> tuple[bytes, list[int], int] | None:
        """(string table, name offset of each entry, name length cap) to rebuild the table with
        :meth:`restored`; None when its names are not read from a string table (DWARF, Go)."""
        st = self._strtab
        if st is None:
            return None
        strtab, offsets, picks, max_bytes = st
        if self._aliases is not None:
            self._aliases.settle_all(picks)
        return strtab, take(offsets, list(picks)), max_bytes

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
            st = self._strtab
            if st is None:
                raw = self.names[i]
            else:  # StrtabNames.__getitem__, inlined
                strtab, offsets, picks, max_bytes = st
                try:
                    off = offsets[picks[i]]
                except IndexError:  # an alias group not decided yet (canonical/aliasgroups.py)
                    off = offsets[self._settle(picks, i)]
                end = strtab.find(b"\0", off, off + max_bytes)
                if end < 0:
                    end = min(len(strtab), off + max_bytes)
                try:  # strict UTF-8 first: the decoder's fast path, the same text when it succeeds
                    raw = strtab[off:end].decode()
                except UnicodeDecodeError:
                    raw = strtab[off:end].decode("utf-8", "replace")
            name = self.canonical[i] = demangle_uncached(raw)
        return name

    def _settle(self, picks: Sequence[int], i: int) -> int:
        """The record naming entry ``i`` when its pick is past the last record: its alias group,
        decided now."""
        aliases = self._aliases
        if aliases is None or not isinstance(picks, list):
            raise ValueError(f"entry {i} has no record and no pending alias group")
        return aliases.settle(picks, i)

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
