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
another build-id. ``Symbolizer.resolve_file`` answers from an entry only what a
loaded table names, through the Binary's warm lookup (canonical/quicklookup.py: segments
and tables flattened);
everything else (no symbol, a lazy source to load, file:line) goes through
``fill`` (canonical/fill.py) on the remembered Binary, still without a ``stat``.

Warm answers are counted without taking the Symbolizer's lock each time:
their counter keys go to a deque (``append`` is atomic) that :meth:`RecentFiles.flush`
adds to the counters every 4,096 answers and whenever ``Symbolizer.stats()``
is read, so the counts read are exact.
"""

from __future__ import annotations

from collections import Counter, deque
from contextlib import AbstractContextManager
from time import monotonic

from stellaops_runtime.canonical.addrindex import AddressTable
from stellaops_runtime.canonical.binary import Binary
from stellaops_runtime.canonical.resolution import Resolution

DEFAULT_RECHECK_SECONDS = 1.0
FLUSH_AT = 4096


class Recent:
    """One remembered (root, path): its Binary and warm lookup (canonical/quicklookup.py), until when."""

    __slots__ = ("binary", "build_id", "deadline", "evictions", "quick")

    def __init__(self, binary: Binary, deadline: float, evictions: int) -> None:
        quick = binary.quick
        if quick is None:
            raise ValueError(f"build-id {binary.build_id!r} cannot carry a function ID")
        self.binary = binary
        self.quick = quick
        self.build_id = binary.build_id
        self.deadline = deadline
        self.evictions = evictions

    @property
    def tables(self) -> list[AddressTable]:
        """The tables the warm lookup searches, best first."""
        return [t[0] for t in self.quick.tables]

    def refresh_tables(self) -> None:
        """Take the Binary's loaded tables again (after a miss made it load a lazy source)."""
        self.quick.refresh()


class RecentFiles:
    """(root, path) -> :class:`Recent`, each trusted for ``recheck_seconds``; at most ``max_entries``."""

    __slots__ = ("counters", "entries", "hits", "lock", "max_entries", "recheck_seconds")

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
        self.entries: dict[tuple[str, str], Recent] = {}
        # Counter keys of warm answers not yet added to ``counters``: deque.append is atomic,
        # a lock per answer is not free. Added by flush() (stats(), and every FLUSH_AT answers).
        self.hits: deque[str] = deque()

    def flush(self) -> None:
        """Add the warm answers counted so far to ``counters``."""
        hits = self.hits
        keys = [hits.popleft() for _ in range(len(hits))]  # popleft is atomic: appends go on meanwhile
        if keys:
            with self.lock:
                self.counters.update(keys)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, root: str, path: str, evictions: int, expected_build_id: str = "") -> Recent | None:
        """The entry for (root, path) if still trusted, else None (the caller takes the full path)."""
        r = self.entries.get((root, path))
        if (
            r is None
            or r.deadline <= monotonic()
            or r.evictions != evictions
            or (expected_build_id and expected_build_id != r.build_id)
        ):
            return None
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
        """``Symbolizer.resolve_file``'s warm path for a batch of offsets in one file: the entry is
        checked once.

        (None, []) when there is no trusted entry; else the entry and, per
        offset, its Resolution or None where the loaded tables miss.
        """
        r = self.get(root, path, evictions, expected_build_id)
        if r is None:
            return None, []
        out = r.quick.answer_many(path, offsets, labels, self.hits.append)
        if len(self.hits) >= FLUSH_AT:
            self.flush()
        return r, out

    def put(self, root: str, path: str, binary: Binary, evictions: int) -> None:
        if self.recheck_seconds <= 0:
            return
        try:
            entry = Recent(binary, monotonic() + self.recheck_seconds, evictions)
        except ValueError:  # a build-id no function ID can carry: always the full path
            return
        if len(self.entries) >= self.max_entries:
            self.entries.clear()  # bounded: start over rather than track recency on the warm path
        self.entries[(root, path)] = entry

    def clear(self) -> None:
        self.entries.clear()  # in place: Symbolizer.resolve_file holds this dict
