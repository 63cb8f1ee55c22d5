"""Per-file parse budgets, and the memory of files that were refused.

Why this module exists: every ELF the canonicalizer reads may come from a
hostile container. Sizes and counts in a file are checked against the
file's real size before anything is allocated, but a file can be honest
about its size and still be huge (a sparse 1 TB file, a 2 GB segment of
zeros, a DWARF section that inflates to gigabytes, millions of fake
functions). A :class:`Budget` bounds what one file may cost:

=====================  ===========  ===================================================
limit                  default      what it bounds
=====================  ===========  ===================================================
``max_file_bytes``     1 GiB        bytes hashed or scanned per file (streamed, 1 MiB
                                    at a time: the content digest, the fallback build-id)
``max_parse_bytes``    64 MiB       bytes read *into memory* per file (symbol and string
                                    tables, ``.gopclntab``, DWARF sections after
                                    decompression, segments searched for a pclntab)
``max_symbols``        500,000      functions kept per symbol source
``max_dwarf_dies``     250,000      DWARF entries decoded per file
``parse_seconds``      2.0          wall-clock per file operation (open + index, or one
                                    lazy source), checked inside the loops
=====================  ===========  ===================================================

A file over budget raises :class:`~stellaops_runtime.canonical.elflayout.ElfError`
with reason ``budget_exceeded``. :class:`RefusedFiles` remembers refused files by
(device, inode, size, mtime) so one bad file costs its budget once, not per event.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass

from stellaops_runtime.canonical.addrindex import LRU
from stellaops_runtime.canonical.elflayout import ElfError, read_chunks

BUDGET_EXCEEDED = "budget_exceeded"
MALFORMED = "malformed"
NOT_REGULAR = "not_regular"

DEFAULT_MAX_FILE_BYTES = 1 << 30
DEFAULT_MAX_PARSE_BYTES = 64 << 20
DEFAULT_MAX_SYMBOLS = 500_000
DEFAULT_MAX_DWARF_DIES = 250_000
DEFAULT_PARSE_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Limits:
    """The per-file budgets (see the module docstring for the defaults)."""

    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_parse_bytes: int = DEFAULT_MAX_PARSE_BYTES
    max_symbols: int = DEFAULT_MAX_SYMBOLS
    max_dwarf_dies: int = DEFAULT_MAX_DWARF_DIES
    parse_seconds: float = DEFAULT_PARSE_SECONDS

    def budget(self, what: str = "") -> Budget:
        return Budget(self, what)


DEFAULT_LIMITS = Limits()


class Budget:
    """What one file operation may still spend: bytes into memory, and time."""

    __slots__ = ("deadline", "limits", "parsed", "what")

    def __init__(self, limits: Limits, what: str = "") -> None:
        self.limits = limits
        self.what = what
        self.parsed = 0
        self.deadline = time.monotonic() + limits.parse_seconds

    def exceeded(self, message: str) -> ElfError:
        return ElfError(BUDGET_EXCEEDED, f"{self.what}: {message}" if self.what else message)

    def charge(self, nbytes: int, what: str) -> None:
        """Account for ``nbytes`` about to be read into memory; raise before they are."""
        self.parsed += max(0, nbytes)
        if self.parsed > self.limits.max_parse_bytes:
            raise self.exceeded(
                f"{what}: reading {nbytes} bytes passes the {self.limits.max_parse_bytes}-byte parse budget"
            )
        self.check_time(what)

    def check_time(self, what: str) -> None:
        if time.monotonic() > self.deadline:
            raise self.exceeded(f"{what}: over the {self.limits.parse_seconds}s parse budget")

    def check_symbols(self, count: int, what: str) -> None:
        if count > self.limits.max_symbols:
            raise self.exceeded(f"{what}: {count} functions, more than {self.limits.max_symbols}")


def pread_exact(
    fd: int, offset: int, size: int, *, file_size: int, budget: Budget | None, what: str
) -> bytes:
    """``size`` bytes at ``offset``, checked against the file's size (and charged) before reading."""
    if offset < 0 or size < 0 or offset + size > file_size:
        raise ElfError("truncated_elf", f"{what} ends past the end of the file ({file_size} bytes)")
    if budget is not None:
        budget.charge(size, what)
    data = os.pread(fd, size, offset)
    if len(data) < size:
        raise ElfError("truncated_elf", f"{what} ends past the end of the file")
    return data


def file_digest(fd: int, size: int, limits: Limits, *, budget: Budget | None = None) -> str:
    """SHA-256 hex of the file's first ``size`` bytes, streamed; ``budget_exceeded`` if too big or slow."""
    if size > limits.max_file_bytes:
        raise ElfError(
            BUDGET_EXCEEDED, f"{size} bytes to hash, more than the {limits.max_file_bytes}-byte budget"
        )
    b = budget or limits.budget()
    h = hashlib.sha256()
    read_chunks(fd, size, h.update, lambda: b.check_time("hashing the file"))
    return h.hexdigest()


FileKey = tuple[int, int, int, int]  # (device, inode, size, mtime ns)


def file_key(st: os.stat_result) -> FileKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class RefusedFiles:
    """Files (and contents) that were refused, by identity, with why; bounded."""

    __slots__ = ("_by_key", "hits")

    def __init__(self, max_entries: int = 4096) -> None:
        self._by_key: LRU[object, str] = LRU(max_entries)
        self.hits = 0

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: object) -> str | None:
        reason = self._by_key.get(key)
        if reason is not None:
            self.hits += 1
        return reason

    def put(self, key: object, reason: str) -> None:
        self._by_key.put(key, reason)

    def forget(self, key: object) -> None:
        self._by_key.pop(key)
