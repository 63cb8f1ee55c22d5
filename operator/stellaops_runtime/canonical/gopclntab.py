"""Go's ``.gopclntab``: function names and entry points of Go binaries stripped of ``.symtab``.

Production Go binaries are usually linked with ``-ldflags="-s -w"`` (no
``.symtab``, no DWARF), and Debian's own containerd, ctr and runc ship that
way; the Go runtime still needs its pc-line table to print stack traces, so it
is always there. This module parses the table's header and function table
from the published layout (Go's ``runtime/symtab.go`` ``pcHeader``,
``functab`` and ``_func``):

========  ===========  =====================================================
magic     Go versions  header after magic/pad/minLC/ptrSize (ptrSize words)
========  ===========  =====================================================
fffffffa  1.16, 1.17   nfunc, nfiles, funcnameOffset, cuOffset, filetabOffset,
                       pctabOffset, pclnOffset; functab = (entry, funcoff)
                       words; ``_func`` = entry word, nameoff int32
fffffff0  1.18, 1.19   as 1.16 plus textStart after nfiles; functab = (entryoff,
fffffff1  1.20+        funcoff) uint32 pairs relative to textStart;
                       ``_func`` = entryoff uint32, nameoff int32
========  ===========  =====================================================

In both layouts the functab has ``nfunc`` pairs followed by one more entry,
the end of the last function; ``funcoff`` is relative to the functab and a
name is a NUL-terminated string at funcnametab + nameoff. Older tables
(1.2-1.15, magic fffffffb) are reported as unsupported.

A table without a section of its own (position-independent builds keep it in
``.data.rel.ro``; ``sstrip``-style stripping removes every section header) is
found by its magic, the way Go's ``debug/gosym`` users do: :func:`plausible`
accepts a candidate only when its header parses, its pad bytes are 0, minLC is
1/2/4 and ptrSize 4/8, its sub-table offsets lie in order inside the region
read, and its function table fits there and is sorted. :func:`scan` tries at
most 64 candidates per region. In the loadable segments (:func:`locate`) a
candidate is confirmed by the runtime's ``moduledata`` in a writable segment,
whose first words are a pointer to the table and the funcnametab slice (table
address + funcnameOffset); canonical/gopclnfind.py picks the region to search.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from typing import BinaryIO

from stellaops_runtime.canonical.elflayout import PF_W, PF_X, ElfLayout
from stellaops_runtime.canonical.limits import DEFAULT_LIMITS, Budget, pread_exact

MAX_NAME_BYTES = 16_384
_MAX_CANDIDATES = 64
_CHECK_EVERY = 4096
_MIN_LC = (b"\x01", b"\x02", b"\x04")
_PTR_SIZES = (b"\x04", b"\x08")

MAGIC_GO116 = 0xFFFFFFFA
MAGIC_GO118 = 0xFFFFFFF0
MAGIC_GO120 = 0xFFFFFFF1
MAGIC_GO12 = 0xFFFFFFFB
VERSIONS = {MAGIC_GO116: "go1.16", MAGIC_GO118: "go1.18", MAGIC_GO120: "go1.20"}


@dataclass(frozen=True, slots=True)
class PclnHeader:
    version: str
    min_lc: int
    ptr_size: int
    nfunc: int
    nfiles: int
    text_start: int  # 0 for go1.16 tables (entries are absolute there)
    funcname_offset: int
    cu_offset: int
    filetab_offset: int
    pctab_offset: int
    pcln_offset: int


def parse_header(data: bytes | memoryview, *, little: bool) -> PclnHeader:
    """Parse and sanity-check a pcHeader; ValueError when it is not one we read."""
    e = "<" if little else ">"
    if len(data) < 8:
        raise ValueError("gopclntab shorter than its header")
    magic, pad1, pad2, min_lc, ptr_size = struct.unpack_from(e + "IBBBB", data, 0)
    if magic == MAGIC_GO12:
        raise ValueError("gopclntab of Go 1.2-1.15 (magic 0xfffffffb) is not supported")
    version = VERSIONS.get(magic)
    if version is None:
        raise ValueError(f"not a gopclntab (magic {magic:#x})")
    if pad1 or pad2 or min_lc not in (1, 2, 4) or ptr_size not in (4, 8):
        raise ValueError(f"implausible gopclntab header (minLC {min_lc}, ptrSize {ptr_size})")
    word = e + ("Q" if ptr_size == 8 else "I")
    nwords = 7 if magic == MAGIC_GO116 else 8
    if len(data) < 8 + nwords * ptr_size:
        raise ValueError("gopclntab shorter than its header")
    words = [struct.unpack_from(word, data, 8 + i * ptr_size)[0] for i in range(nwords)]
    if magic == MAGIC_GO116:
        words.insert(2, 0)
    nfunc, nfiles, text_start, fn_off, cu_off, file_off, pc_off, pcln_off = words
    size = len(data)
    if not 0 < nfunc < 1 << 24:
        raise ValueError(f"implausible gopclntab function count {nfunc}")
    for what, off in (("funcnametab", fn_off), ("cutab", cu_off), ("filetab", file_off), ("pctab", pc_off)):
        if not 0 < off < size:
            raise ValueError(f"gopclntab {what} offset {off:#x} outside the table")
    if not 0 < pcln_off < size:
        raise ValueError(f"gopclntab functab offset {pcln_off:#x} outside the table")
    return PclnHeader(
        version, min_lc, ptr_size, nfunc, nfiles, text_start, fn_off, cu_off, file_off, pc_off, pcln_off
    )


def parse_functions(
    data: bytes | memoryview, *, little: bool, text_start: int = 0, budget: Budget | None = None
) -> tuple[PclnHeader, list[tuple[int, int, str]]]:
    """(header, [(entry, end, name)]) sorted by entry.

    ``text_start`` replaces the header's textStart when that is 0 (position-
    independent binaries carry it as a relocation, not in the file bytes).
    Every count and offset is checked against the table's size before
    anything is allocated; the function count against ``budget`` (default
    limits when None), names are cut at 16 KiB and charged.
    """
    b = budget or DEFAULT_LIMITS.budget("gopclntab")
    h = parse_header(data, little=little)
    b.check_symbols(h.nfunc, "gopclntab")
    e = "<" if little else ">"
    buf = bytes(data) if isinstance(data, memoryview) else data
    size = len(buf)
    n = h.nfunc
    base = h.pcln_offset
    if h.version == "go1.16":
        letter = "Q" if h.ptr_size == 8 else "I"
        word = e + letter
        pair_size = 2 * h.ptr_size
        tab_end = base + n * pair_size + h.ptr_size
        if tab_end > size:
            raise ValueError("gopclntab function table runs past the table")
        pairs = list(struct.iter_unpack(e + letter * 2, buf[base : base + n * pair_size]))
        (last,) = struct.unpack_from(word, buf, base + n * pair_size)
        entries = [p[0] for p in pairs]
        entries.append(last)
        name_at = h.ptr_size  # _func: entry word, then nameoff
    else:
        ts = h.text_start or text_start
        if not ts:
            raise ValueError("gopclntab textStart is 0 (relocated) and no .text address is known")
        tab_end = base + n * 8 + 4
        if tab_end > size:
            raise ValueError("gopclntab function table runs past the table")
        pairs = list(struct.iter_unpack(e + "II", buf[base : base + n * 8]))
        (last,) = struct.unpack_from(e + "I", buf, base + n * 8)
        entries = [ts + p[0] for p in pairs]
        entries.append(ts + last)
        name_at = 4  # _func: entryoff uint32, then nameoff
    if entries[-1] <= entries[0]:
        raise ValueError("gopclntab function table covers no code (unrelocated or damaged)")
    names_base = h.funcname_offset
    # funcnametab ends where the next table (cutab) begins, when the header orders them so.
    names_end = h.cu_offset if h.cu_offset > names_base else size
    nameoff_fmt = e + "i"
    entry_fmt = e + ("I" if h.version != "go1.16" else ("Q" if h.ptr_size == 8 else "I"))
    out: list[tuple[int, int, str]] = []
    find = buf.find
    prev = -1
    names_bytes = 0
    for i, pair in enumerate(pairs):
        if not i % _CHECK_EVERY:
            b.charge(names_bytes, "gopclntab names")
            names_bytes = 0
        start = entries[i]
        if start < prev:
            raise ValueError(f"gopclntab function table not sorted at entry {i}")
        prev = start
        func_pos = base + pair[1]
        if func_pos + name_at + 4 > size:
            raise ValueError(f"gopclntab _func {i} outside the table")
        if struct.unpack_from(entry_fmt, buf, func_pos)[0] != pair[0]:
            # A _func begins with its own entry, as the functab gives it: another one was read.
            raise ValueError(f"gopclntab _func {i} is not the function the function table names")
        (nameoff,) = struct.unpack_from(nameoff_fmt, buf, func_pos + name_at)
        npos = names_base + nameoff
        if not names_base <= npos < names_end:
            raise ValueError(f"gopclntab name of function {i} outside funcnametab")
        if npos > names_base and buf[npos - 1]:
            # funcnametab is NUL-terminated names back to back: a name starts after a NUL (a
            # damaged funcnameOffset would read every name from the middle of another).
            raise ValueError(f"gopclntab name of function {i} does not start a name (funcnametab misplaced)")
        end = find(b"\0", npos, npos + MAX_NAME_BYTES)
        if end < 0:
            end = min(size, npos + MAX_NAME_BYTES)
        names_bytes += end - npos
        out.append((start, entries[i + 1], buf[npos:end].decode("utf-8", "replace")))
    return h, out


def plausible(data: bytes, pos: int, little: bool) -> PclnHeader | None:
    """The header at ``data[pos:]`` when it is a whole, sorted function table inside ``data``; else None.

    Beyond :func:`parse_header`: the sub-tables (funcnametab, cutab, filetab,
    pctab, functab) start after the header and in that order, the functab's
    ``nfunc + 1`` entries fit in ``data`` and never decrease, and the last one
    is past the first (a table of unrelocated zeros is not accepted).
    """
    try:
        h = parse_header(memoryview(data)[pos:], little=little)
    except ValueError:
        return None
    header_size = 8 + (7 if h.version == "go1.16" else 8) * h.ptr_size
    offsets = (header_size, h.funcname_offset, h.cu_offset, h.filetab_offset, h.pctab_offset, h.pcln_offset)
    if any(a > b for a, b in itertools.pairwise(offsets)):
        return None
    e = "<" if little else ">"
    base = pos + h.pcln_offset
    n = h.nfunc
    letter = "I" if h.version != "go1.16" or h.ptr_size == 4 else "Q"
    word = struct.calcsize(letter)
    if base + n * 2 * word + word > len(data):
        return None
    entries = [p[0] for p in struct.iter_unpack(e + letter * 2, data[base : base + n * 2 * word])]
    entries.append(struct.unpack_from(e + letter, data, base + n * 2 * word)[0])
    if entries[-1] <= entries[0] or any(a > b for a, b in itertools.pairwise(entries)):
        return None
    return h


def scan(data: bytes, little: bool, budget: Budget | None = None) -> list[tuple[int, PclnHeader]]:
    """Every plausible table in ``data`` as (position, header).

    A magic followed by pad bytes 0, 0, a minLC of 1/2/4 and a ptrSize of 4/8 is a try; at most
    64 tries per region are checked with :func:`plausible`.
    """
    e = "<" if little else ">"
    out: list[tuple[int, PclnHeader]] = []
    tried = 0
    for magic in VERSIONS:
        needle = struct.pack(e + "I", magic)
        pos = data.find(needle)
        while pos >= 0 and tried < _MAX_CANDIDATES:
            if (
                data[pos + 4 : pos + 6] == b"\0\0"
                and data[pos + 6 : pos + 7] in _MIN_LC
                and data[pos + 7 : pos + 8] in _PTR_SIZES
            ):  # only hits whose next four bytes fit count as tries
                tried += 1
                if budget is not None:
                    budget.check_time("gopclntab search")
                h = plausible(data, pos, little)
                if h is not None:
                    out.append((pos, h))
            pos = data.find(needle, pos + 1)
    return out


def locate(f: BinaryIO, layout: ElfLayout, budget: Budget | None = None) -> tuple[bytes, int] | None:
    """Find the gopclntab in the loadable segments when there is no section header for it.

    Returns (bytes from the table's start to the end of its segment, table address).
    Non-executable segments are searched first (read-only ``.rodata`` of
    ordinary builds, the writable ``.data.rel.ro`` of position-independent
    ones), executable ones only when those hold no table (linkers that put
    read-only data in the text segment). Every segment read is charged to
    ``budget`` (a file whose segments exceed the parse budget is
    ``budget_exceeded``); at most 64 magic hits are tried per segment.
    """
    b = budget or DEFAULT_LIMITS.budget("gopclntab")
    e = "<" if layout.little else ">"
    fd = f.fileno()
    segs = [
        (s, pread_exact(fd, s.offset, s.filesz, file_size=layout.size, budget=b, what="loadable segment"))
        for s in layout.loads
    ]
    candidates: list[tuple[int, bytes, int, PclnHeader]] = []  # (vaddr, segment bytes, pos, header)
    for executable in (False, True):
        for seg, data in segs:
            if bool(seg.flags & PF_X) == executable:
                candidates += [(seg.vaddr + pos, data, pos, h) for pos, h in scan(data, layout.little, b)]
        if candidates:
            break
    if not candidates:
        return None
    writable = [data for seg, data in segs if seg.flags & PF_W]
    for vaddr, data, pos, h in candidates:
        word = e + ("Q" if h.ptr_size == 8 else "I")
        needle = struct.pack(word, vaddr) + struct.pack(word, vaddr + h.funcname_offset)
        if any(needle in w for w in writable):
            return data[pos:], vaddr
    # No moduledata found (e.g. relocated at load time): the most plausible header wins.
    vaddr, data, pos, _h = max(candidates, key=lambda c: c[3].nfunc)
    return data[pos:], vaddr
