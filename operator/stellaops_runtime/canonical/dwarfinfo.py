"""DWARF through pyelftools: function ranges (a symbol source) and file:line for an address.

DWARF is the slowest source to read (pyelftools decodes every DIE in
Python), so nothing here runs until it is needed, and then only once per
binary:

- :meth:`DwarfIndex.functions` walks every compile unit's
  ``DW_TAG_subprogram`` DIEs with code ranges (``DW_AT_low_pc`` +
  ``DW_AT_high_pc``, or ``DW_AT_ranges``) and names each by its linkage name
  (``DW_AT_linkage_name``, mangled, so it demangles to the same canonical
  name as the symbol table would give) or else its plain ``DW_AT_name``,
  following ``DW_AT_specification``/``DW_AT_abstract_origin``. The symbolizer
  only asks for it when ``.symtab`` and ``.dynsym`` have no function there, so
  the names must be the ones the symbol table would give: a function's
  ``.cold`` part is named and measured as GCC's ``foo.cold`` symbol is, and
  functions whose symbol name DWARF does not record are left out rather than
  given a short name many functions share (docs/function-ids.md, "DWARF").
- :meth:`DwarfIndex.file_line` finds the compile unit through
  ``.debug_aranges`` (or the units' own ranges) and decodes that unit's line
  program only, caching its rows.

Before pyelftools sees a byte, :func:`check_dwarf_sections` adds up what it
would read: every DWARF section's size *after decompression* (the
``SHF_COMPRESSED`` header's ``ch_size``; for legacy ``.zdebug_*`` sections
the claimed size, verified by inflating into nothing, since pyelftools
inflates those without a bound) must fit the file's parse budget. The DIE
walk checks the DIE count and the clock as it goes.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from bisect import bisect_right
from typing import Any

from elftools.common.exceptions import ELFError
from elftools.dwarf.aranges import ARanges
from elftools.dwarf.compileunit import CompileUnit
from elftools.dwarf.die import DIE
from elftools.dwarf.dwarfinfo import DWARFInfo
from elftools.dwarf.ranges import BaseAddressEntry
from elftools.elf.elffile import ELFFile

from stellaops_runtime.canonical.addrindex import STB_GLOBAL, RawSymbol
from stellaops_runtime.canonical.dwarfcode import CodeRanges
from stellaops_runtime.canonical.dwarflinefile import line_file_name
from stellaops_runtime.canonical.dwarfmixed import fill_mixed_sections
from stellaops_runtime.canonical.dwarfnames import (
    attr_text,
    code_parts,
    mangles,
    own_linkage_name,
    usable_name,
)
from stellaops_runtime.canonical.elflayout import ElfError, ElfLayout
from stellaops_runtime.canonical.limits import MALFORMED, Budget, Limits, pread_exact
from stellaops_runtime.canonical.symtab import SHF_COMPRESSED, SectionInfo

log = logging.getLogger(__name__)

_ADDRX_FORMS = frozenset(
    {"DW_FORM_addrx", "DW_FORM_addrx1", "DW_FORM_addrx2", "DW_FORM_addrx3", "DW_FORM_addrx4"}
)
# DW_AT_ranges: an offset in .debug_ranges/.debug_rnglists, or (DWARF 5) an index into the
# unit's offset table there, which pyelftools resolves to the same kind of offset
_RANGES_FORMS = frozenset({"DW_FORM_sec_offset", "DW_FORM_rnglistx"})
_MAX_LINE_CACHE = 64
_CHECK_EVERY = 1024
_UNITS_CHECK_EVERY = 64  # a unit's top DIE costs far more than one DIE of a walk


def is_dwarf_section(name: str) -> bool:
    """Sections pyelftools reads whole when it builds its DWARF view."""
    return name.startswith((".debug_", ".zdebug_")) or name == ".eh_frame"


def check_dwarf_sections(fd: int, sections: list[SectionInfo], layout: ElfLayout, budget: Budget) -> int:
    """Charge ``budget`` with the bytes pyelftools would hold for DWARF; ElfError if over or damaged."""
    total = 0
    e = layout.endian
    for sec in sections:
        if not is_dwarf_section(sec.name) or sec.type == "SHT_NOBITS" or not sec.size:
            continue
        if sec.offset + sec.size > layout.size:
            raise ElfError("truncated_elf", f"{sec.name} ends past the end of the file")
        size = sec.size
        if sec.flags & SHF_COMPRESSED:
            fmt = e + ("IIQQ" if layout.is64 else "III")
            head = pread_exact(
                fd, sec.offset, struct.calcsize(fmt), file_size=layout.size, budget=None, what=sec.name
            )
            size = struct.unpack(fmt, head)[2 if layout.is64 else 1]
        elif sec.name.startswith(".zdebug_") and sec.size >= 12:
            head = pread_exact(fd, sec.offset, 12, file_size=layout.size, budget=None, what=sec.name)
            if head[:4] == b"ZLIB":
                size = struct.unpack(">Q", head[4:])[0]
                budget.charge(size, sec.name)
                _check_inflated_size(fd, sec, size, budget)
                total += size
                continue
        budget.charge(size, sec.name)
        total += size
    return total


def _check_inflated_size(fd: int, sec: SectionInfo, claimed: int, budget: Budget) -> None:
    """Inflate a ``.zdebug_*`` section into nothing: its real size must be the claimed one."""
    d = zlib.decompressobj()
    out = 0
    pos, end = sec.offset + 12, sec.offset + sec.size
    try:
        while pos < end:
            chunk = os.pread(fd, min(1 << 20, end - pos), pos)
            if not chunk:
                break
            pos += len(chunk)
            data = d.decompress(chunk, 1 << 20)
            while True:
                out += len(data)
                if out > claimed:
                    raise budget.exceeded(f"{sec.name} inflates past its claimed {claimed} bytes")
                if not d.unconsumed_tail:
                    break
                data = d.decompress(d.unconsumed_tail, 1 << 20)
            budget.check_time(sec.name)
        out += len(d.flush())
    except zlib.error as err:
        raise ElfError(MALFORMED, f"{sec.name}: {err}") from None
    if out != claimed:
        raise ElfError(MALFORMED, f"{sec.name} inflates to {out} bytes, claims {claimed}")


class DwarfIndex:
    """Lazily decoded DWARF of one binary (the ELFFile must stay open)."""

    def __init__(self, elf: ELFFile, budget: Budget | None = None) -> None:
        self._elf = elf
        self._budget = budget
        self._dwarf: DWARFInfo | None = None
        self._cu_ranges: list[tuple[int, int, int]] | None = None  # (low, high, cu offset)
        self._aranges: list[ARanges | None] = []  # parsed once: pyelftools re-reads it per call
        self._lines: dict[int, tuple[list[int], list[tuple[str, int]]]] = {}
        self.errors = 0
        self.units_over_budget = 0  # walks over every unit's top DIE stopped by the parse budget
        self.unnamed = 0  # subprograms with code but no symbol name in DWARF (left out)
        self.ambiguous = 0  # clone bodies named like another body (left out)
        self.code = CodeRanges.of(elf)  # where the file has code (canonical/dwarfcode.py)
        self.outside_code = 0  # subprograms left out: a range in no code (the linker dropped it)

    def _info(self) -> DWARFInfo:
        if self._dwarf is None:
            self._dwarf = self._elf.get_dwarf_info(relocate_dwarf_sections=False)
            fill_mixed_sections(self._elf, self._dwarf)  # .zdebug_* beside .debug_*
        return self._dwarf

    # -- functions ---------------------------------------------------------

    def functions(self) -> list[RawSymbol]:
        """Every subprogram with code, as (start, size, linkage-or-plain name, GLOBAL, 0).

        A subprogram split into parts (GCC's hot/cold partitioning: ``DW_AT_ranges`` with the
        entry part first) gives one entry per part, each measured from its own start; parts after
        the entry part are named ``<name>.cold``, as the symbol table names them (GCC's
        ``foo.cold`` symbol). Subprograms whose symbol name DWARF cannot tell are left out
        (counted in :attr:`unnamed` and :attr:`ambiguous`, see :func:`_usable_name`).
        """
        dwarf = self._info()
        out: list[RawSymbol] = []
        budget = self._budget
        dies = 0
        # out-of-line bodies per abstract origin: two or more are GCC clones named alike
        by_origin: dict[int, list[tuple[int, int]]] = {}
        for cu in dwarf.iter_CUs():
            try:
                mangling = mangles(cu)
                for die in cu.iter_DIEs():
                    dies += 1
                    if budget is not None and not dies % _CHECK_EVERY:
                        budget.check_time("DWARF")
                        if dies > budget.limits.max_dwarf_dies:
                            raise budget.exceeded(f"more than {budget.limits.max_dwarf_dies} DWARF entries")
                        budget.check_symbols(len(out), "DWARF")
                    if die.tag != "DW_TAG_subprogram":
                        continue
                    ranges = _die_ranges(dwarf, cu, die)
                    if not ranges:
                        continue
                    if not self.code.holds_all(ranges):
                        self.outside_code += 1  # code the linker dropped: its range is a tombstone
                        continue
                    name = usable_name(die, mangling)
                    if not name:
                        self.unnamed += 1
                        continue
                    first = len(out)
                    for i, (low, high) in enumerate(code_parts(ranges)):
                        out.append((low, high - low, name if i == 0 else name + ".cold", STB_GLOBAL, 0))
                    origin = die.attributes.get("DW_AT_abstract_origin")
                    if origin is not None and len(out) > first and not own_linkage_name(die):
                        key = int(origin.value) + (0 if origin.form == "DW_FORM_ref_addr" else cu.cu_offset)
                        by_origin.setdefault(key, []).append((first, len(out)))
            except ElfError:
                raise
            except (ELFError, KeyError, ValueError, IndexError, AttributeError) as e:
                # One damaged unit must not hide the others.
                self.errors += 1
                log.debug("DWARF unit at %#x unreadable: %s", cu.cu_offset, e)
        return self._drop_clones(out, by_origin)

    def _drop_clones(
        self, out: list[RawSymbol], by_origin: dict[int, list[tuple[int, int]]]
    ) -> list[RawSymbol]:
        """Leave out bodies that share an abstract origin with another body at another address.

        GCC's IPA clones (``foo.isra.0``, ``foo.constprop.0``, ``foo.part.0``) are DIEs that point
        to their origin's DIE and carry no name of their own, so DWARF would name the clone and
        the original alike: two code ranges under one name, and neither can be told from the
        other.
        """
        drop: set[int] = set()
        for spans in by_origin.values():
            if len({out[first][0] for first, _ in spans}) > 1:
                for first, end in spans:
                    drop.update(range(first, end))
                self.ambiguous += len(spans)
        return [sym for i, sym in enumerate(out) if i not in drop] if drop else out

    # -- lines -------------------------------------------------------------

    def file_line(self, address: int) -> str:
        """``path:line`` of the line-table row covering ``address``, or "" when unknown."""
        try:
            cu_offset = self._cu_offset_for(address)
            if cu_offset < 0:
                return ""
            rows = self._lines.get(cu_offset)
            if rows is None:
                rows = self._line_rows(cu_offset)
                if len(self._lines) >= _MAX_LINE_CACHE:
                    self._lines.pop(next(iter(self._lines)))
                self._lines[cu_offset] = rows
        except Exception as e:  # pyelftools raises anything on hostile input (AssertionError, ...)
            self.errors += 1
            log.debug("DWARF line lookup at %#x failed: %s: %s", address, type(e).__name__, e)
            return ""
        addrs, where = rows
        i = bisect_right(addrs, address) - 1
        if i < 0:
            return ""
        path, line = where[i]
        return f"{path}:{line}" if path and line else ""

    # public aliases for canonical/dwarfinline.py (one DWARF view and CU lookup per binary)
    def dwarf_info(self) -> DWARFInfo:
        return self._info()

    def cu_offset_for(self, address: int) -> int:
        """Offset of the compile unit holding ``address`` (aranges, else unit ranges); -1 if none."""
        return self._cu_offset_for(address)

    def _cu_offset_for(self, address: int) -> int:
        dwarf = self._info()
        if not self._aranges:
            try:
                self._aranges.append(dwarf.get_aranges())
            except Exception as e:  # damaged .debug_aranges: the units' own ranges still answer
                self.errors += 1
                log.debug("DWARF aranges unreadable: %s: %s", type(e).__name__, e)
                self._aranges.append(None)
        aranges = self._aranges[0]
        if aranges is not None:
            off = aranges.cu_offset_at_addr(address)
            if off is not None:
                return int(off)
        if self._cu_ranges is None:
            self._cu_ranges = self._unit_ranges(dwarf)
        for low, high, off in self._cu_ranges:
            if low <= address < high:
                return off
        return -1

    def _unit_ranges(self, dwarf: DWARFInfo) -> list[tuple[int, int, int]]:
        """Every unit's code ranges, from its top DIE: what answers without ``.debug_aranges``
        (clang writes none by default). One walk over the units, under a parse budget of its own
        (its clock starts here, not when the file was opened); a walk over budget is remembered
        as answering nothing (counted in :attr:`errors` and :attr:`units_over_budget`)."""
        limits = self._budget.limits if self._budget is not None else Limits()
        budget = limits.budget("DWARF unit ranges")
        ranges: list[tuple[int, int, int]] = []
        try:
            for n, cu in enumerate(dwarf.iter_CUs(), 1):
                if not n % _UNITS_CHECK_EVERY:
                    budget.check_time("DWARF unit ranges")
                if n > limits.max_dwarf_dies:  # each unit decodes at least its top DIE
                    raise budget.exceeded(f"more than {limits.max_dwarf_dies} DWARF units")
                try:
                    top = cu.get_top_DIE()
                    tops = [r for r in _die_ranges(dwarf, cu, top) if self.code.holds(*r)]
                    ranges.extend((low, high, cu.cu_offset) for low, high in tops)
                except (ELFError, KeyError, ValueError, IndexError, AttributeError, AssertionError) as e:
                    self.errors += 1  # one damaged unit must not hide the others
                    log.debug("DWARF unit at %#x: top entry unreadable: %s", cu.cu_offset, e)
        except ElfError as e:
            self.errors += 1
            self.units_over_budget += 1
            log.debug("DWARF unit ranges not read: %s", e)
            return []
        except (ELFError, KeyError, ValueError, IndexError, AttributeError) as e:
            self.errors += 1  # a damaged unit header ends the walk: the units before it answer
            log.debug("DWARF units unreadable after %d ranges: %s", len(ranges), e)
        return ranges

    def _line_rows(self, cu_offset: int) -> tuple[list[int], list[tuple[str, int]]]:
        dwarf = self._info()
        cu = dwarf.get_CU_at(cu_offset)
        prog = dwarf.line_program_for_CU(cu)
        if prog is None:
            return [], []
        version = prog["version"]
        files = prog["file_entry"]
        dirs = prog["include_directory"]
        comp_dir = attr_text(cu.get_top_DIE(), "DW_AT_comp_dir")
        rows: list[tuple[int, int, str, int]] = []
        for entry in prog.get_entries():
            st = entry.state
            if st is None:
                continue
            if st.end_sequence:
                rows.append((st.address, 0, "", 0))
                continue
            rows.append((st.address, 1, line_file_name(files, dirs, st.file, version, comp_dir), st.line))
        rows.sort(key=lambda r: (r[0], r[1]))
        return [r[0] for r in rows], [(r[2], r[3]) for r in rows]


def _address(dwarf: DWARFInfo, cu: CompileUnit, attr: Any) -> int:
    if attr.form in _ADDRX_FORMS:  # DWARF 5 (clang's default): an index into .debug_addr
        # raw_value is the index; pyelftools may already have put the address in value
        return int(dwarf.get_addr(cu, attr.raw_value))
    return int(attr.value)


def _die_ranges(dwarf: DWARFInfo, cu: CompileUnit, die: DIE) -> list[tuple[int, int]]:
    attrs = die.attributes
    low_attr = attrs.get("DW_AT_low_pc")
    high_attr = attrs.get("DW_AT_high_pc")
    if low_attr is not None and high_attr is not None:
        low = _address(dwarf, cu, low_attr)
        if high_attr.form == "DW_FORM_addr" or high_attr.form in _ADDRX_FORMS:
            high = _address(dwarf, cu, high_attr)
        else:
            high = low + int(high_attr.value)  # DWARF 4+: an offset from low_pc
        return [(low, high)]
    ranges_attr = attrs.get("DW_AT_ranges")
    if ranges_attr is None or ranges_attr.form not in _RANGES_FORMS:
        return []
    base = 0
    top = cu.get_top_DIE()
    top_low = top.attributes.get("DW_AT_low_pc")
    if top_low is not None:
        base = _address(dwarf, cu, top_low)
    out: list[tuple[int, int]] = []
    lists = dwarf.range_lists()
    if lists is None:
        return []
    # DW_FORM_rnglistx (DWARF 5, clang): pyelftools has turned the index into the list's offset
    # in .debug_rnglists through the unit's DW_AT_rnglists_base, as sec_offset gives it
    for entry in lists.get_range_list_at_offset(ranges_attr.value, cu=cu):
        if isinstance(entry, BaseAddressEntry):
            base = entry.base_address
            continue
        if entry.is_absolute:
            out.append((entry.begin_offset, entry.end_offset))
        else:
            out.append((base + entry.begin_offset, base + entry.end_offset))
    return out


die_ranges = _die_ranges  # public alias for canonical/dwarfinline.py
