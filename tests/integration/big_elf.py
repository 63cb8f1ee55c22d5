"""A generated ELF whose parse is slow but within budget: many distinct function symbols.

Why it exists: the parse-worker tests (issue 11) need a binary that keeps the
canonicalizer's parse busy for a measurable time (hundreds of milliseconds of
pure-Python symbol-table work) without tripping a per-file budget, so they
can check that event intake goes on meanwhile. Written byte by byte: a
64-bit little-endian ELF, one PT_LOAD at ``BASE`` mapping the whole file, a
GNU build-id note, ``.text`` of ``count`` 16-byte functions named
``<prefix><i>`` in ``.symtab``.
"""

from __future__ import annotations

import struct
from pathlib import Path

BASE = 0x400000
FUNC_BYTES = 16


def build(
    count: int, *, build_id: bytes = b"\x5a" * 20, prefix: str = "slow_function_", sized: bool = True
) -> bytes:
    """The file's bytes; function ``i`` starts at file offset :func:`func_offset` (data, i).

    ``sized=False`` writes every symbol with size 0 (as assembly often does): the
    canonicalizer then derives each function's end from the next start, a slower path.
    """
    note = struct.pack("<III", 4, len(build_id), 3) + b"GNU\0" + build_id
    head = 64 + 56 * 2
    note_off = head
    text_off = (note_off + len(note) + 15) & ~15
    text_size = count * FUNC_BYTES
    body = bytearray(text_off)
    body[note_off : note_off + len(note)] = note
    body += b"\xc3" * text_size
    strtab = bytearray(b"\0")
    syms = bytearray(24)
    for i in range(count):
        off = text_off + i * FUNC_BYTES
        syms += struct.pack("<IBBHQQ", len(strtab), 0x12, 0, 1, BASE + off, FUNC_BYTES if sized else 0)
        strtab += f"{prefix}{i}".encode() + b"\0"
    while len(body) % 8:
        body += b"\0"
    symtab_off = len(body)
    body += syms
    strtab_off = len(body)
    body += strtab
    shstr = b"\0.text\0.symtab\0.strtab\0.shstrtab\0"
    shstr_off = len(body)
    body += shstr
    while len(body) % 8:
        body += b"\0"
    shoff = len(body)
    shdr = "<IIQQQQIIQQ"
    body += bytes(64)
    body += struct.pack(shdr, 1, 1, 6, BASE + text_off, text_off, text_size, 0, 0, 16, 0)
    body += struct.pack(shdr, 7, 2, 0, 0, symtab_off, len(syms), 3, 1, 8, 24)
    body += struct.pack(shdr, 15, 3, 0, 0, strtab_off, len(strtab), 0, 0, 1, 0)
    body += struct.pack(shdr, 23, 3, 0, 0, shstr_off, len(shstr), 0, 0, 1, 0)
    total = len(body)
    phdrs = struct.pack("<IIQQQQQQ", 1, 5, 0, BASE, BASE, total, total, 0x1000)
    phdrs += struct.pack("<IIQQQQQQ", 4, 4, note_off, BASE + note_off, 0, len(note), len(note), 4)
    body[64 : 64 + len(phdrs)] = phdrs
    ehdr = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr += struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, BASE, 64, shoff, 0, 64, 56, 2, 64, 5, 4)
    body[:64] = ehdr
    return bytes(body)


def func_offset(index: int) -> int:
    """File offset of function ``index`` (the same in every file :func:`build` makes)."""
    return ((64 + 56 * 2 + 12 + 4 + 20 + 15) & ~15) + index * FUNC_BYTES


def write(path: Path, count: int, *, build_id: bytes = b"\x5a" * 20, sized: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(build(count, build_id=build_id, sized=sized))
