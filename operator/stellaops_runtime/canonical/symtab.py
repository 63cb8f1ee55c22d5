"""Function symbols from ``.symtab`` / ``.dynsym``: pyelftools finds the sections, ``struct`` reads them.

pyelftools' ``iter_symbols()`` builds a Container per record and is 18-52x
slower than unpacking the raw section bytes with ``struct.iter_unpack``
(containerd's 117,627-record ``.dynsym``: ~2.7 s against ~50 ms; see
bench/symbolize_bench.py). pyelftools is used only for what it is good at
here: the section header table (headers only, see :func:`read_sections`).

Kept: STT_FUNC and STT_GNU_IFUNC symbols defined in a section (not undefined,
not absolute), with their size and binding; a zero size is left for
:class:`~stellaops_runtime.canonical.addrindex.AddressTable` to handle, with
the end of the symbol's section as its bound.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

from elftools.elf.elffile import ELFFile

from stellaops_runtime.canonical.addrindex import RawSymbol
from stellaops_runtime.canonical.elflayout import ElfError, ElfLayout
from stellaops_runtime.canonical.limits import Budget, pread_exact

STT_FUNC = 2
STT_GNU_IFUNC = 10
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHT_NOBITS = "SHT_NOBITS"
_SHT_NAMES = {2: "SHT_SYMTAB", 3: "SHT_STRTAB", 7: "SHT_NOTE", 8: "SHT_NOBITS", 11: "SHT_DYNSYM"}
SHF_COMPRESSED = 0x800
_RECORDS_PER_STEP = 2048
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
    return out


def function_symbols(
    sections: list[SectionInfo],
    f: BinaryIO,
    name: str,
    *,
    is64: bool,
    little: bool,
    arm: bool = False,
    budget: Budget | None = None,
) -> list[RawSymbol]:
    """The function symbols of section ``name`` (".symtab" or ".dynsym"); [] when it is absent."""
    sec = next((s for s in sections if s.name == name), None)
    if sec is None or sec.type != _SYMTAB_TYPES[name] or not sec.size:
        return []
    e = "<" if little else ">"
    fmt = e + ("IBBHQQ" if is64 else "IIIBBH")
    rec = struct.calcsize(fmt)
    if sec.entsize != rec:
        raise ElfError("bad_elf", f"{name}: symbol entry size {sec.entsize}, expected {rec}")
    if not 0 < sec.link < len(sections):
        raise ElfError("bad_elf", f"{name}: string table link {sec.link} out of range")
    strsec = sections[sec.link]
    if strsec.type == SHT_NOBITS:
        return []
    data = read_section(f, sec.offset, sec.size - sec.size % rec, name, budget)
    strtab = read_section(f, strsec.offset, strsec.size, f"{name} string table", budget)
    limits = [s.addr + s.size for s in sections]
    nsec = len(limits)
    out: list[RawSymbol] = []
    append = out.append
    find = strtab.find
    view = memoryview(data)
    step = rec * _RECORDS_PER_STEP
    names_bytes = 0
    for pos in range(0, len(data), step):
        if budget is not None:
            budget.check_symbols(len(out), name)
            budget.charge(names_bytes, f"{name} names")
            names_bytes = 0
        for rec_fields in struct.iter_unpack(fmt, view[pos : pos + step]):
            if is64:
                name_off, info, _other, shndx, value, sym_size = rec_fields
            else:
                name_off, value, sym_size, info, _other, shndx = rec_fields
            if (info & 0xF) not in _FUNC_TYPES or shndx == SHN_UNDEF or shndx >= SHN_LORESERVE or not value:
                continue
            end = find(b"\0", name_off, name_off + MAX_NAME_BYTES)
            if end < 0:
                end = min(len(strtab), name_off + MAX_NAME_BYTES)
            raw = strtab[name_off:end]
            names_bytes += len(raw)
            if not raw:
                continue
            if arm:
                value &= ~1  # Thumb functions have bit 0 set
            append(
                (
                    value,
                    sym_size,
                    raw.decode("utf-8", "replace"),
                    info >> 4,
                    limits[shndx] if shndx < nsec else 0,
                )
            )
    if budget is not None:
        budget.check_symbols(len(out), name)
    return out
