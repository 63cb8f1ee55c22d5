"""Does the probed file's own code say a function starts at an address? native/symdebug.py's check.

Why this module exists: a debug file found under a container's root is that
container's word. Its GNU build-id is a note anyone can copy and a
``.gnu_debuglink`` CRC-32 can be forced with four appended bytes, so those
checks say "meant for this binary", not "honest". And the uprobe it places
is not that container's: the kernel puts it on the real file (the image
layer's inode), so it sits in the code of every process mapping that file,
in every container of the image, and on the host when the file is shared
with it. An address in the middle of an instruction corrupts that code for
all of them.

So an address read from such a debug file is accepted only where the
binary's own tables say a function starts:

- ``.eh_frame_hdr``'s search table: the initial location of each FDE (what
  unwinders and debuggers use; every x86-64 and arm64 toolchain writes it by
  default);
- a function symbol of ``.dynsym`` at that address (an exported alias);
- for a Go binary, its function table's entries (``gopclntab``,
  canonical/gopclnfind.py: Go code has no ``.eh_frame``).

A file none of these confirm gets no probe from such a debug file (the
reason says so); a debug file the node holds (the agent's ``/``, the node's
root) is the node administrator's and is not asked this. What this rule
does not stop, a debug file naming the start of *another* real function, is
said in docs/native-probes.md.
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from typing import BinaryIO

from stellaops_runtime.canonical.elflayout import ElfError, ElfLayout
from stellaops_runtime.canonical.gopclnfind import function_symbols, may_have_table
from stellaops_runtime.canonical.limits import Budget, pread_exact
from stellaops_runtime.canonical.symtab import SHT_NOBITS, SectionInfo

_DATAREL_SDATA4 = 0x3B  # the search table's encoding every linker writes (GNU ld, gold, lld, mold)
_OMIT = 0xFF
_FUNC = (2, 10)  # STT_FUNC, STT_GNU_IFUNC
_SHN_LORESERVE = 0xFF00


def confirmed_start(
    f: BinaryIO, layout: ElfLayout, sections: list[SectionInfo], addr: int, budget: Budget
) -> str:
    """Which of the file's own tables says a function starts at ``addr`` ('.eh_frame_hdr',
    '.dynsym', 'gopclntab'), or '' when none does (or the file has none of them)."""
    by_name: dict[str, SectionInfo] = {}
    for s in sections:
        by_name.setdefault(s.name, s)
    hdr = by_name.get(".eh_frame_hdr")
    dynsym = next((s for s in sections if s.type == "SHT_DYNSYM"), None)
    try:  # a table that cannot be read (damaged, over the budget) confirms nothing
        if hdr is not None and _in_eh_frame_hdr(f, layout, hdr, addr, budget):
            return ".eh_frame_hdr"
    except ElfError:
        pass
    try:
        if dynsym is not None and _in_dynsym(f, layout, dynsym, addr, budget):
            return ".dynsym"
    except ElfError:
        pass
    try:
        if may_have_table(by_name) and any(
            start == addr for start, *_ in function_symbols(f, layout, by_name, budget)
        ):
            return "gopclntab"
    except ElfError:
        pass
    return ""


def _in_eh_frame_hdr(f: BinaryIO, layout: ElfLayout, sec: SectionInfo, addr: int, budget: Budget) -> bool:
    """Whether ``.eh_frame_hdr``'s binary search table holds an FDE whose initial location is ``addr``."""
    if sec.type == SHT_NOBITS or sec.size < 8:
        return False
    fd = f.fileno()
    data = pread_exact(fd, sec.offset, sec.size, file_size=os.fstat(fd).st_size, budget=budget, what=sec.name)
    version, ptr_enc, count_enc, table_enc = data[0], data[1], data[2], data[3]
    if version != 1 or count_enc == _OMIT or table_enc != _DATAREL_SDATA4:
        return False  # no search table, or one of an encoding no linker writes: not confirmed
    ptr_width = _width(ptr_enc, layout.is64)
    pos = 4 + ptr_width
    width = _width(count_enc, layout.is64)
    if ptr_width < 0 or width not in (4, 8) or pos + width > len(data):
        return False
    count = int.from_bytes(data[pos : pos + width], "little" if layout.little else "big")
    pos += width
    if count <= 0 or pos + 8 * count > len(data):
        return False
    rel = addr - sec.addr  # datarel: relative to the start of .eh_frame_hdr
    if not -(1 << 31) <= rel < 1 << 31:
        return False
    col = array("i")
    col.frombytes(data[pos : pos + 8 * count])
    if layout.little != (sys.byteorder == "little"):
        col.byteswap()
    return rel in col[0::2]  # (initial location, FDE address) pairs


def _width(enc: int, is64: bool) -> int:
    """Bytes a DW_EH_PE-encoded value of encoding ``enc`` takes (its low nibble); -1 when unknown."""
    if enc == _OMIT:
        return 0
    return {0x00: 8 if is64 else 4, 0x02: 2, 0x03: 4, 0x04: 8, 0x0A: 2, 0x0B: 4, 0x0C: 8}.get(enc & 0x0F, -1)


def _in_dynsym(f: BinaryIO, layout: ElfLayout, sec: SectionInfo, addr: int, budget: Budget) -> bool:
    """Whether ``.dynsym`` holds a function symbol, defined in a section, whose value is ``addr``."""
    rec = 24 if layout.is64 else 16
    if sec.type == SHT_NOBITS or sec.entsize != rec or not sec.size:
        return False
    fd = f.fileno()
    data = pread_exact(
        fd,
        sec.offset,
        sec.size - sec.size % rec,
        file_size=os.fstat(fd).st_size,
        budget=budget,
        what=sec.name,
    )
    if layout.is64:  # st_name(4) st_info(1) st_other(1) st_shndx(2) st_value(8) st_size(8)
        fields = struct.Struct(layout.endian + "4xBxHQ8x")
    else:  # st_name(4) st_value(4) st_size(4) st_info(1) st_other(1) st_shndx(2)
        fields = struct.Struct(layout.endian + "4xI4xBxH")
    needle = struct.pack(layout.endian + ("Q" if layout.is64 else "I"), addr)
    at = 8 if layout.is64 else 4  # where st_value sits in a record
    pos = data.find(needle)
    while pos >= 0:
        if pos % rec == at:
            if layout.is64:
                info, shndx, _value = fields.unpack_from(data, pos - at)
            else:
                _value, info, shndx = fields.unpack_from(data, pos - at)
            if info & 0xF in _FUNC and 0 < shndx < _SHN_LORESERVE:
                return True
        pos = data.find(needle, pos + 1)
    return False
