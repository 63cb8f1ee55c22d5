"""Where a Go binary keeps its function table (``gopclntab``), and the text address it is relative to.

Go binaries do not all keep the table in a section named ``.gopclntab``:

- ordinary (non-PIE) builds do, stripped or not;
- position-independent builds (``-buildmode=pie``, the default of several
  distributions) link it writable-then-read-only: internally linked ones name
  the section ``.data.rel.ro.gopclntab``; externally linked ones (and anything
  that went through a GNU ``ld`` merge) have it inside ``.data.rel.ro`` with no
  section of its own;
- ``sstrip``-style stripping leaves no section headers at all, only the
  loadable segments (:func:`stellaops_runtime.canonical.gopclntab.locate`).

``.data.rel.ro`` is only searched in files that say they are Go (a
``.go.buildinfo`` or ``.note.go.buildid`` section), by the magic and header
checks of :func:`stellaops_runtime.canonical.gopclntab.scan`; finding no
plausible table there is an error (``malformed``), not an empty table: every
Go binary has one, so it is damaged or of a layout we do not read.

Go 1.18+ tables store function entries as offsets from ``textStart`` (the
address of ``runtime.text``, which in externally linked builds is not the
start of ``.text``: the C start-up code comes first). In a PIE that header word
is the target of a RELATIVE dynamic relocation; GNU ld on x86-64 also writes
the value in place, other linkers (lld, ld on arm64) leave 0 in the file. A 0
is therefore replaced by the addend of the relocation at that word (from
``.rela.dyn``); with neither, the table is refused (a wrong base would give
every frame a wrong name, worse than none).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from stellaops_runtime.canonical import gopclntab
from stellaops_runtime.canonical.addrindex import STB_GLOBAL, RawSymbol
from stellaops_runtime.canonical.elflayout import ElfError, ElfLayout
from stellaops_runtime.canonical.gomoduledata import moduledata_text
from stellaops_runtime.canonical.limits import MALFORMED, Budget
from stellaops_runtime.canonical.symtab import SectionInfo, read_section

OWN_SECTIONS = (".gopclntab", ".data.rel.ro.gopclntab")
GO_MARKERS = (".go.buildinfo", ".note.go.buildid")
SHARED_SECTION = ".data.rel.ro"
_SHT_NOBITS = "SHT_NOBITS"
_RELA_SECTION = ".rela.dyn"
_SHT_RELA = ("4", "SHT_RELA")  # symtab.read_section_table names only the types it uses
_MAX_RELA_BYTES = 64 << 20


@dataclass(frozen=True, slots=True)
class GoTable:
    """A function table found in a file: its bytes (to the end of the region), address and text base."""

    data: bytes
    vaddr: int
    text_start: int  # 0 when the table's entries are absolute (go1.16) or no base is known
    where: str  # section name, "segment" for a table found without section headers


def _usable(sec: SectionInfo | None) -> bool:
    return sec is not None and sec.type != _SHT_NOBITS and sec.size > 0


def may_have_table(sections: dict[str, SectionInfo]) -> bool:
    """Whether to try the Go table at all: its own section, or a Go file with ``.data.rel.ro``."""
    if any(_usable(sections.get(n)) for n in OWN_SECTIONS):
        return True
    return _usable(sections.get(SHARED_SECTION)) and any(n in sections for n in GO_MARKERS)


def find_table(
    f: BinaryIO, layout: ElfLayout, sections: dict[str, SectionInfo], budget: Budget
) -> GoTable | None:
    """The file's Go function table, or None when it has none; ValueError when its base is unknown.

    ``sections`` maps names to headers (first of each name); empty for a file
    without section headers, whose loadable segments are searched instead.
    """
    if not sections:
        found = gopclntab.locate(f, layout, budget)
        if found is None:
            return None
        data, vaddr = found
        return _with_base(GoTable(data, vaddr, 0, "segment"), layout, f, sections, budget)
    for name in OWN_SECTIONS:
        sec = sections.get(name)
        if sec is not None and _usable(sec):
            data = read_section(f, sec.offset, sec.size, name, budget)
            return _with_base(GoTable(data, sec.addr, 0, name), layout, f, sections, budget)
    sec = sections.get(SHARED_SECTION)
    if sec is None or not may_have_table(sections):
        return None
    region = read_section(f, sec.offset, sec.size, SHARED_SECTION, budget)
    hits = gopclntab.scan(region, layout.little, budget)
    if not hits:  # a Go file always has a table: this one is damaged, or of a layout we do not read
        raise ValueError(
            f"no gopclntab of a layout we read (Go 1.16+) in {SHARED_SECTION} of a Go file "
            f"({sec.size} bytes searched): damaged, or built by Go 1.15 or older"
        )
    pos, _h = max(hits, key=lambda hit: hit[1].nfunc)
    return _with_base(GoTable(region[pos:], sec.addr + pos, 0, SHARED_SECTION), layout, f, sections, budget)


def _with_base(
    table: GoTable, layout: ElfLayout, f: BinaryIO, sections: dict[str, SectionInfo], budget: Budget
) -> GoTable:
    try:
        h = gopclntab.parse_header(table.data, little=layout.little)
    except ValueError:
        return table  # parse_functions reports it
    if h.version == "go1.16" or h.text_start:
        return GoTable(table.data, table.vaddr, h.text_start, table.where)
    field = table.vaddr + 8 + 2 * h.ptr_size  # magic/pad/minLC/ptrSize, nfunc, nfiles, textStart
    base = relative_addend(f, layout, sections, field, budget)
    if not base:
        raise ValueError(
            f"gopclntab textStart at {field:#x} is 0 in the file and no RELATIVE relocation sets it"
        )
    return GoTable(table.data, table.vaddr, base, table.where)


def relative_addend(
    f: BinaryIO, layout: ElfLayout, sections: dict[str, SectionInfo], vaddr: int, budget: Budget
) -> int:
    """The addend of the symbol-less RELA relocation at ``vaddr`` in ``.rela.dyn``; 0 when there is none."""
    sec = sections.get(_RELA_SECTION)
    if sec is None or sec.type not in _SHT_RELA or not sec.size or sec.size > _MAX_RELA_BYTES:
        return 0
    fmt = layout.endian + ("QQq" if layout.is64 else "IIi")
    rec = struct.calcsize(fmt)
    data = read_section(f, sec.offset, sec.size - sec.size % rec, _RELA_SECTION, budget)
    needle = struct.pack(layout.endian + ("Q" if layout.is64 else "I"), vaddr)
    pos = data.find(needle)
    while pos >= 0:
        if pos % rec == 0:
            _offset, info, addend = struct.unpack_from(fmt, data, pos)
            symbol = info >> 32 if layout.is64 else info >> 8
            if symbol == 0:
                return addend if addend > 0 else 0
        pos = data.find(needle, pos + 1)
    return 0


def function_symbols(
    f: BinaryIO, layout: ElfLayout, sections: dict[str, SectionInfo], budget: Budget
) -> list[RawSymbol]:
    """The Go function table of an open file as symbols (start, size, name, GLOBAL, 0); [] when it
    has none. A table found but unreadable is an ElfError ``malformed`` (moved from canonical/binary.py)."""
    try:
        found = find_table(f, layout, sections, budget)
        if found is None:
            return []
        h, funcs = gopclntab.parse_functions(
            found.data, little=layout.little, text_start=found.text_start, budget=budget
        )
        text_start = h.text_start or found.text_start
        if h.version != "go1.16":
            # The runtime's moduledata says where code starts: a table whose textStart is another
            # (damaged) would give every function its neighbour's name (canonical/gomoduledata.py).
            text = moduledata_text(f, layout, sections, found.vaddr, h, budget)
            if text is not None and text != text_start:
                raise ValueError(f"gopclntab textStart {text_start:#x} is not moduledata.text {text:#x}")
    except ValueError as e:
        raise ElfError(MALFORMED, str(e)) from None
    return [(start, end - start, name, STB_GLOBAL, 0) for start, end, name in funcs]
