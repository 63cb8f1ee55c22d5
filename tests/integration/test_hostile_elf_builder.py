"""Crafted ELF files and container roots for the hostile-file tests (issue 11), plus checks of the builder.

Everything is written byte by byte here, no toolchain: a 64-bit little-endian
ELF with one PT_LOAD at 0x400000 mapping the whole file, an optional GNU
build-id note, ``.text`` with functions named in ``.symtab``, and any extra
sections (a bogus ``.gopclntab``, a DWARF bomb). A frame's file offset of
function ``f`` is ``func_offset(path, "f")``.
"""

from __future__ import annotations

import os
import stat
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

BASE = 0x400000
TEXT_SIZE = 0x100
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_NOTE = 1, 2, 3, 7
SHF_COMPRESSED = 0x800


@dataclass
class Section:
    name: str
    type: int
    data: bytes
    flags: int = 0
    link: int = 0
    entsize: int = 0
    size: int | None = None  # sh_size when it should lie about the data


@dataclass
class Elf:
    build_id: bytes | None = b"\x11" * 20
    functions: list[str] = field(default_factory=lambda: ["main"])
    extra: list[Section] = field(default_factory=list)
    section_headers: bool = True
    load_filesz: int | None = None  # PT_LOAD p_filesz override (a huge segment)
    pad_to: int = 0  # make the file this long (sparse)


def _note(build_id: bytes) -> bytes:
    return struct.pack("<III", 4, len(build_id), 3) + b"GNU\0" + build_id


def build(e: Elf) -> tuple[bytes, dict[str, int]]:
    """(file bytes, function -> file offset)."""
    note = _note(e.build_id) if e.build_id else b""
    phnum = 2 if note else 1
    body = bytearray(b"\0" * (64 + 56 * phnum))
    note_off = len(body)
    body += note
    while len(body) % 16:
        body += b"\0"
    text_off = len(body)
    body += b"\xc3" * TEXT_SIZE
    step = TEXT_SIZE // max(1, len(e.functions))
    offsets = {name: text_off + i * step for i, name in enumerate(e.functions)}
    strtab = bytearray(b"\0")
    syms = bytearray(b"\0" * 24)
    for name, off in offsets.items():
        syms += struct.pack("<IBBHQQ", len(strtab), 0x12, 0, 1, BASE + off, step)  # GLOBAL FUNC in .text
        strtab += name.encode() + b"\0"
    sections = [
        Section(".text", SHT_PROGBITS, b"", flags=6),
        Section(".symtab", SHT_SYMTAB, bytes(syms), link=3, entsize=24),
        Section(".strtab", SHT_STRTAB, bytes(strtab)),
        *e.extra,
    ]
    placed: list[tuple[Section, int]] = [(sections[0], text_off)]
    for sec in sections[1:]:
        while len(body) % 8:
            body += b"\0"
        placed.append((sec, len(body)))
        body += sec.data
    shstr = bytearray(b"\0")
    names = []
    for sec, _ in placed:
        names.append(len(shstr))
        shstr += sec.name.encode() + b"\0"
    names.append(len(shstr))
    shstr += b".shstrtab\0"
    shstr_off = len(body)
    body += shstr
    while len(body) % 8:
        body += b"\0"
    shoff = len(body)
    shdrs = bytearray(b"\0" * 64)
    for (sec, off), name_off in zip(placed, names, strict=False):
        size = TEXT_SIZE if sec.name == ".text" else (sec.size if sec.size is not None else len(sec.data))
        addr = BASE + off if sec.name == ".text" else 0
        shdrs += struct.pack(
            "<IIQQQQIIQQ", name_off, sec.type, sec.flags, addr, off, size, sec.link, 0, 8, sec.entsize
        )
    shdrs += struct.pack("<IIQQQQIIQQ", names[-1], SHT_STRTAB, 0, 0, shstr_off, len(shstr), 0, 0, 1, 0)
    body += shdrs
    shnum = len(placed) + 2
    total = max(len(body), e.pad_to)
    filesz = e.load_filesz if e.load_filesz is not None else total
    phdrs = struct.pack("<IIQQQQQQ", 1, 5, 0, BASE, BASE, filesz, filesz, 0x1000)
    if note:
        phdrs += struct.pack("<IIQQQQQQ", 4, 4, note_off, BASE + note_off, 0, len(note), len(note), 4)
    body[64 : 64 + len(phdrs)] = phdrs
    ehdr = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    ehdr += struct.pack(
        "<HHIQQQIHHHHHH",
        3,
        62,
        1,
        BASE,
        64,
        shoff if e.section_headers else 0,
        0,
        64,
        56,
        phnum,
        64 if e.section_headers else 0,
        shnum if e.section_headers else 0,
        shnum - 1 if e.section_headers else 0,
    )
    body[:64] = ehdr
    return bytes(body), offsets


def write(path: Path, e: Elf) -> dict[str, int]:
    data, offsets = build(e)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
        if e.pad_to > len(data):
            f.truncate(e.pad_to)  # sparse: costs nothing on disk
    return offsets


def pclntab_bomb(nfunc: int = (1 << 24) - 1, size: int = 16 << 20) -> Section:
    """A Go 1.20 pcHeader claiming ``nfunc`` functions over ``size`` bytes of zeros."""
    head = struct.pack("<IBBBB", 0xFFFFFFF1, 0, 0, 1, 8)
    head += struct.pack("<8Q", nfunc, 1, BASE, 0x60, 0x60, 0x60, 0x60, 0x80)
    return Section(".gopclntab", SHT_PROGBITS, head + b"\0" * (size - len(head)))


def zdebug_bomb(claimed: int, real: int) -> Section:
    """A legacy ``.zdebug_info``: "ZLIB", a claimed size, then ``real`` zero bytes deflated."""
    z = zlib.compressobj(1)
    chunk = b"\0" * (1 << 20)
    out = bytearray()
    left = real
    while left:
        n = min(left, len(chunk))
        out += z.compress(chunk[:n])
        left -= n
    out += z.flush()
    return Section(".zdebug_info", SHT_PROGBITS, b"ZLIB" + struct.pack(">Q", claimed) + bytes(out))


def compressed_debug_bomb(ch_size: int) -> Section:
    """An SHF_COMPRESSED ``.debug_info`` whose header claims ``ch_size`` bytes inflated."""
    payload = zlib.compress(b"\0" * 4096)
    return Section(
        ".debug_info", SHT_PROGBITS, struct.pack("<IIQQ", 1, 0, ch_size, 1) + payload, flags=SHF_COMPRESSED
    )


def garbage_dwarf() -> list[Section]:
    """DWARF sections of nonsense: pyelftools raises whatever it raises on them."""
    info = struct.pack("<IHIB", 0x7FFFFFF0, 4, 0, 8) + bytes(range(256)) * 4
    return [
        Section(".debug_info", SHT_PROGBITS, info),
        Section(".debug_abbrev", SHT_PROGBITS, b"\x01\x2e\x01\x03\x08\x00\x00" * 8),
    ]


def make_char_device(path: Path) -> bool:
    """A character device node (1, 3 = /dev/null's numbers); False when not allowed (not root)."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except (PermissionError, OSError):
        return False
    return True


# -- the builder itself -----------------------------------------------------------------------


def test_built_elf_resolves(tmp_path: Path) -> None:
    from stellaops_runtime.canonical.symbolizer import Symbolizer

    path = tmp_path / "ok.so"
    offsets = write(path, Elf(functions=["alpha", "beta"]))
    sym = Symbolizer()
    r = sym.resolve_file(str(path), offsets["beta"] + 2)
    assert (r.symbol, r.offset, r.source, r.build_id) == ("beta", 2, "symtab", "11" * 20)
    assert sym.resolve_file(str(path), offsets["alpha"]).symbol == "alpha"
