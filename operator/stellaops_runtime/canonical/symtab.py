"""Function symbols from ``.symtab`` / ``.dynsym``, read a column at a time from the raw section bytes.

pyelftools' ``iter_symbols()`` builds a Container per record and is ~50x
slower than unpacking the raw section bytes; unpacking a tuple per record
(``struct.iter_unpack``) and decoding every name still cost a Python object
per symbol. Here each field is a strided slice of the section seen as 2-, 4-
or 8-byte words (a ``memoryview`` cast, no copy, when the file's byte order is
the machine's), the records to keep are chosen with byte tables
(``bytes.translate``) summed as ints, only the kept records' start, size and name
offset become Python ints (one ``itemgetter`` call per column), binding and
section index stay columns of the whole section read through the kept record
numbers (few symbols need them: aliases, symbols without a size), and names
stay offsets into the string table until a function is looked up (see
bench/symbolize_bench.py).
The section header table is read with ``struct`` (:func:`read_section_table`).

:func:`index_tables` hands the section's bytes to the native index
(canonical/_symindex.c through canonical/symnative.py) when it is built: the
same records kept and the same AddressTable (rules below and in
canonical/addrindex.py), in one C call; the columns here are the path without
it (and for an alias group whose names are not ASCII).

Kept: STT_FUNC and STT_GNU_IFUNC symbols defined in a section (not undefined,
not absolute), at a non-zero address and with a non-empty name, with their
size and binding; a zero size is left for
:class:`~stellaops_runtime.canonical.addrindex.AddressTable` to handle, with
the end of the symbol's section as its bound.
"""

from __future__ import annotations

import operator
import os
import struct
import sys
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from typing import TYPE_CHECKING, BinaryIO, Literal

from stellaops_runtime.canonical.addrindex import AddressTable, Gathered, StrtabNames, SymbolColumns
from stellaops_runtime.canonical.elflayout import EM_ARM, ElfError, ElfLayout
from stellaops_runtime.canonical.limits import Budget, pread_exact
from stellaops_runtime.canonical.resolution import Source
from stellaops_runtime.canonical.symnative import native_index

if TYPE_CHECKING:  # pyelftools is loaded only where DWARF is read (issue 13)
    from elftools.elf.elffile import ELFFile

STT_FUNC = 2
STT_GNU_IFUNC = 10
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHT_NOBITS = "SHT_NOBITS"
_SHT_NAMES = {2: "SHT_SYMTAB", 3: "SHT_STRTAB", 7: "SHT_NOTE", 8: "SHT_NOBITS", 11: "SHT_DYNSYM"}
SHF_COMPRESSED = 0x800
MAX_NAME_BYTES = 16_384  # longer names are cut (real mangled names are far shorter)
_FUNC_TYPES = frozenset({STT_FUNC, STT_GNU_IFUNC})
_SYMTAB_TYPES = {".symtab": "SHT_SYMTAB", ".dynsym": "SHT_DYNSYM"}


def read_section(f: BinaryIO, offset: int, size: int, what: str, budget: Budget | None = None) -> bytes:
    """The bytes of a section, checked against the file's size (and charged to ``budget``) first."""
    fd = f.fileno()
    return pread_exact(fd, offset, size, file_size=os.fstat(fd).st_size, budget=budget, what=what)


@dataclass(frozen=True, slots=True)
class SectionInfo:
    """What the symbolizer needs from one section header."""

    name: str
    type: str  # pyelftools' name for sh_type, e.g. "SHT_SYMTAB"
    addr: int
    offset: int
    size: int
    link: int
    entsize: int
    addralign: int
    flags: int = 0


def read_sections(elf: ELFFile) -> list[SectionInfo]:
    """Every section header, without building pyelftools' Section objects.

    ``ELFFile.iter_sections()`` / ``get_section_by_name()`` construct every
    section, and constructing ``.gnu.hash`` parses the whole hash table: a
    third of containerd's cold load. Reading the headers alone is cheap.
    """
    out: list[SectionInfo] = []
    for i in range(elf.num_sections()):
        h = elf._get_section_header(i)
        out.append(
            SectionInfo(
                name=elf._get_section_name(h),
                type=str(h["sh_type"]),
                addr=h["sh_addr"],
                offset=h["sh_offset"],
                size=h["sh_size"],
                link=h["sh_link"],
                entsize=h["sh_entsize"],
                addralign=h["sh_addralign"],
            )
        )
    return out


def read_section_table(f: BinaryIO, layout: ElfLayout, budget: Budget | None = None) -> list[SectionInfo]:
    """Every section header, read with ``struct`` (sizes checked against the file by ``read_layout``).

    Names come from the section-name string table (``e_shstrndx``); a name
    offset outside it gives "". pyelftools is not involved: its name lookups
    read a stream until a NUL, unbounded on hostile input.
    """
    if not layout.has_section_headers:
        return []
    e = layout.endian
    fmt = e + ("IIQQQQIIQQ" if layout.is64 else "IIIIIIIIII")
    ent = layout.shentsize
    table = read_section(f, layout.shoff, layout.shnum * ent, "section header table", budget)
    rows = [struct.unpack_from(fmt, table, i * ent) for i in range(layout.shnum)]
    names = b""
    if 0 < layout.shstrndx < len(rows):
        strsec = rows[layout.shstrndx]
        if strsec[1] != 8:  # not NOBITS
            names = read_section(f, strsec[4], strsec[5], "section name table", budget)
    out: list[SectionInfo] = []
    for name_off, sh_type, flags, addr, offset, size, link, _info, align, entsize in rows:
        name = ""
        if name_off < len(names):
            end = names.find(b"\0", name_off)
            name = names[name_off : end if end >= 0 else len(names)].decode("utf-8", "replace")
        out.append(
            SectionInfo(
                name=name,
                type=_SHT_NAMES.get(sh_type, str(sh_type)),
                addr=addr,
                offset=offset,
                size=size,
                link=link,
                entsize=entsize,
                addralign=align,
                flags=flags,
            )
        )
    if budget is not None:
        budget.check_symbols(len(out), name)
    _check_overlaps(out, layout)
    return out


def _check_overlaps(sections: list[SectionInfo], layout: ElfLayout) -> None:
    """``bad_elf`` when a section's bytes overlap another's, the ELF header or the section header
    table: no linker writes that (none of 2,682 ELF files of a Debian system, Go, Rust and
    toolchain files does), and a damaged ``sh_offset`` read names or DWARF from another
    section's bytes (tests/integration/test_elf_corruption.py)."""
    header = (0, 64 if layout.is64 else 52, "the ELF header")
    table = (layout.shoff, layout.shoff + layout.shnum * layout.shentsize, "the section header table")
    spans = [header, table]
    spans += [(s.offset, s.offset + s.size, s.name) for s in sections if s.size and s.type != SHT_NOBITS]
    spans.sort()
    end, owner = -1, ""
    for lo, hi, what in spans:
        if lo < end:
            raise ElfError("bad_elf", f"section {what or '?'} at {lo:#x} overlaps {owner or '?'}")
        if hi > end:
            end, owner = hi, what


def _byte_table(pred: Callable[[int], bool]) -> bytes:
    return bytes(1 if pred(b) else 0 for b in range(256))


_IS_FUNC = _byte_table(lambda b: (b & 0xF) in _FUNC_TYPES)
_NONZERO = _byte_table(bool)
_BIND = bytes(b >> 4 for b in range(256))
# Per record: 4 for a function type, + 2 for a section index whose high byte is neither 0 nor 0xff
# (+ 1 when it is 0), + 1 for a non-zero low byte; kept when the sum is 6 or 7 (a function with
# st_shndx in 1..0xfeff).
_FUNC_4 = bytes(4 * b for b in _IS_FUNC)
_HI_SCORE = bytes(1 if b == 0 else 0 if b == 0xFF else 2 for b in range(256))
_KEEP_SCORE = bytes(1 if b >= 6 else 0 for b in range(256))


def _and(*masks: bytes) -> bytes:
    """Byte-wise AND of 0/1 masks of one length (no carries cross bytes)."""
    n = len(masks[0])
    acc = int.from_bytes(masks[0], "little")
    for m in masks[1:]:
        acc &= int.from_bytes(m, "little")
    return acc.to_bytes(n, "little")


def file_words(data: bytes, code: Literal["H", "I", "Q"], little: bool) -> Sequence[int]:
    """``data`` as unsigned ints of ``code``'s width, in the file's byte order.

    A view of ``data`` (no copy: a copy of containerd's ``.dynsym`` is 2.8 MB of
    fresh memory per width) when the file's byte order is the machine's; else a
    byte-swapped ``array``.
    """
    if little == (sys.byteorder == "little"):
        return memoryview(data).cast(code)
    col = array(code)
    col.frombytes(data)
    col.byteswap()
    return col


def _getter(idx: list[int]) -> Callable[[Sequence[int]], list[int]]:
    """``seq -> [seq[i] for i in idx]`` in one C call per sequence."""
    if len(idx) == 1:
        i = idx[0]
        return lambda seq: [seq[i]]
    get = operator.itemgetter(*idx)
    return lambda seq: list(get(seq))


def _first_bytes(table: bytes, offsets: list[int]) -> bytes:
    """The byte at each offset of ``table`` (0: an empty name), in one C call; IndexError past its end."""
    if len(offsets) > 1:
        return bytes(operator.itemgetter(*offsets)(table))
    return bytes([table[o] for o in offsets])


def symbol_strtab(sec: SectionInfo, sections: list[SectionInfo], rec: int, name: str) -> SectionInfo | None:
    """The string table a symbol table ``sec`` of ``rec``-byte records names, after checking both
    headers; None when that string table is not in the file (SHT_NOBITS: a debug file's copy).
    Raises ElfError for an entry size or link no linker writes: names would be read out of whatever
    bytes the linked section holds (the symbol table itself, code), every one of them wrong."""
    if sec.entsize != rec:
        raise ElfError("bad_elf", f"{name}: symbol entry size {sec.entsize}, expected {rec}")
    if not 0 < sec.link < len(sections):
        raise ElfError("bad_elf", f"{name}: string table link {sec.link} out of range")
    strsec = sections[sec.link]
    if strsec.type == SHT_NOBITS:
        return None
    if strsec.type != "SHT_STRTAB":
        raise ElfError("bad_elf", f"{name}: string table link {sec.link} is a section of type {strsec.type}")
    return strsec


def symbol_section(
    sections: list[SectionInfo], f: BinaryIO, name: str, *, is64: bool, budget: Budget | None = None
) -> tuple[bytes, bytes] | None:
    """(whole records of section ``name``, its string table), checked; None when the section is
    absent, empty or its string table not in the file."""
    sec = next((s for s in sections if s.name == name), None)
    if sec is None or sec.type != _SYMTAB_TYPES[name] or not sec.size:
        return None
    rec = 24 if is64 else 16
    strsec = symbol_strtab(sec, sections, rec, name)
    if strsec is None:
        return None
    data = read_section(f, sec.offset, sec.size - sec.size % rec, name, budget)
    strtab = read_section(f, strsec.offset, strsec.size, f"{name} string table", budget)
    if strtab and (strtab[0] != 0 or strtab[-1] != 0):
        # The ELF specification: a string table's first and last bytes are NUL. A table that does
        # not start with one is read from the wrong place (a damaged sh_offset): every name would
        # be shifted or garbage.
        where = f"{strsec.offset:#x}"
        raise ElfError("bad_elf", f"{name}: string table at {where} does not begin and end with NUL")
    return data, strtab


def function_symbols(
    sections: list[SectionInfo],
    f: BinaryIO,
    name: str,
    *,
    is64: bool,
    little: bool,
    arm: bool = False,
    budget: Budget | None = None,
) -> SymbolColumns:
    """The function symbols of section ``name`` (".symtab" or ".dynsym"); empty when it is absent."""
    found = symbol_section(sections, f, name, is64=is64, budget=budget)
    if found is None:
        return SymbolColumns([], [], [], [], [], [])
    return symbol_columns(
        sections, found[0], found[1], name, is64=is64, little=little, arm=arm, budget=budget
    )


def symbol_columns(
    sections: list[SectionInfo],
    data: bytes,
    strtab: bytes,
    name: str,
    *,
    is64: bool,
    little: bool,
    arm: bool = False,
    budget: Budget | None = None,
) -> SymbolColumns:
    """The function symbols of a symbol section's bytes ``data`` naming into ``strtab``.

    Column at a time, never a Python object per record: the fields are sliced
    out of the section bytes (``bytes[i::24]``, ``memoryview``), the records kept are
    chosen with byte tables, and names stay offsets into the string table,
    decoded only for the functions looked up (:class:`StrtabNames`).
    """
    rec = 24 if is64 else 16
    if is64:  # st_name(4) st_info(1) st_other(1) st_shndx(2) st_value(8) st_size(8)
        info_at, shndx_at = 4, 6
    else:  # st_name(4) st_value(4) st_size(4) st_info(1) st_other(1) st_shndx(2)
        info_at, shndx_at = 12, 14
    lo_at, hi_at = (shndx_at, shndx_at + 1) if little else (shndx_at + 1, shndx_at)
    info = data[info_at::rec]
    shndx_lo, shndx_hi = data[lo_at::rec], data[hi_at::rec]
    # Kept: a function (info) in a section (shndx neither 0 nor reserved, high byte 0xff). Each
    # record's three conditions become small numbers in one byte, summed over whole columns as
    # ints (no byte exceeds 7, so no carry crosses records), then one table says which sums keep.
    total = (
        int.from_bytes(info.translate(_FUNC_4), "little")
        + int.from_bytes(shndx_hi.translate(_HI_SCORE), "little")
        + int.from_bytes(shndx_lo.translate(_NONZERO), "little")
    )
    keep = total.to_bytes(len(info), "little").translate(_KEEP_SCORE)
    if budget is not None:  # before any column is built: millions of ints would pass the byte budget
        budget.check_symbols(len(keep) - keep.count(0), name)
    # The section as 2-, 4- and 8-byte words in the file's byte order (views, see file_words); each
    # field is a strided slice of one of them, and only the records kept become Python ints (one
    # C call per field through an itemgetter of the kept record numbers).
    kept = list(compress(range(len(info)), keep))
    if not kept:
        return SymbolColumns([], [], [], [], [], [])
    take = _getter(kept)
    w32 = file_words(data, "I", little)
    if is64:
        w64 = file_words(data, "Q", little)
        values, sizes, name_offs = take(w64[1::3]), take(w64[2::3]), take(w32[0::6])
    else:
        values, sizes, name_offs = take(w32[1::4]), take(w32[2::4]), take(w32[0::4])
    # Drop what the record filter could not: address 0, and an empty (or out-of-table) name.
    # Both are rare: the masks are built only when a first byte is 0 or an address is 0.
    try:
        first_bytes = _first_bytes(strtab, name_offs)
    except IndexError:  # names outside the table: empty
        name_offs = list(map(min, name_offs, repeat(len(strtab))))
        first_bytes = _first_bytes(strtab + b"\0", name_offs)
    if 0 in first_bytes or 0 in values:
        keep2 = _and(first_bytes.translate(_NONZERO), bytes(map(bool, values)))
        values, sizes = list(compress(values, keep2)), list(compress(sizes, keep2))
        name_offs, kept = list(compress(name_offs, keep2)), list(compress(kept, keep2))
    # Binding and section index are read by few symbols (aliases, symbols without a size): they
    # stay columns of the whole section, read through the record numbers kept.
    binds = Gathered(info.translate(_BIND), kept)
    shndx = Gathered(file_words(data, "H", little)[shndx_at // 2 :: rec // 2], kept)
    if arm:
        values = [v & ~1 for v in values]  # Thumb functions have bit 0 set
    if budget is not None:
        budget.check_symbols(len(values), name)
    return SymbolColumns(
        values,
        sizes,
        StrtabNames(strtab, name_offs, MAX_NAME_BYTES),
        binds,
        shndx,
        [s.addr + s.size for s in sections],
    )


def index_tables(
    sections: list[SectionInfo], f: BinaryIO, layout: ElfLayout, budget: Budget
) -> list[AddressTable]:
    """The address tables of ``.symtab`` and ``.dynsym`` (in that rank), for those that have functions."""

    tables: list[AddressTable] = []
    arm = layout.machine == EM_ARM
    for name, source in ((".symtab", Source.SYMTAB), (".dynsym", Source.DYNSYM)):
        found = symbol_section(sections, f, name, is64=layout.is64, budget=budget)
        if found is None:
            continue
        data, strtab = found
        built = native_index(
            sections,
            data,
            strtab,
            name,
            is64=layout.is64,
            little=layout.little,
            arm=arm,
            max_bytes=MAX_NAME_BYTES,
            budget=budget,
        )
        if built is not None:  # canonical/_symindex.c: the same entries as the Python path below
            starts, ends, offsets = built
            if starts:
                names = StrtabNames(strtab, offsets, MAX_NAME_BYTES)
                tables.append(AddressTable.restored(source, starts, ends, names))
            continue
        syms = symbol_columns(
            sections, data, strtab, name, is64=layout.is64, little=layout.little, arm=arm, budget=budget
        )
        if syms:
            tables.append(AddressTable(source, syms))
    return tables
