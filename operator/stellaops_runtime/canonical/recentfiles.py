"""``resolve_file``'s warm path: the Binary last resolved at a path, trusted without ``stat`` for a moment.

Why this module exists: a warm ``Symbolizer.resolve_file`` used to ``stat``
its file on every call to find its cache key, and on a loaded machine one
``stat`` (2-10 us) costs several times the rest of a warm lookup (one
``bisect`` and a memoized name). :class:`RecentFiles` remembers, per
(root, path), the Binary last resolved there and answers from it for
``recheck_seconds`` (default 1 s); after that the next call takes the full
path (``stat``, identity, cache) again. So a file replaced at a path is seen
at most ``recheck_seconds`` later; ``recheck_seconds=0`` keeps no entries.

An entry is not used when the Symbolizer's binary cache evicted anything
since it was made (the Binary may be closed), or when the caller expects
another build-id. :meth:`RecentFiles.resolve` answers only what a loaded table
names; everything else (no symbol, a lazy source to load, file:line) goes
through ``symbolizer.fill`` on the remembered Binary, still without a ``stat``.

Warm answers are counted without taking the Symbolizer's lock each time:
their counter keys go to a deque (``append`` is atomic) that :meth:`RecentFiles.flush`
adds to the counters every 4,096 answers and whenever ``Symbolizer.stats()``
is read, so the counts read are exact.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, deque
from contextlib import AbstractContextManager
from itertools import pairwise
from time import monotonic

from stellaops_runtime.canonical.addrindex import AddressTable
from stellaops_runtime.canonical.binary import Binary
from stellaops_runtime.canonical.elflayout import PF_X
from stellaops_runtime.canonical.function_id import format_function_id
from stellaops_runtime.canonical.resolution import Resolution

DEFAULT_RECHECK_SECONDS = 1.0
_FLUSH_AT = 4096


class Recent:
    """One remembered (root, path): its Binary, until when, and what a lookup needs, flattened."""

    __slots__ = ("binary", "build_id", "deadline", "evictions", "ranges", "tables")

    def __init__(self, binary: Binary, deadline: float, evictions: int) -> None:
        format_function_id(binary.build_id, "", 0)  # a build-id unfit for an ID raises here, once
        self.binary = binary
        self.build_id = binary.build_id
        self.deadline = deadline
        self.evictions = evictions
        self.ranges = _load_ranges(binary)
        self.tables: list[tuple[AddressTable, str]] = []
        self.refresh_tables()

    def refresh_tables(self) -> None:
        """Take the Binary's loaded tables again (after a miss made it load a lazy source).

        Loaded tables, best first, with their counter. A lazy source loaded later
        is appended (ranks lower), so a hit here is the hit the Binary itself
        would give; a miss goes to the Binary.
        """
        self.tables = [(t, f"resolved_{t.source}") for t in self.binary.tables]


def _load_ranges(binary: Binary) -> list[tuple[int, int, int]]:
    """(file offset, end, vaddr - offset) of each PT_LOAD, executable ones first when none overlap.

    ``ElfLayout.vaddr_of`` takes the first segment in address order that holds
    an offset; segments that do not overlap in the file give the same answer in
    any order, and frames are nearly all in the executable one.
    """
    loads = binary.layout.loads
    ranges = [(s.offset, s.offset + s.filesz, s.vaddr - s.offset) for s in loads]
    spans = sorted((lo, hi) for lo, hi, _ in ranges if hi > lo)
    if all(a[1] <= b[0] for a, b in pairwise(spans)):
        order = sorted(range(len(loads)), key=lambda i: not loads[i].flags & PF_X)
        ranges = [ranges[i] for i in order]
    return ranges


class RecentFiles:
    """(root, path) -> :class:`Recent`, each trusted for ``recheck_seconds``; at most ``max_entries``."""

    __slots__ = ("_entries", "_hits", "counters", "lock", "max_entries", "recheck_seconds")

    def __init__(
        self,
        lock: AbstractContextManager[object],
        counters: Counter[str],
        recheck_seconds: float = DEFAULT_RECHECK_SECONDS,
        max_entries: int = 4096,
    ) -> None:
        self.lock = lock  # guards ``counters``, shared with the Symbolizer
        self.counters = counters
        self.recheck_seconds = recheck_seconds
        self.max_entries = max_entries
        self._entries: dict[tuple[str, str], Recent] = {}
        # Counter keys of warm answers not yet added to ``counters``: deque.append is atomic,
        # a lock per answer is not free. Added by flush() (stats(), and every _FLUSH_AT answers).
        self._hits: deque[str] = deque()

    def flush(self) -> None:
        """Add the warm answers counted so far to ``counters``."""
        hits = self._hits
        keys = [hits.popleft() for _ in range(len(hits))]  # popleft is atomic: appends go on meanwhile
        if keys:
            with self.lock:
                self.counters.update(keys)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, root: str, path: str, evictions: int, expected_build_id: str = "") -> Recent | None:
        """The entry for (root, path) if still trusted, else None (the caller takes the full path)."""
        r = self._entries.get((root, path))
        if (
            r is None
            or r.deadline <= monotonic()
            or r.evictions != evictions
            or (expected_build_id and expected_build_id != r.build_id)
        ):
            return None
        return r

    def resolve(
        self,
        root: str,
        path: str,
        file_offset: int,
        input: str,
        evictions: int,
        expected_build_id: str,
    ) -> Resolution | Recent | None:
        """The warm path in one call.

        A :class:`Resolution` (counted, see :meth:`flush`) when a
        loaded table of the trusted entry names the offset; the :class:`Recent`
        entry when it is trusted but its loaded tables miss (the caller asks
        its Binary); None when there is no trusted entry (the full path).
        """
        r = self._entries.get((root, path))
        if (
            r is None
            or r.deadline <= monotonic()
            or r.evictions != evictions
            or (expected_build_id and expected_build_id != r.build_id)
        ):
            return None
        for lo, hi, delta in r.ranges:
            if lo <= file_offset < hi:
                vaddr = file_offset + delta
                break
        else:
            return r
        for t, key in r.tables:
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
            bid = r.build_id
            res = Resolution(
                input or f"{path}+{hex(file_offset)}",
                path,
                bid,
                symbol,
                offset,
                f"{bid}:{symbol}+{hex(offset)}",
                t.source,
                file_offset,
            )
            hits = self._hits
            hits.append(key)
            if len(hits) >= _FLUSH_AT:
                self.flush()
            return res
        return r

    def resolve_many(
        self,
        root: str,
        path: str,
        offsets: list[int],
        labels: list[str],
        evictions: int,
        expected_build_id: str,
    ) -> tuple[Recent | None, list[Resolution | None]]:
        """:meth:`resolve` for a batch of offsets in one file: the entry is checked once.

        (None, []) when there is no trusted entry; else the entry and, per
        offset, its Resolution or None where the loaded tables miss. The loop is
        :meth:`resolve`'s, inlined: a call per offset is a good part of a warm lookup.
        """
        r = self.get(root, path, evictions, expected_build_id)
        if r is None:
            return None, []
        out: list[Resolution | None] = []
        append = out.append
        ranges, tables, bid, hits = r.ranges, r.tables, r.build_id, self._hits
        for file_offset, label in zip(offsets, labels, strict=True):
            for lo, hi, delta in ranges:
                if lo <= file_offset < hi:
                    vaddr = file_offset + delta
                    break
            else:
                append(None)
                continue
            for t, key in tables:
                starts = t.starts
                i = bisect_right(starts, vaddr) - 1
                if i < 0:
                    continue
                if vaddr >= t.ends[i]:
                    i = t.find(vaddr)
                    if i < 0:
                        continue
                symbol = t.canonical[i]
                if symbol is None:
                    symbol = t.canonical_name(i)
                offset = vaddr - starts[i]
                append(
                    Resolution(
                        label,
                        path,
                        bid,
                        symbol,
                        offset,
                        f"{bid}:{symbol}+{hex(offset)}",
                        t.source,
                        file_offset,
                    )
                )
                hits.append(key)
                break
            else:
                append(None)
        if len(hits) >= _FLUSH_AT:
            self.flush()
        return r, out

    def put(self, root: str, path: str, binary: Binary, evictions: int) -> None:
        if self.recheck_seconds <= 0:
            return
        try:
            entry = Recent(binary, monotonic() + self.recheck_seconds, evictions)
        except ValueError:  # a build-id no function ID can carry: always the full path
            return
        if len(self._entries) >= self.max_entries:
            self._entries = {}  # bounded: start over rather than track recency on the warm path
        self._entries[(root, path)] = entry

    def clear(self) -> None:
        self._entries = {}
