"""Refuse an ELF file whose symbol tables would crash BCC before handing it to BCC.

BCC finds a uprobe's symbol by reading the target file's ``.symtab`` and
``.dynsym`` in C (libbcc's bcc_elf.c), dividing each table's size by its
entry size. A table whose ``sh_entsize`` is 0 makes that a division by zero:
SIGFPE, and the whole agent (or ``probes run``) dies, where a bad target must
only be listed in ``failed``. The files the probes read are not all the
operator's: a container's own binary (a PURL target, a ``/proc/<pid>/root``
path, a file renamed over a probed path) is whatever that container wrote, and
a crash at each start would leave the node unobserved for as long as the file
stays. So before BCC reads a file, its section headers are read here, bounded,
and a symbol table whose entry size is not ``sizeof(ElfN_Sym)`` makes the file
refused with the reason. Anything else this cannot read (not ELF, truncated) is
left to BCC, which reports it as an error without crashing.

The check reads the file by the path BCC is given (a descriptor the caller
holds, ``/proc/self/fd/N``, for the followed and held files: the same inode).
A file rewritten in place between the check and BCC's read is not covered.
"""

from __future__ import annotations

import struct

SHT_SYMTAB = 2
SHT_DYNSYM = 11
MAX_SECTIONS = 65_535 * 4  # section headers read at most (an extended count past it is not read)
_SYM_SIZE = {1: 16, 2: 24}  # ELFCLASS32, ELFCLASS64 -> sizeof(ElfN_Sym)


def bcc_hazard(path: str) -> str:
    """'' when BCC may read the file's symbol tables, else why it must not (see the module docstring)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 52 or head[:4] != b"\x7fELF" or head[4] not in (1, 2) or head[5] not in (1, 2):
                return ""  # not ELF, or not one BCC reads: it says so itself
            cls, end = head[4], "<" if head[5] == 1 else ">"
            if cls == 2:
                if len(head) < 64:
                    return ""
                shoff, shentsize, shnum = (struct.unpack_from(end + "Q", head, 0x28)[0],
                                           *struct.unpack_from(end + "HH", head, 0x3A))  # fmt: skip
                type_at, entsize_fmt, entsize_at, size_fmt, size_at = 4, "Q", 56, "Q", 32
            else:
                shoff, shentsize, shnum = (struct.unpack_from(end + "I", head, 0x20)[0],
                                           *struct.unpack_from(end + "HH", head, 0x2E))  # fmt: skip
                type_at, entsize_fmt, entsize_at, size_fmt, size_at = 4, "I", 36, "I", 20
            need = entsize_at + struct.calcsize(entsize_fmt)
            if not shoff or shentsize < need:
                return ""
            f.seek(shoff)
            first = f.read(shentsize)
            if len(first) < need:
                return ""
            if shnum == 0:  # more than 0xff00 sections: the count is section 0's sh_size
                shnum = struct.unpack_from(end + size_fmt, first, size_at)[0]
            for i in range(min(shnum, MAX_SECTIONS)):
                hdr = first if i == 0 else f.read(shentsize)
                if len(hdr) < need:
                    return ""  # truncated: libelf refuses it before any division
                (kind,) = struct.unpack_from(end + "I", hdr, type_at)
                if kind not in (SHT_SYMTAB, SHT_DYNSYM):
                    continue
                (entsize,) = struct.unpack_from(end + entsize_fmt, hdr, entsize_at)
                if entsize != _SYM_SIZE[cls]:
                    table = "symbol table" if kind == SHT_SYMTAB else "dynamic symbol table"
                    return (
                        f"its {table} (section {i}) has entries of {entsize} bytes, not {_SYM_SIZE[cls]}: "
                        "a damaged or hostile file, not read (BCC would crash on it)"
                    )
    except (OSError, struct.error, ValueError):
        return ""  # unreadable: BCC's own open and read say why
    return ""
