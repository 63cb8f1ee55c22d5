"""The warm lookup of one Binary: a file offset to (symbol, offset, function ID) in a few list reads.

Why this module exists: once a file is indexed, most of the cost of
resolving one more offset in it was not the search but what surrounded it
(a ``Hit`` object, a validated ``format_function_id``, a counter key built per
call, the segment found by a method). :class:`QuickLookup` keeps what a warm
lookup needs, flattened, once per Binary:

- the file-offset ranges of the PT_LOADs with their ``vaddr - offset`` delta,
  executable ones first (``ElfLayout.vaddr_of``'s answer, see
  :func:`load_ranges`);
- the Binary's loaded address tables, best source first, each with its
  source and counter key.

(A cache of function-ID prefixes ``<build-id>:<symbol>+`` per symbol start was
tried: it saved about 2 % of a warm lookup's instructions and held up to one
string per function of every cached file, so it is not kept. An ID's text
depends on the offset too, and whole answers per offset are the frame
cache's job, canonical/frames.py.)

:meth:`QuickLookup.find` answers only what a *loaded* table names, exactly as
``Binary.lookup`` would (loaded tables are searched in the same order, and a
lazily loaded source is only ever appended, ranking lower). Everything else
(an offset in no segment, a miss that may need DWARF or ``.gopclntab``, a
failure to explain) returns None and the caller asks the Binary, then calls
:meth:`QuickLookup.refresh` if a lazy source was loaded. Both the
Symbolizer's warm path (canonical/recentfiles.py) and the FrameCanonicalizer
(canonical/frames.py) use it; a test checks its answers equal the Binary's
for every function of real binaries (tests/integration/test_canonical_warm.py).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from itertools import pairwise
from typing import TYPE_CHECKING

from stellaops_runtime.canonical.addrindex import AddressTable
from stellaops_runtime.canonical.elflayout import PF_X, ElfLayout
from stellaops_runtime.canonical.function_id import format_function_id
from stellaops_runtime.canonical.resolution import Resolution
from stellaops_runtime.canonical.symnative import answer_first

if TYPE_CHECKING:
    from stellaops_runtime.canonical.binary import Binary

__all__ = ["QuickLookup", "WarmAnswer", "load_ranges"]

_HitSink = Callable[[str], object]

# (symbol, offset from the symbol's start, function ID, source, counter key "resolved_<source>")
WarmAnswer = tuple[str, int, str, str, str]

# (table, counter key, source)
_Table = tuple[AddressTable, str, str]
# The defaults of a Resolution's fields after the first 8: the native batch copies them from here
_TEMPLATE = Resolution("")


def load_ranges(layout: ElfLayout) -> list[tuple[int, int, int]]:
    """(file offset, end, vaddr - offset) of each PT_LOAD, executable ones first when none overlap.

    ``ElfLayout.vaddr_of`` takes the first segment in address order that holds
    an offset; segments that do not overlap in the file give the same answer in
    any order, and frames are nearly all in the executable one.
    """
    loads = layout.loads
    ranges = [(s.offset, s.offset + s.filesz, s.vaddr - s.offset) for s in loads]
    spans = sorted((lo, hi) for lo, hi, _ in ranges if hi > lo)
    if all(a[1] <= b[0] for a, b in pairwise(spans)):
        order = sorted(range(len(loads)), key=lambda i: not loads[i].flags & PF_X)
        ranges = [ranges[i] for i in order]
    return ranges


class QuickLookup:
    """A Binary's loaded tables and segments, flattened for warm lookups (see the module docstring)."""

    __slots__ = ("binary", "build_id", "ranges", "tables")

    def __init__(self, binary: Binary) -> None:
        format_function_id(binary.build_id, "", 0)  # a build-id unfit for an ID raises ValueError, once
        self.binary = binary
        self.build_id = binary.build_id
        self.ranges = load_ranges(binary.layout)
        self.tables: list[_Table] = []
        self.refresh()

    def refresh(self) -> None:
        """Take the Binary's loaded tables again (after a miss made it load a lazy source)."""
        known = {id(t[0]): t for t in self.tables}
        self.tables = [
            known.get(id(t)) or (t, f"resolved_{t.source}", str(t.source)) for t in self.binary.tables
        ]

    @property
    def stale(self) -> bool:
        """Whether the Binary has loaded a source since :meth:`refresh` (its answers stay right: see
        the module docstring; refreshing only lets the new source answer here too)."""
        return len(self.tables) != len(self.binary.tables)

    def vaddr(self, file_offset: int) -> int | None:
        """The link-time address of ``file_offset``, or None when no PT_LOAD holds it."""
        for lo, hi, delta in self.ranges:
            if lo <= file_offset < hi:
                return file_offset + delta
        return None

    def find(self, file_offset: int) -> WarmAnswer | None:
        """What a loaded table says about ``file_offset``; None when the Binary must be asked."""
        for lo, hi, delta in self.ranges:
            if lo <= file_offset < hi:
                vaddr = file_offset + delta
                break
        else:
            return None
        for t, key, source in self.tables:
            starts = t.starts
            i = bisect_right(starts, vaddr) - 1
            if i < 0:
                continue
            if vaddr >= t.ends[i]:
                i = t.find(vaddr)  # nested functions: a few entries back
                if i < 0:
                    continue
            symbol = t.canonical[i]
            if symbol is None:
                symbol = t.canonical_name(i)
            offset = vaddr - starts[i]
            return symbol, offset, f"{self.build_id}:{symbol}+{hex(offset)}", source, key
        return None

    def answer_many(
        self, path: str, offsets: list[int], labels: list[str], hit: _HitSink
    ) -> list[Resolution | None]:
        """:meth:`find` for each offset, as the Resolution ``resolve_file`` makes of it (None where
        :meth:`find` gives None); ``hit(counter key)`` per answer.

        One loop with :meth:`find`'s body inlined (``resolve_file_many``'s warm
        path, canonical/recentfiles.py): the call and the tuple per answer were
        ~4 % of a cold batch's first lookups (libLLVM-14: 287.8 -> 276.6 M
        instructions, docs/benchmarks.md). The first range and the first table,
        where nearly every offset lands, are read once before the loop rather
        than through the inner loops per offset (first lookups 276.4 -> 263.4 M);
        the others are tried after them, in their order. Same tables,
        same order, same answers: tests/integration/test_symbolize_warm.py
        compares a batch with one ``resolve_file`` per offset on real files,
        tests/unit/test_alias_pairs_generated.py with :meth:`find` over
        generated tables and hostile offsets (a change to one loop must be
        made to the other).

        With the native extension (canonical/_symindex.c, ``answer_first``) the
        first range and the first table are searched in C, the ID formatted
        there and the Resolution made there; what they do not answer is left to
        this loop. Same answers: tests/integration/test_symindex_native.py.
        """
        native = answer_first()
        if native is not None and self.ranges and self.tables:
            lo0, hi0, delta0 = self.ranges[0]
            t0, key0, source0 = self.tables[0]
            if max(abs(lo0), abs(hi0), abs(delta0)) < 2**63:
                first = native(
                    offsets, labels, lo0, hi0, delta0, t0.starts, t0.ends, t0.canonical, t0.canonical_name,
                    Resolution, path, self.build_id, source0, hit, key0, _TEMPLATE,
                )  # fmt: skip
                if first is not None:
                    rest = [k for k, r in enumerate(first) if r is None]
                    if rest:  # other ranges and tables (the first are tried again: they miss again)
                        more = self._answer_many(
                            path, [offsets[k] for k in rest], [labels[k] for k in rest], hit
                        )
                        for k, r in zip(rest, more, strict=True):
                            first[k] = r
                    return first
        return self._answer_many(path, offsets, labels, hit)

    def _answer_many(
        self, path: str, offsets: list[int], labels: list[str], hit: _HitSink
    ) -> list[Resolution | None]:
        """:meth:`answer_many` in Python (without the native extension, and for what it leaves)."""
        out: list[Resolution | None] = []
        append = out.append
        ranges, tables, bid = self.ranges, self.tables, self.build_id
        if not ranges or not tables:
            for _ in zip(offsets, labels, strict=True):
                append(None)
            return out
        lo0, hi0, delta0 = ranges[0]
        more_ranges = ranges[1:]
        t0, key0, source0 = tables[0]
        starts0, ends0, canonical0 = t0.starts, t0.ends, t0.canonical
        more_tables = tables[1:]
        for file_offset, label in zip(offsets, labels, strict=True):
            if lo0 <= file_offset < hi0:  # the first range (executable): nearly every offset
                vaddr = file_offset + delta0
            else:
                for lo, hi, delta in more_ranges:
                    if lo <= file_offset < hi:
                        vaddr = file_offset + delta
                        break
                else:
                    append(None)
                    continue
            i = bisect_right(starts0, vaddr) - 1  # the first table: nearly every answer
            if i >= 0 and (vaddr < ends0[i] or (i := t0.find(vaddr)) >= 0):
                symbol = canonical0[i]
                if symbol is None:
                    symbol = t0.canonical_name(i)
                offset = vaddr - starts0[i]
                append(
                    Resolution(
                        label,
                        path,
                        bid,
                        symbol,
                        offset,
                        f"{bid}:{symbol}+{hex(offset)}",
                        source0,
                        file_offset,
                    )
                )
                hit(key0)
                continue
            for t, key, source in more_tables:
                starts = t.starts
                i = bisect_right(starts, vaddr) - 1
                if i < 0:
                    continue
                if vaddr >= t.ends[i]:
                    i = t.find(vaddr)  # nested functions: a few entries back
                    if i < 0:
                        continue
                symbol = t.canonical[i]
                if symbol is None:
                    symbol = t.canonical_name(i)
                offset = vaddr - starts[i]
                append(
                    Resolution(
                        label, path, bid, symbol, offset, f"{bid}:{symbol}+{hex(offset)}", source, file_offset
                    )
                )
                hit(key)
                break
            else:
                append(None)
        return out
