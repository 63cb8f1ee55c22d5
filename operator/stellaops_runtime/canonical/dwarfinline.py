"""Which functions were inlined at an address, from DWARF's ``DW_TAG_inlined_subroutine`` DIEs.

Why this module exists: the agent counts every function on a user stack as "on_stack"
evidence, and a function the compiler inlined into its caller never has a frame of its own.
Without this, ``query observed`` would answer "not observed" for a vulnerable function that
did run. Where a binary has DWARF (or a separate debug file), its inlined-subroutine DIEs say
which functions were inlined at an address; the answer here is the one
``llvm-symbolizer --inlines`` gives, minus its last frame (the function the address is
physically in, which the symbol table already names).

How: the compile unit holding the address is found as ``DwarfIndex.file_line`` finds it
(``.debug_aranges``, else the units' own ranges). That unit's DIEs are decoded once, in order,
without pyelftools' per-unit DIE cache (so memory stays bounded), into an :class:`_UnitTable`:

- every ``DW_TAG_subprogram`` and ``DW_TAG_inlined_subroutine`` with code ranges becomes a
  span; the spans are flattened into disjoint segments, each owned by the innermost (deepest
  in the DIE tree) span covering it, as LLVM's address-to-DIE map does;
- every inlined DIE is a node with its nearest enclosing inlined DIE as parent (none past the
  enclosing subprogram), its own name attributes and its ``DW_AT_abstract_origin`` /
  ``DW_AT_specification`` targets;
- every subprogram DIE's name attributes and references are kept by offset, so a reference
  can be checked to land on a real subprogram DIE (never on bytes in the middle of a DIE).

A lookup is then one bisect plus a walk up the parents. Names are resolved lazily: the linkage
name (``DW_AT_linkage_name``/``DW_AT_MIPS_linkage_name``, mangled) anywhere along the
origin/specification references, else the first ``DW_AT_name`` (C; for C++ and Rust units a
plain name is counted in ``stats['plain_name']``). A reference into another unit
(``DW_FORM_ref_addr``) builds that unit's table too.

Hostile DWARF: a reference outside the section or the unit, to something that is not a
subprogram DIE, a loop of references, an unsupported reference form, a truncated or garbled
unit: the chain is ``()`` and the reason counted in :attr:`DwarfInlines.stats`; nothing raises.
Budgets (the caller's :class:`~stellaops_runtime.canonical.limits.Limits`): each unit walk may
decode ``max_dwarf_dies`` DIEs, and the walks one lookup needs (its unit, and the units its
origins are in) share one ``parse_seconds`` clock; a unit over budget is remembered as such
(never walked again while its table is cached), and its addresses answer ``()``. The caller
charges the DWARF sections' bytes (``check_dwarf_sections``) before handing the ELFFile over,
as ``Binary`` does for :class:`DwarfIndex`.
"""

from __future__ import annotations

import heapq
import logging
from bisect import bisect_right
from dataclasses import dataclass, field

from elftools.dwarf.compileunit import CompileUnit
from elftools.dwarf.die import DIE
from elftools.dwarf.dwarfinfo import DWARFInfo
from elftools.elf.elffile import ELFFile

from stellaops_runtime.canonical.dwarfinfo import DwarfIndex, die_ranges
from stellaops_runtime.canonical.dwarfnames import attr_text, mangles
from stellaops_runtime.canonical.elflayout import ElfError
from stellaops_runtime.canonical.limits import BUDGET_EXCEEDED, Budget
from stellaops_runtime.canonical.lru import LRU

__all__ = ["DwarfInlines", "dwarf_inlines"]

log = logging.getLogger(__name__)

_MAX_UNITS = 32  # unit tables kept per binary
_MAX_REF_HOPS = 16  # origin/specification references followed per name
_CHECK_EVERY = 512
_LOCAL_REFS = frozenset({"DW_FORM_ref1", "DW_FORM_ref2", "DW_FORM_ref4", "DW_FORM_ref8", "DW_FORM_ref_udata"})
_REF_ATTRS = ("DW_AT_abstract_origin", "DW_AT_specification")
_LINKAGE_ATTRS = ("DW_AT_linkage_name", "DW_AT_MIPS_linkage_name")
_BAD_REF = -1  # a reference this module cannot follow (unsupported form)

STAT_KEYS = (
    "lookups",
    "answered",  # lookups with a non-empty chain
    "no_unit",  # no compile unit covers the address
    "units_walked",
    "unit_unreadable",  # a unit's DIEs could not be decoded (truncated, garbled)
    "unit_over_budget",
    "bad_origin",  # a reference to no subprogram DIE (outside the unit/section, mid-DIE, bad form)
    "origin_loop",  # references that loop
    "no_name",  # an inlined DIE whose references give no name at all
    "plain_name",  # a C++/Rust inlined function named by DW_AT_name only (no linkage name)
    "ranges_unread",  # DW_AT_ranges in a form not decoded (neither a section offset nor rnglistx)
    "chains_dropped",  # lookups answered () because a link of the chain had no name
    "outside_code",  # DIE ranges in no executable section (code the linker dropped), left out
    "errors",  # anything else that failed in a lookup (e.g. an unreadable unit header or aranges)
)

# (linkage name, plain name, absolute offsets of the DIEs its origin/specification refer to)
_Names = tuple[str, str, tuple[int, ...]]


@dataclass(slots=True)
class _UnitTable:
    """One compile unit's inlined subroutines, flattened for lookup."""

    offset: int
    mangling: bool = False
    failed: bool = False
    starts: list[int] = field(default_factory=list)  # segment starts, sorted
    owners: list[int] = field(default_factory=list)  # segment -> node, -1: no inlined DIE
    parents: list[int] = field(default_factory=list)  # node -> enclosing node, -1: none
    nodes: list[_Names] = field(default_factory=list)  # node -> its own names and references
    subprograms: dict[int, _Names] = field(default_factory=dict)  # DIE offset -> names
    resolved: dict[int, str] = field(default_factory=dict)  # node -> name, "" when none


class DwarfInlines:
    """The inlined-subroutine chains of one binary's DWARF (the ELFFile must stay open)."""

    def __init__(self, index: DwarfIndex, budget: Budget) -> None:
        self._index = index
        self._limits = budget.limits
        self._what = budget.what
        self._call_budget: Budget | None = None  # shared by the unit walks of one lookup
        self._dwarf: DWARFInfo | None = None
        self._units: LRU[int, _UnitTable] = LRU(_MAX_UNITS)
        self._unit_bounds: tuple[list[int], list[int]] | None = None  # (starts, ends) of units
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)

    def inlined_at(self, vaddr: int) -> tuple[str, ...]:
        """Raw (mangled where DWARF has a linkage name) names of the subroutines inlined at
        vaddr, innermost first; () when none. The function the address is physically in is
        NOT included. Never raises (bad DWARF: () and counted in stats)."""
        self.stats["lookups"] += 1
        self._call_budget = None
        try:
            chain = self._chain(vaddr)
        except Exception as e:  # pyelftools raises anything on hostile input; never the caller's problem
            self.stats["errors"] += 1
            log.debug("inline lookup at %#x failed: %s: %s", vaddr, type(e).__name__, e)
            return ()
        if chain:
            self.stats["answered"] += 1
        return chain

    # -- lookup ------------------------------------------------------------

    def _chain(self, vaddr: int) -> tuple[str, ...]:
        unit_offset = self._index.cu_offset_for(vaddr)
        if unit_offset < 0:
            self.stats["no_unit"] += 1
            return ()
        table = self._table(unit_offset)
        if table.failed:
            return ()
        i = bisect_right(table.starts, vaddr) - 1
        node = table.owners[i] if i >= 0 else -1
        names: list[str] = []
        hops = 0
        while node >= 0 and hops <= len(table.parents):
            name = table.resolved.get(node)
            if name is None:
                name = self._resolve(table, table.nodes[node])
                table.resolved[node] = name
            if not name:
                self.stats["chains_dropped"] += 1
                return ()
            names.append(name)
            node = table.parents[node]
            hops += 1
        return tuple(names)

    def _resolve(self, table: _UnitTable, own: _Names) -> str:
        """The linkage name along the references, else the first plain name; "" (counted) if neither."""
        plain = ""
        todo = [own]
        seen: set[int] = set()
        hops = 0
        while todo:
            linkage, name, refs = todo.pop()
            if linkage:
                return linkage
            plain = plain or name
            for ref in reversed(refs):  # abstract origin first, as it is listed first
                if ref in seen:
                    self.stats["origin_loop"] += 1
                    return ""
                seen.add(ref)
                target = self._subprogram_at(table, ref)
                if target is None:
                    self.stats["bad_origin"] += 1
                    return ""
                todo.append(target)
            hops += 1
            if hops > _MAX_REF_HOPS:
                self.stats["origin_loop"] += 1
                return ""
        if not plain:
            self.stats["no_name"] += 1
        elif table.mangling:
            self.stats["plain_name"] += 1
        return plain

    def _subprogram_at(self, table: _UnitTable, offset: int) -> _Names | None:
        """The names of the subprogram DIE at ``offset`` in .debug_info, None when there is none."""
        if offset < 0:
            return None
        found = table.subprograms.get(offset)
        if found is not None:
            return found
        unit_offset = self._unit_containing(offset)
        if unit_offset < 0 or unit_offset == table.offset:
            return None
        other = self._table(unit_offset)
        return None if other.failed else other.subprograms.get(offset)

    def _unit_containing(self, offset: int) -> int:
        if self._unit_bounds is None:
            starts: list[int] = []
            ends: list[int] = []
            budget = self._budget()
            for n, cu in enumerate(self._info().iter_CUs()):
                starts.append(cu.cu_offset)
                ends.append(cu.cu_offset + cu.size)
                if not n % _CHECK_EVERY:
                    budget.check_time("DWARF units")
            self._unit_bounds = (starts, ends)
        starts, ends = self._unit_bounds
        i = bisect_right(starts, offset) - 1
        return starts[i] if i >= 0 and offset < ends[i] else -1

    def _budget(self) -> Budget:
        """The wall clock of this lookup: all the unit walks one lookup needs share it."""
        if self._call_budget is None:
            self._call_budget = self._limits.budget(self._what)
        return self._call_budget

    def _info(self) -> DWARFInfo:
        if self._dwarf is None:
            self._dwarf = self._index.dwarf_info()
        return self._dwarf

    # -- one unit's table ----------------------------------------------------

    def _table(self, unit_offset: int) -> _UnitTable:
        table = self._units.get(unit_offset)
        if table is not None:
            return table
        try:
            table = self._walk(unit_offset)
            self.stats["units_walked"] += 1
        except ElfError as e:
            table = _UnitTable(unit_offset, failed=True)
            self.stats["unit_over_budget" if e.reason == BUDGET_EXCEEDED else "unit_unreadable"] += 1
            log.debug("DWARF unit at %#x not read for inlines: %s", unit_offset, e)
        except Exception as e:  # truncated or garbled unit: pyelftools raises anything
            table = _UnitTable(unit_offset, failed=True)
            self.stats["unit_unreadable"] += 1
            log.debug("DWARF unit at %#x unreadable for inlines: %s: %s", unit_offset, type(e).__name__, e)
        self._units.put(unit_offset, table)
        return table

    def _walk(self, unit_offset: int) -> _UnitTable:
        dwarf = self._info()
        cu = dwarf.get_CU_at(unit_offset)
        budget = self._budget()
        table = _UnitTable(unit_offset, mangling=mangles(cu))
        section = dwarf.debug_info_sec
        if section is None:
            raise ElfError("malformed", "no .debug_info")
        stream = section.stream
        end = cu.cu_offset + cu.size
        if end > section.size:
            raise ElfError("malformed", f"unit at {unit_offset:#x} ends past .debug_info")
        top = cu.get_top_DIE()
        # spans: (low, high, tree depth, DIE order, node or -1 for a subprogram)
        spans: list[tuple[int, int, int, int, int]] = []
        stack: list[int] = [-1]  # per open DIE: the node of the nearest inlined DIE, -1 past a subprogram
        pos = top.offset + top.size
        count = 0
        while pos < end:
            die = DIE(cu=cu, stream=stream, offset=pos)
            if die.size <= 0:
                raise ElfError("malformed", f"empty DIE at {pos:#x}")
            pos += die.size
            count += 1
            if not count % _CHECK_EVERY:
                budget.check_time("DWARF inlines")
                if count > self._limits.max_dwarf_dies:
                    raise budget.exceeded(
                        f"more than {self._limits.max_dwarf_dies} DWARF entries in one unit"
                    )
            if die.is_null():
                if len(stack) > 1:
                    stack.pop()
                continue
            enclosing = stack[-1]
            tag = die.tag
            opens = enclosing
            if tag == "DW_TAG_subprogram":
                table.subprograms[die.offset] = _names(cu, die)
                self._add_spans(dwarf, cu, die, spans, len(stack), count, -1)
                opens = -1
            elif tag == "DW_TAG_inlined_subroutine":
                node = len(table.nodes)
                table.nodes.append(_names(cu, die))
                table.parents.append(enclosing)
                self._add_spans(dwarf, cu, die, spans, len(stack), count, node)
                opens = node
            if die.has_children:
                stack.append(opens)
        table.starts, table.owners = _segments(spans)
        return table

    def _add_spans(
        self,
        dwarf: DWARFInfo,
        cu: CompileUnit,
        die: DIE,
        spans: list[tuple[int, int, int, int, int]],
        depth: int,
        order: int,
        node: int,
    ) -> None:
        ranges = die_ranges(dwarf, cu, die)
        if not ranges and "DW_AT_ranges" in die.attributes:
            self.stats["ranges_unread"] += 1
        code = self._index.code
        for low, high in ranges:
            if not code.holds(low, high):
                if high > low:
                    self.stats["outside_code"] += 1
                continue
            spans.append((low, high, depth, order, node))


def _names(cu: CompileUnit, die: DIE) -> _Names:
    linkage = ""
    for linkage_attr in _LINKAGE_ATTRS:
        linkage = linkage or attr_text(die, linkage_attr)
    refs: list[int] = []
    for ref_attr in _REF_ATTRS:
        ref = die.attributes.get(ref_attr)
        if ref is None:
            continue
        if ref.form in _LOCAL_REFS:
            refs.append(cu.cu_offset + int(ref.raw_value))
        elif ref.form == "DW_FORM_ref_addr":
            refs.append(int(ref.raw_value))
        else:
            refs.append(_BAD_REF)
    return linkage, attr_text(die, "DW_AT_name"), tuple(refs)


def _segments(spans: list[tuple[int, int, int, int, int]]) -> tuple[list[int], list[int]]:
    """Disjoint segments (starts, owning node), each owned by the deepest span covering it.

    Among spans of equal depth (siblings that overlap, which well-formed DWARF does not have)
    the later DIE wins. -1 marks addresses no inlined DIE owns (a subprogram's own code, gaps).
    """
    if not spans:
        return [], []
    points = sorted({p for s in spans for p in (s[0], s[1])})
    by_low = sorted(spans, key=lambda s: s[0])
    heap: list[tuple[int, int, int, int]] = []  # (-depth, -order, high, node)
    starts: list[int] = []
    owners: list[int] = []
    j = 0
    for pos in points:
        while j < len(by_low) and by_low[j][0] == pos:
            _, high, depth, order, node = by_low[j]
            heapq.heappush(heap, (-depth, -order, high, node))
            j += 1
        while heap and heap[0][2] <= pos:
            heapq.heappop(heap)
        owner = heap[0][3] if heap else -1
        if owners and owners[-1] == owner:
            continue
        starts.append(pos)
        owners.append(owner)
    return starts, owners


def dwarf_inlines(elf: ELFFile, budget: Budget, index: DwarfIndex | None = None) -> DwarfInlines | None:
    """None when the file has no .debug_info.

    ``index``: the binary's :class:`DwarfIndex` when it has one already, so one DWARF view and
    one unit lookup serve both; else one is made here. ``budget``'s limits bound each unit walk.
    """
    try:
        if elf.get_section_by_name(".debug_info") is None and elf.get_section_by_name(".zdebug_info") is None:
            return None
    except Exception as e:  # damaged section headers
        log.debug("no DWARF for inlines: %s: %s", type(e).__name__, e)
        return None
    return DwarfInlines(index if index is not None else DwarfIndex(elf, budget), budget)
