"""Where a Go binary's runtime ``moduledata`` is, for its ``gofunc`` word (Go 1.18+).

Why this exists: since Go 1.18 a function's funcdata (its inline tree among
them, canonical/goinline.py) are offsets from ``moduledata.gofunc`` (the
address of the linker symbol ``go.func.*``, ``go:func.*`` from 1.20), and a
stripped binary has no symbol for it: the runtime's ``moduledata`` is the only
place the address is written. Its layout (Go's ``runtime/symtab.go``) starts
with pointer-sized words: pcHeader (the pclntab's address), funcnametab,
cutab, filetab, pctab, pclntable, ftab (slices: pointer, len, cap), findfunctab,
minpc, maxpc, text (word 22), etext, ..., rodata, gofunc: word 38 for Go
1.18/1.19, 40 from 1.20 (``covctrs``/``ecovctrs`` were added before it).

A candidate is the pair (pclntab address, pclntab + funcnameOffset) in the
writable data (``.noptrdata``, where Go's linker puts it, else every writable
segment), as canonical/gopclntab.py ``locate`` confirms a table; it is kept
only when its pctab pointer is pclntab + pctabOffset, its ``text`` word is
the table's textStart, ``rodata <= gofunc`` and gofunc lies in a loadable
segment. Linkers that leave these words 0 in the file and put the values in
RELATIVE relocations (lld, GNU ld on some targets) are read from ``.rela.dyn``
or ``.rela`` (the name Go's internal linker uses); a file with neither section
headers nor the words in place gives None.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

from stellaops_runtime.canonical.elflayout import PF_W, ElfLayout
from stellaops_runtime.canonical.gopclntab import PclnHeader
from stellaops_runtime.canonical.limits import Budget, pread_exact
from stellaops_runtime.canonical.symtab import SectionInfo, read_section

_RELA_SECTIONS = (".rela.dyn", ".rela")
_SHT_RELA = ("4", "SHT_RELA")
_MAX_RELA_BYTES = 64 << 20
_MAX_HITS = 64
_MD_PCTAB_WORD = 10  # pcHeader, funcnametab[3], cutab[3], filetab[3], then pctab
_MD_TEXT_WORD = 22


def find_gofunc(
    f: BinaryIO,
    layout: ElfLayout,
    sections: dict[str, SectionInfo],
    table_vaddr: int,
    h: PclnHeader,
    text_start: int,
    gofunc_word: int,
    budget: Budget,
) -> int | None:
    """``moduledata.gofunc`` (word ``gofunc_word``), or None when no moduledata confirms the table.

    From the words in the file, else from the RELATIVE relocations of ``.rela.dyn``/``.rela``.
    """
    for words in _candidates(f, layout, sections, table_vaddr, h, gofunc_word + 1, budget):
        gofunc = _confirm(words, table_vaddr, h, text_start, gofunc_word, layout)
        if gofunc is not None:
            return gofunc
    return None


def moduledata_text(
    f: BinaryIO,
    layout: ElfLayout,
    sections: dict[str, SectionInfo],
    table_vaddr: int,
    h: PclnHeader,
    budget: Budget,
) -> int | None:
    """``moduledata.text`` of the moduledata that points at this table (its pcHeader, funcnametab
    and pctab words), or None when none is found (then nothing can confirm the table's textStart).

    From the words in the file; words left 0 there are read from the RELATIVE relocations.
    """
    pctab = table_vaddr + h.pctab_offset  # never 0: the table's header comes before its pctab
    for words in _candidates(f, layout, sections, table_vaddr, h, _MD_TEXT_WORD + 1, budget):
        if words[_MD_PCTAB_WORD] == pctab and words[_MD_TEXT_WORD]:
            return int(words[_MD_TEXT_WORD])
    return None


def _candidates(
    f: BinaryIO,
    layout: ElfLayout,
    sections: dict[str, SectionInfo],
    table_vaddr: int,
    h: PclnHeader,
    nwords: int,
    budget: Budget,
) -> Iterator[tuple[int, ...]]:
    """The first ``nwords`` pointer-sized words of each place a moduledata of this table may start.

    First where the file holds the pair (pclntab address, pclntab + funcnameOffset)
    in its writable data (aligned, at most ``_MAX_HITS`` finds per region); then,
    only when the caller asks for more, where a RELATIVE relocation's addend is the
    pclntab address, each word read from the relocation at its place (0 where none
    is). The relocations are read only if the words in the file confirmed nothing.
    """
    letter = "Q" if h.ptr_size == 8 else "I"
    ptr = h.ptr_size
    fmt = layout.endian + letter * nwords
    needle = struct.pack(layout.endian + letter * 2, table_vaddr, table_vaddr + h.funcname_offset)
    for data in _writable_regions(f, layout, sections, budget):
        pos, hits = data.find(needle), 0
        while pos >= 0 and hits < _MAX_HITS:
            hits += 1
            if pos % ptr == 0 and pos + nwords * ptr <= len(data):
                yield struct.unpack_from(fmt, data, pos)
            pos = data.find(needle, pos + 1)
    relocs = _relative_relocs(f, layout, sections, budget)
    for offset, addend in relocs.items():
        if addend == table_vaddr:
            yield tuple(relocs.get(offset + k * ptr, 0) for k in range(nwords))


def _confirm(
    words: tuple[int, ...],
    table_vaddr: int,
    h: PclnHeader,
    text_start: int,
    gofunc_word: int,
    layout: ElfLayout,
) -> int | None:
    if words[1] != table_vaddr + h.funcname_offset or words[_MD_PCTAB_WORD] != table_vaddr + h.pctab_offset:
        return None
    if words[_MD_TEXT_WORD] != text_start:
        return None
    gofunc, rodata = words[gofunc_word], words[gofunc_word - 1]
    if not rodata <= gofunc or not any(s.vaddr <= gofunc < s.vaddr + s.filesz for s in layout.loads):
        return None
    return gofunc


def _writable_regions(
    f: BinaryIO, layout: ElfLayout, sections: dict[str, SectionInfo], budget: Budget
) -> list[bytes]:
    """``.noptrdata`` (where Go's linker puts moduledata) when named, else the writable segments."""
    sec = sections.get(".noptrdata")
    if sec is not None and sec.type != "SHT_NOBITS" and sec.size:
        return [read_section(f, sec.offset, sec.size, ".noptrdata", budget)]
    fd = f.fileno()
    return [
        pread_exact(fd, s.offset, s.filesz, file_size=layout.size, budget=budget, what="writable segment")
        for s in layout.loads
        if s.flags & PF_W and s.filesz
    ]


def _relative_relocs(
    f: BinaryIO, layout: ElfLayout, sections: dict[str, SectionInfo], budget: Budget
) -> dict[int, int]:
    """{offset: addend} of the symbol-less RELA relocations (``.rela.dyn`` or ``.rela``)."""
    out: dict[int, int] = {}
    fmt = layout.endian + ("QQq" if layout.is64 else "IIi")
    rec = struct.calcsize(fmt)
    for name in _RELA_SECTIONS:
        sec = sections.get(name)
        if sec is None or sec.type not in _SHT_RELA or not sec.size or sec.size > _MAX_RELA_BYTES:
            continue
        data = read_section(f, sec.offset, sec.size - sec.size % rec, name, budget)
        for offset, info, addend in struct.iter_unpack(fmt, data):
            if (info >> 32 if layout.is64 else info >> 8) == 0:
                out[offset] = addend
    return out
