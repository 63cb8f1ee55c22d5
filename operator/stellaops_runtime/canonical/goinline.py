"""Go's inline tree: the functions inlined at an address of a Go binary, stripped or not.

Why this exists: Go inlines small functions into their callers, so a return
address inside ``net/http.(*conn).serve`` may really be inside the code of
``net/http.readRequest`` inlined there. Reporting only the physical function
would answer "not observed" for a function that ran. Go's runtime expands such
frames itself (``runtime.CallersFrames``) from tables in the pclntab that
``-ldflags=-s -w`` keeps; this module reads the same tables. Facts from Go's
``runtime/runtime2.go`` (``_func``), ``runtime/symtab.go`` (``moduledata``,
``pcvalue``), ``runtime/symtabinl.go`` (``inlinedCall``, the inline unwinder):

==================  ==============================  ===============================
                    Go 1.18, 1.19 (magic fffffff0)  Go 1.20+ (magic fffffff1)
==================  ==============================  ===============================
``_func`` header    40 bytes: entryoff, nameoff,    44 bytes: as 1.18 with startLine
                    args, deferreturn, pcsp,        int32 after cuOffset
                    pcfile, pcln, npcdata (+28),
                    cuOffset uint32; funcID, flag,
                    pad, nfuncdata (+39) uint8
then                npcdata uint32 pctab offsets, then nfuncdata uint32 offsets from
                    ``moduledata.gofunc`` (^0 = absent)
inline tree entry   20 bytes: parent int16, funcID  16 bytes: funcID uint8, pad[3],
                    uint8, pad, file, line, func_   nameOff, parentPc, startLine int32
                    (nameoff), parentPc int32
``moduledata``      word 38 (ptrSize words)         word 40 (covctrs, ecovctrs added)
gofunc
==================  ==============================  ===============================

PCDATA_InlTreeIndex = 2 and FUNCDATA_InlTree = 3. A pc-value table starts at
value -1 and pc = entry; each step is a zig-zag varint value delta (a first
byte 0 ends the table, except on the first step) and a varint pc delta times
minLC; the value at ``pc`` is that of the first step whose end is past ``pc``.
Expansion, as the runtime's inline unwinder: ``ix = value(pc)``; while
``ix >= 0``: emit ``tree[ix]``'s name (funcnametab + nameOff), ``pc = entry +
tree[ix].parentPc``, ``ix = value(pc)``. The physical function is not emitted.
A walk that comes back to an entry it has read (Go issue 54625) keeps only the
innermost name.
Wrapper functions are reported as written (the runtime elides some in tracebacks).

``moduledata.gofunc`` is found by canonical/gomoduledata.py (the runtime's
moduledata, confirmed against this table; RELATIVE relocations when the
linker left the words 0 in the file). Go 1.16/1.17 tables (absolute
funcdata pointers) are not read: :func:`load_go_inlines` returns None for them.

Everything is lazy: the function table is indexed at load; a function's
inline-index table is decoded, and its inline tree entries are read from the
file (``pread``; the caller keeps ``f`` open), the first time an address in it
is asked about, and kept in a bounded LRU. A damaged table answers ``()``
with a reason counted in :attr:`GoInlines.stats`; nothing raises to the caller.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from stellaops_runtime.canonical import gopclnfind
from stellaops_runtime.canonical.elflayout import ElfError, ElfLayout
from stellaops_runtime.canonical.gomoduledata import find_gofunc
from stellaops_runtime.canonical.gopclntab import PclnHeader, parse_header
from stellaops_runtime.canonical.limits import MALFORMED, Budget, pread_exact
from stellaops_runtime.canonical.lru import LRU
from stellaops_runtime.canonical.symtab import SectionInfo

PCDATA_INL_TREE_INDEX = 2
FUNCDATA_INL_TREE = 3
MAX_CHAIN = 64  # inlining depth bound; a longer chain is a loop in damaged data
MAX_TREE_ENTRIES = 1 << 16
MAX_PC_STEPS = 1 << 17
MAX_NAME_BYTES = 4096
FUNC_CACHE = 1024
_ABSENT = 0xFFFFFFFF

ReadAt = Callable[[int, int], bytes]  # (offset from gofunc, size) -> exactly size bytes, or raises


@dataclass(frozen=True, slots=True)
class TableFormat:
    """Where a pclntab version keeps what the inline expansion needs."""

    func_header: int  # bytes of _func before its pcdata offsets
    nfuncdata_at: int
    entry_size: int  # one inline tree entry
    name_at: int
    parent_pc_at: int
    gofunc_word: int  # index of gofunc among moduledata's pointer-sized words


GO118 = TableFormat(
    func_header=40, nfuncdata_at=39, entry_size=20, name_at=12, parent_pc_at=16, gofunc_word=38
)
GO120 = TableFormat(func_header=44, nfuncdata_at=43, entry_size=16, name_at=4, parent_pc_at=8, gofunc_word=40)
FORMATS = {"go1.18": GO118, "go1.20": GO120}
_NPCDATA_AT = 28


class Malformed(Exception):
    """Damaged inline data for one function; ``reason`` is the stats key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _FuncInline:
    entry: int
    end: int
    ends: list[int]  # pc-value runs: value vals[k] for pcs below ends[k] (and at or past ends[k-1])
    vals: list[int]
    tree: list[tuple[int, int]]  # (nameOff, parentPc) per entry


_NONE = _FuncInline(0, 0, [], [], [])  # a function with no inline tree
_BAD = _FuncInline(0, 0, [], [], [])  # a function whose tables are damaged


def decode_pcvalue(data: bytes, pos: int, entry: int, end: int, quantum: int) -> tuple[list[int], list[int]]:
    """The runs of the pc-value table at ``data[pos:]`` up to ``end``: (run ends, values).

    Raises :class:`Malformed` when the table runs past ``data`` or takes more steps
    before ``end`` than the function has instructions (plus slack; at most :data:`MAX_PC_STEPS`).
    """
    ends: list[int] = []
    vals: list[int] = []
    pc, val, size = entry, -1, len(data)
    max_steps = min(MAX_PC_STEPS, (end - entry) // max(quantum, 1) + 16)  # a step covers >= 1 instruction
    while pc < end:
        if len(ends) >= max_steps:
            raise Malformed("pctab_too_long")
        if pos >= size:
            raise Malformed("pctab_truncated")
        if data[pos] == 0 and pc != entry:
            break
        uv, pos = _uvarint(data, pos)
        val += -(uv & 1) ^ (uv >> 1)
        val = (val + (1 << 31)) % (1 << 32) - (1 << 31)  # int32, as the runtime adds
        delta, pos = _uvarint(data, pos)
        pc += delta * quantum
        ends.append(pc)
        vals.append(val)
    return ends, vals


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    v = shift = 0
    for _ in range(5):
        if pos >= len(data):
            raise Malformed("pctab_truncated")
        b = data[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            return v & 0xFFFFFFFF, pos
        shift += 7
    raise Malformed("pctab_varint")


class GoInlines:
    """The inline trees of one Go binary, decoded per function on first use.

    ``stats`` counts ``lookups``, ``expanded`` (non-empty answers), ``outside``
    (address in no function), ``malformed`` (answers refused for damaged data)
    and, per refusal, its reason (``chain_too_long``, ``pctab_truncated``,
    ``name_outside``, ``tree_unreadable``...), and ``chain_cycle``: a parentPc
    leading back into the chain (Go issue 54625; Go 1.24 writes such trees),
    answered with the innermost name only, the one the pc itself gives. Not
    thread-safe: its caches are plain LRUs; use it from one thread.
    """

    def __init__(
        self,
        table: bytes,
        header: PclnHeader,
        fmt: TableFormat,
        entries: list[int],
        funcoffs: list[int],
        read_tree: ReadAt,
        *,
        little: bool = True,
        cache_size: int = FUNC_CACHE,
    ) -> None:
        """``entries`` has one more element than ``funcoffs`` (the end of the last function)."""
        self._data = table
        self._h = header
        self._fmt = fmt
        self._entries = entries
        self._funcoffs = funcoffs
        self._read_tree = read_tree
        self._e = "<" if little else ">"
        self._names_end = header.cu_offset if header.cu_offset > header.funcname_offset else len(table)
        self._cache: LRU[int, _FuncInline] = LRU(cache_size)
        self._names: LRU[int, str] = LRU(cache_size * 4)
        self.stats: dict[str, int] = {"lookups": 0, "expanded": 0, "outside": 0, "malformed": 0}

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    def inlined_at(self, vaddr: int) -> tuple[str, ...]:
        """Raw funcnametab names of functions inlined at vaddr, innermost first; () if none
        or the address is outside every function. Never raises (bad data: () and counted)."""
        self._count("lookups")
        i = bisect.bisect_right(self._entries, vaddr) - 1
        if i < 0 or i >= len(self._funcoffs) or vaddr >= self._entries[i + 1]:
            self._count("outside")
            return ()
        fi = self._cache.get(i)
        if fi is None:
            try:
                fi = self._decode(i)
            except Malformed as e:
                self._count(e.reason)
                fi = _BAD
            except (ElfError, OSError, ValueError, IndexError, struct.error):  # file closed/truncated/moved
                self._count("tree_unreadable")
                fi = _BAD
            self._cache.put(i, fi)
        if fi is _BAD:
            self._count("malformed")
            return ()
        if not fi.tree:
            return ()
        try:
            chain = self._expand(fi, vaddr)
        except Malformed as e:
            self._count(e.reason)
            self._count("malformed")
            return ()
        if chain:
            self._count("expanded")
        return chain

    def _expand(self, fi: _FuncInline, pc: int) -> tuple[str, ...]:
        out: list[str] = []
        seen: set[int] = set()
        ix = _value_at(fi, pc)
        while ix >= 0:
            if ix in seen:  # a parentPc leading back into the chain (Go issue 54625; seen in Go 1.24 inits)
                # The innermost name comes from the pc itself and stays true; the parentPc walk
                # after it does not (measured on Go 1.24's docker: the second name repeated the
                # first). Keep only it: a "not observed" must not follow from Go's cycle.
                self._count("chain_cycle")
                del out[1:]
                break
            if len(out) >= MAX_CHAIN:
                raise Malformed("chain_too_long")
            if ix >= len(fi.tree):
                raise Malformed("tree_index")
            seen.add(ix)
            name_off, parent_pc = fi.tree[ix]
            out.append(self._name(name_off))
            pc = fi.entry + parent_pc
            if not fi.entry <= pc < fi.end:
                raise Malformed("parent_pc_outside")
            ix = _value_at(fi, pc)
        return tuple(out)

    def _name(self, name_off: int) -> str:
        name = self._names.get(name_off)
        if name is not None:
            return name
        start = self._h.funcname_offset + name_off
        if name_off < 0 or start >= self._names_end:
            raise Malformed("name_outside")
        nul = self._data.find(b"\0", start, min(self._names_end, start + MAX_NAME_BYTES))
        if nul <= start:
            raise Malformed("name_unterminated" if nul < 0 else "name_empty")
        name = self._data[start:nul].decode("utf-8", "replace")
        self._names.put(name_off, name)
        return name

    def _decode(self, i: int) -> _FuncInline:
        data, e, fmt = self._data, self._e, self._fmt
        pos = self._h.pcln_offset + self._funcoffs[i]
        if pos < 0 or pos + fmt.func_header > len(data):
            raise Malformed("func_outside")
        (npcdata,) = struct.unpack_from(e + "I", data, pos + _NPCDATA_AT)
        nfuncdata = data[pos + fmt.nfuncdata_at]
        if npcdata <= PCDATA_INL_TREE_INDEX or nfuncdata <= FUNCDATA_INL_TREE:
            return _NONE
        pcdata_at = pos + fmt.func_header
        funcdata_at = pcdata_at + 4 * npcdata
        if funcdata_at + 4 * nfuncdata > len(data):
            raise Malformed("func_outside")
        (table_off,) = struct.unpack_from(e + "I", data, pcdata_at + 4 * PCDATA_INL_TREE_INDEX)
        (tree_off,) = struct.unpack_from(e + "I", data, funcdata_at + 4 * FUNCDATA_INL_TREE)
        if table_off == 0 or tree_off == _ABSENT:
            return _NONE
        entry, end = self._entries[i], self._entries[i + 1]
        start = self._h.pctab_offset + table_off
        ends, vals = decode_pcvalue(data, start, entry, end, self._h.min_lc)
        top = max(vals, default=-1)
        if top < 0:
            return _NONE
        if top >= MAX_TREE_ENTRIES:
            raise Malformed("tree_too_big")
        size = fmt.entry_size
        raw = self._read_tree(tree_off, (top + 1) * size)
        if len(raw) != (top + 1) * size:
            raise Malformed("tree_truncated")
        i32 = struct.Struct(e + "i").unpack_from
        tree = [
            (i32(raw, k * size + fmt.name_at)[0], i32(raw, k * size + fmt.parent_pc_at)[0])
            for k in range(top + 1)
        ]
        return _FuncInline(entry, end, ends, vals, tree)


def _value_at(fi: _FuncInline, pc: int) -> int:
    k = bisect.bisect_right(fi.ends, pc)
    return fi.vals[k] if k < len(fi.vals) else -1


# -- loading (I/O) ------------------------------------------------------------------------------


def load_go_inlines(
    f: BinaryIO, layout: ElfLayout, sections: dict[str, SectionInfo], budget: Budget
) -> GoInlines | None:
    """None when the file is not Go (no function table) or its table is Go 1.16/1.17 (not read).

    A Go 1.18+ table whose function table is damaged, or whose ``moduledata``
    (hence the inline trees) cannot be located, is an ElfError ``malformed``;
    budget overruns are ElfError ``budget_exceeded``. ``f`` must stay open
    while the returned object is used (inline trees are read on demand).
    """
    try:
        found = gopclnfind.find_table(f, layout, sections, budget)
    except ValueError as e:
        raise ElfError(MALFORMED, str(e)) from None
    return None if found is None else inlines_from_table(f, layout, sections, found, budget)


def inlines_from_table(
    f: BinaryIO,
    layout: ElfLayout,
    sections: dict[str, SectionInfo],
    found: gopclnfind.GoTable,
    budget: Budget,
) -> GoInlines | None:
    """:func:`load_go_inlines` for a table the caller already found (``gopclnfind.find_table``)."""
    try:
        h = parse_header(found.data, little=layout.little)
    except ValueError as e:
        raise ElfError(MALFORMED, str(e)) from None
    fmt = FORMATS.get(h.version)
    if fmt is None:
        return None
    text_start = h.text_start or found.text_start
    entries, funcoffs = _function_table(found.data, h, text_start, layout.little, budget)
    gofunc = find_gofunc(f, layout, sections, found.vaddr, h, text_start, fmt.gofunc_word, budget)
    if gofunc is None:
        raise ElfError(MALFORMED, "Go inline trees: the runtime's moduledata (gofunc) was not found")
    return GoInlines(
        found.data, h, fmt, entries, funcoffs, _segment_reader(f, layout, gofunc), little=layout.little
    )


def _function_table(
    data: bytes, h: PclnHeader, text_start: int, little: bool, budget: Budget
) -> tuple[list[int], list[int]]:
    budget.check_symbols(h.nfunc, "gopclntab")
    base, n = h.pcln_offset, h.nfunc
    if not text_start or base + n * 8 + 4 > len(data):
        raise ElfError(MALFORMED, "gopclntab function table runs past the table or has no text base")
    e = "<" if little else ">"
    pairs = list(struct.iter_unpack(e + "II", data[base : base + n * 8]))
    entries = [text_start + p[0] for p in pairs]
    entries.append(text_start + struct.unpack_from(e + "I", data, base + n * 8)[0])
    if any(entries[k] > entries[k + 1] for k in range(n)) or entries[-1] <= entries[0]:
        raise ElfError(MALFORMED, "gopclntab function table not sorted")
    return entries, [p[1] for p in pairs]


def _segment_reader(f: BinaryIO, layout: ElfLayout, gofunc: int) -> ReadAt:
    def read(offset: int, size: int) -> bytes:
        vaddr = gofunc + offset
        for s in layout.loads:
            if s.vaddr <= vaddr and vaddr + size <= s.vaddr + s.filesz:
                fileoff = s.offset + vaddr - s.vaddr
                return pread_exact(
                    f.fileno(), fileoff, size, file_size=layout.size, budget=None, what="inline tree"
                )
        raise Malformed("tree_outside")

    return read
