"""One function's address from a file's symbol tables, streamed: native/symaddr.py's scan.

Why this module exists: a uprobe needs the address of one name, not the
file's whole table. The symbolizer reads a table into memory within its
budget (64 MiB, 500,000 functions: canonical/limits.py), so a binary with
more (a large C++ server, libLLVM-sized monsters, a container's generated
file) was refused where BCC by name attached. Here each symbol table is read
:data:`CHUNK_RECORDS` records at a time and only records that carry the wanted
name are looked at (a function, in a section, at a non-zero address); the first one in table order (the
one BCC takes, see native/symaddr.py) wins, and nothing of a chunk is kept.

The name is matched against the table's string table: held in memory when it
fits the parse budget (today's 64 MiB, as the symbolizer would), else streamed
once to note where the name (with its NUL) occurs, at most
:data:`MAX_NAME_PLACES` places; a larger string table holding the name more
often than that is refused (no linker writes one; a container can). Time and
I/O are bounded: the budget's time (native/symaddr.py's 120 s) is checked at
each chunk, and at most ``max_file_bytes`` (1 GiB) of tables are streamed per
file. Each chunk's names are compared in one C-level pass (no Python object
per record). The checks the symbolizer makes on a table (entry size, string-table
link and type, a string table that begins and ends with NUL, everything
inside the file) are made here too, with the same reasons.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Iterator
from itertools import compress, repeat
from typing import BinaryIO

from stellaops_runtime.canonical.elflayout import ElfError, ElfLayout
from stellaops_runtime.canonical.limits import BUDGET_EXCEEDED, Budget, pread_exact
from stellaops_runtime.canonical.symtab import SectionInfo, file_words, symbol_strtab

CHUNK_RECORDS = 32_768  # records read at a time (768 KiB of a 64-bit table)
MAX_NAME_PLACES = 65_536  # places of the name noted in a string table too large to hold
_STRTAB_CHUNK = 4 << 20
_TABLES = ("SHT_DYNSYM", "SHT_SYMTAB")
_FUNC = bytes(1 if (b & 0xF) in (2, 10) else 0 for b in range(256))  # STT_FUNC, STT_GNU_IFUNC
_SHN_LORESERVE = 0xFF00


class Streamed:
    """Bytes streamed for one lookup, bounded by ``limit`` (the budget's ``max_file_bytes``)."""

    __slots__ = ("limit", "total")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0

    def add(self, n: int, what: str) -> None:
        self.total += n
        if self.total > self.limit:
            raise ElfError(BUDGET_EXCEEDED, f"{what}: more than {self.limit} bytes of symbol tables to read")


def first_function(
    f: BinaryIO, layout: ElfLayout, sections: list[SectionInfo], want: bytes, budget: Budget
) -> int:
    """The value of the first function symbol named ``want`` (with its NUL) in section order, or 0."""
    streamed = Streamed(budget.limits.max_file_bytes)
    for sec in sections:  # section order: .dynsym before .symtab as linkers lay them out
        if sec.type in _TABLES:
            found = _in_table(f, layout, sections, sec, want, budget, streamed)
            if found:
                return found
    return 0


def _in_table(
    f: BinaryIO,
    layout: ElfLayout,
    sections: list[SectionInfo],
    sec: SectionInfo,
    want: bytes,
    budget: Budget,
    streamed: Streamed,
) -> int:
    name = sec.name or sec.type
    rec = 24 if layout.is64 else 16
    if not sec.size:
        return 0
    strsec = symbol_strtab(sec, sections, rec, name)
    if strsec is None:
        return 0
    fd = f.fileno()
    size = os.fstat(fd).st_size
    count = sec.size // rec
    pread_exact(fd, sec.offset, 0, file_size=size, budget=None, what=name)  # the table starts in the file
    if sec.offset + count * rec > size:
        raise ElfError("truncated_elf", f"{name} ends past the end of the file ({size} bytes)")
    test = _name_test(fd, size, strsec, want, name, budget, streamed)
    if test is None:
        return 0  # the name is nowhere in the string table
    little = layout.little
    # (st_name, st_info, st_shndx, st_value) of one record
    if layout.is64:  # st_name(4) st_info(1) st_other(1) st_shndx(2) st_value(8) st_size(8)
        fields = struct.Struct(("<" if little else ">") + "IBxHQ8x")
    else:  # st_name(4) st_value(4) st_size(4) st_info(1) st_other(1) st_shndx(2)
        fields = struct.Struct(("<" if little else ">") + "II4xBxH")
    for first in range(0, count, CHUNK_RECORDS):
        n = min(CHUNK_RECORDS, count - first)
        streamed.add(n * rec, name)
        budget.check_time(name)
        data = pread_exact(fd, sec.offset + first * rec, n * rec, file_size=size, budget=None, what=name)
        names = file_words(data, "I", little)[0 :: rec // 4]
        for j in compress(range(n), test(names)):  # one C-level pass: the records naming ``want``
            if layout.is64:
                _, info, shndx, value = fields.unpack_from(data, j * rec)
            else:
                _, value, info, shndx = fields.unpack_from(data, j * rec)
            if _FUNC[info] and 0 < shndx < _SHN_LORESERVE and value:
                return int(value)
    return 0


def _name_test(
    fd: int, size: int, strsec: SectionInfo, want: bytes, name: str, budget: Budget, streamed: Streamed
) -> Callable[[Iterable[int]], Iterator[bool]] | None:
    """Whether each of a list of name offsets is ``want``; None when the name is nowhere."""
    what = f"{name} string table"
    if strsec.size <= budget.limits.max_parse_bytes - budget.parsed:  # held, as the symbolizer would
        strtab = pread_exact(fd, strsec.offset, strsec.size, file_size=size, budget=budget, what=what)
        _check_ends(strtab[:1], strtab[-1:], strsec, what)
        if want not in strtab:
            return None
        # each offset compared where it points (a name can be the tail of a longer string: linkers
        # share suffixes); not every place it appears: a container's file can repeat it millions of times
        return lambda offs: map(strtab.startswith, repeat(want), offs)
    head = pread_exact(fd, strsec.offset, 1, file_size=size, budget=None, what=what)
    tail = pread_exact(fd, strsec.offset + strsec.size - 1, 1, file_size=size, budget=None, what=what)
    _check_ends(head, tail, strsec, what)
    places = _places(fd, size, strsec, want, what, budget, streamed)
    if not places:
        return None
    return lambda offs: map(places.__contains__, offs)


def _check_ends(head: bytes, tail: bytes, strsec: SectionInfo, what: str) -> None:
    # The ELF specification: a string table's first and last bytes are NUL; one that does not start
    # with one is read from the wrong place (a damaged sh_offset): every name would be wrong.
    if head and (head != b"\0" or tail != b"\0"):
        raise ElfError("bad_elf", f"{what} at {strsec.offset:#x} does not begin and end with NUL")


def _places(
    fd: int, size: int, strsec: SectionInfo, want: bytes, what: str, budget: Budget, streamed: Streamed
) -> frozenset[int]:
    """Offsets in the string table where ``want`` begins, read :data:`_STRTAB_CHUNK` bytes at a time."""
    found: set[int] = set()
    carry = len(want) - 1  # a name across two chunks: each read overlaps the next by this much
    pos = 0
    while pos < strsec.size:
        n = min(_STRTAB_CHUNK, strsec.size - pos)
        streamed.add(n, what)
        budget.check_time(what)
        end = min(strsec.size, pos + n + carry)
        chunk = pread_exact(fd, strsec.offset + pos, end - pos, file_size=size, budget=None, what=what)
        at = chunk.find(want)
        while 0 <= at < n:
            found.add(pos + at)
            if len(found) > MAX_NAME_PLACES:
                raise ElfError(
                    BUDGET_EXCEEDED,
                    f"{what}: {strsec.size} bytes, over the {budget.limits.max_parse_bytes}-byte parse "
                    f"budget, holding the name more than {MAX_NAME_PLACES} times",
                )
            at = chunk.find(want, at + 1)
        pos += n
    return frozenset(found)
