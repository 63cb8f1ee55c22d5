"""Function symbols of one source as parallel columns, and the name views they carry.

Why this module exists: split from canonical/addrindex.py (which re-exports
it), it holds the shapes a symbol source is handed over in, before it is
sorted into an :class:`~stellaops_runtime.canonical.addrindex.AddressTable`:
:class:`SymbolColumns` (starts, sizes, names, bindings, sections, as the ELF
reader canonical/symtab.py produces them, never an object per symbol), names
kept as string-table offsets and decoded only when asked for
(:class:`StrtabNames`), and the views that pick or gather entries of a column
without copying it. Pure: no I/O.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

__all__ = ["Gathered", "Names", "PickedNames", "RawSymbol", "StrtabNames", "SymbolColumns", "gather", "take"]

# (start, size, raw name, binding, section end or 0 when unknown)
RawSymbol = tuple[int, int, str, int, int]


class Gathered:
    """``seq[idx[i]]`` by ``i``, without copying: the per-symbol columns few symbols need (binding,
    section), read from the whole section's column through the record numbers kept."""

    __slots__ = ("idx", "seq")

    def __init__(self, seq: Sequence[int], idx: Sequence[int]) -> None:
        self.seq = seq
        self.idx = idx

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> int:
        return self.seq[self.idx[i]]


class Names(Protocol):
    """Raw names by index: a list, or a view that decodes on demand."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int, /) -> str: ...

    def __iter__(self) -> Iterator[str]: ...


def take(seq: Sequence[int], idx: list[int]) -> list[int]:
    """``[seq[i] for i in idx]`` in one C call."""
    if len(idx) > 1:
        return list(operator.itemgetter(*idx)(seq))
    return [seq[i] for i in idx]


def gather(column: Sequence[int] | Gathered, idx: list[int]) -> list[int]:
    """``[column[i] for i in idx]`` in C calls, through a :class:`Gathered` view's own columns."""
    if isinstance(column, Gathered):
        return take(column.seq, take(column.idx, idx))
    return take(column, idx)


class StrtabNames:
    """Raw symbol names as offsets into a string table, decoded when asked for (most never are)."""

    __slots__ = ("_find", "max_bytes", "offsets", "strtab")

    def __init__(self, strtab: bytes, offsets: list[int], max_bytes: int) -> None:
        self.strtab = strtab
        self.offsets = offsets
        self.max_bytes = max_bytes
        self._find = strtab.find

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> str:
        off = self.offsets[i]
        end = self._find(b"\0", off, off + self.max_bytes)
        if end < 0:
            end = min(len(self.strtab), off + self.max_bytes)
        try:  # strict UTF-8 first: the decoder's fast path, the same text when it succeeds
            return self.strtab[off:end].decode()
        except UnicodeDecodeError:
            return self.strtab[off:end].decode("utf-8", "replace")

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self.offsets)))


class PickedNames:
    """The names of a table's entries: entry ``i`` is symbol ``picks[i]`` of the source's names.

    A pick past the source's last record is an alias group not decided yet
    (canonical/aliasgroups.py): ``settle(picks, i)`` decides it, stores and returns
    the record.
    """

    __slots__ = ("names", "picks", "settle")

    def __init__(
        self, names: Names, picks: list[int], settle: Callable[[list[int], int], int] | None = None
    ) -> None:
        self.names = names
        self.picks = picks
        self.settle = settle

    def __len__(self) -> int:
        return len(self.picks)

    def __getitem__(self, i: int) -> str:
        try:
            return self.names[self.picks[i]]
        except IndexError:
            n = len(self.picks)
            if self.settle is None or not -n <= i < n:
                raise
            return self.names[self.settle(self.picks, i % n)]

    def __iter__(self) -> Iterator[str]:
        if self.settle is not None:
            return (self[i] for i in range(len(self.picks)))
        names = self.names
        return (names[p] for p in self.picks)


class SymbolColumns:
    """Function symbols of one source as parallel columns, in any order (what the ELF reader produces).

    ``names`` may decode lazily (:class:`StrtabNames`); ``limit_of(i)`` is the end of
    symbol ``i``'s section (0 when unknown), needed only for a symbol without a size.
    """

    __slots__ = ("binds", "names", "section_ends", "sections", "sizes", "starts")

    def __init__(
        self,
        starts: list[int],
        sizes: list[int],
        names: Names,
        binds: Sequence[int] | Gathered,
        sections: Sequence[int] | Gathered,
        section_ends: Sequence[int],
    ) -> None:
        self.starts = starts
        self.sizes = sizes
        self.names = names
        self.binds = binds
        self.sections = sections  # per symbol: an index into section_ends
        self.section_ends = section_ends

    @classmethod
    def from_raw(cls, symbols: Iterable[RawSymbol]) -> SymbolColumns:
        items = symbols if isinstance(symbols, list) else list(symbols)
        if not items:
            return cls([], [], [], [], [], [])
        starts, sizes, names, binds, limits = (list(c) for c in zip(*items, strict=True))
        return cls(starts, sizes, names, binds, range(len(limits)), limits)

    def __len__(self) -> int:
        return len(self.starts)

    def limit_of(self, i: int) -> int:
        sec = self.sections[i]
        return self.section_ends[sec] if sec < len(self.section_ends) else 0
