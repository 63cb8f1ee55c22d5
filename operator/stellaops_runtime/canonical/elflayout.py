"""ELF header, program headers and notes, read by hand with ``struct``.

The symbolizer needs three facts about a file before (and often instead of)
parsing its sections: is it a usable ELF, what is its build-id, and which
virtual address does a file offset map to. All three come from the ELF header
and the program header table, a few hundred bytes at the start of the file, so
reading them by hand costs 10-20 us whatever the file size, where building a
pyelftools ``ELFFile`` costs milliseconds (../docs/symbolization.md, and the
figures in bench/symbolize_bench.py).

Build-ids, best first:

- the GNU build-id note (name ``"GNU"``, type 3 = NT_GNU_BUILD_ID), as hex.
  The name is checked as well as the type: SystemTap's ``.note.stapsdt`` notes
  also use type 3;
- the Go build-id note (name ``"Go"``, type 4), the string ``go tool buildid``
  prints, for Go binaries linked without a GNU note;
- a fallback for files with neither: ``sha256-`` followed by the first 40 hex
  digits of the SHA-256 of the whole file. It never contains ``:`` (the
  function ID's separator) and any tool can compute it from the same bytes.

Errors are :class:`ElfError` with a ``reason`` the symbolizer counts
(``not_elf``, ``truncated_elf``, ``bad_elf``).
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

ELF_MAGIC = b"\x7fELF"
PT_LOAD = 1
PT_NOTE = 4
PF_X = 1
PF_W = 2
NT_GNU_BUILD_ID = 3
NT_GO_BUILD_ID = 4
PN_XNUM = 0xFFFF
SHN_XINDEX = 0xFFFF
EM_ARM = 40

FALLBACK_PREFIX = "sha256-"
FALLBACK_HEX_DIGITS = 40

BUILD_ID_GNU = "gnu"
BUILD_ID_GO = "go"
BUILD_ID_FALLBACK = "fallback"

MAX_GNU_BUILD_ID_BYTES = 64  # real ones: 8 (xxhash), 16 (md5, uuid), 20 (sha1), 32 (sha256)
MAX_GO_BUILD_ID_BYTES = 256  # real ones: ~83 characters ("actionID/contentID" in base64)

# Largest note segment we read; real ones are a few hundred bytes.
_MAX_NOTE_BYTES = 1 << 20
_MAX_PHNUM = 4096
_MIN_PAGE = 4096  # every Linux page size is a multiple of it
MAX_FALLBACK_HASH_BYTES = 1 << 30  # limits.DEFAULT_MAX_FILE_BYTES
READ_CHUNK_BYTES = 1 << 20  # read_chunks' buffer


class ElfError(Exception):
    """A file the symbolizer cannot use, with the outcome it is counted under."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Segment:
    """One PT_LOAD segment: file bytes [offset, offset+filesz) live at vaddr."""

    offset: int
    filesz: int
    vaddr: int
    memsz: int
    flags: int


@dataclass(frozen=True, slots=True)
class Note:
    name: str
    type: int
    desc: bytes


@dataclass(slots=True)
class ElfLayout:
    """What the ELF header and program headers say about a file."""

    size: int
    is64: bool
    little: bool
    e_type: int
    machine: int
    shoff: int
    shnum: int  # the real count (extended numbering applied), checked against the file size
    loads: list[Segment]
    note_ranges: list[tuple[int, int, int]]  # (offset, size, align) of PT_NOTE segments
    shentsize: int = 0
    shstrndx: int = 0
    # (offset, end, vaddr - offset) of each PT_LOAD, built from ``loads`` on first use by vaddr_of
    _ranges: list[tuple[int, int, int]] | None = field(default=None, repr=False, compare=False)

    @property
    def endian(self) -> str:
        return "<" if self.little else ">"

    @property
    def has_section_headers(self) -> bool:
        return self.shoff != 0 and self.shnum != 0

    def vaddr_of(self, file_offset: int) -> int | None:
        """The virtual address a file offset is loaded at, or None when no PT_LOAD maps it."""
        ranges = self._ranges
        if ranges is None:
            ranges = self._ranges = [(s.offset, s.offset + s.filesz, s.vaddr - s.offset) for s in self.loads]
        for lo, hi, delta in ranges:
            if lo <= file_offset < hi:
                return file_offset + delta
        return None

    def offset_of(self, vaddr: int) -> int | None:
        """The file offset of a virtual address (inverse of :meth:`vaddr_of`)."""
        for s in self.loads:
            if s.vaddr <= vaddr < s.vaddr + s.filesz:
                return vaddr - s.vaddr + s.offset
        return None


def _pread(f: BinaryIO, offset: int, size: int) -> bytes:
    f.seek(offset)
    return f.read(size)


def read_layout(f: BinaryIO) -> ElfLayout:
    """Parse the ELF header and program header table; raise ElfError if unusable."""
    size = os.fstat(f.fileno()).st_size
    ident = _pread(f, 0, 16)
    if len(ident) < 4 or ident[:4] != ELF_MAGIC:
        raise ElfError("not_elf", "not an ELF file (no \\x7fELF magic)")
    if len(ident) < 16:
        raise ElfError("truncated_elf", f"ELF identification cut short ({size} bytes)")
    ei_class, ei_data = ident[4], ident[5]
    if ei_class not in (1, 2) or ei_data not in (1, 2):
        raise ElfError("bad_elf", f"unknown ELF class {ei_class} or data encoding {ei_data}")
    is64 = ei_class == 2
    e = "<" if ei_data == 1 else ">"
    hdr_fmt = e + ("HHIQQQIHHHHHH" if is64 else "HHIIIIIHHHHHH")
    hdr_size = struct.calcsize(hdr_fmt)
    raw = _pread(f, 16, hdr_size)
    if len(raw) < hdr_size:
        raise ElfError("truncated_elf", f"ELF header cut short ({size} bytes)")
    (
        e_type,
        machine,
        _ver,
        _entry,
        phoff,
        shoff,
        _flags,
        _ehsize,
        phentsize,
        phnum,
        shentsize,
        shnum,
        shstrndx,
    ) = struct.unpack(hdr_fmt, raw)
    sh_fmt = e + ("IIQQQQIIQQ" if is64 else "IIIIIIIIII")
    sh_size = struct.calcsize(sh_fmt)
    if shoff:
        if shoff + sh_size > size:
            raise ElfError("truncated_elf", f"section headers start past the end of the file ({size} bytes)")
        if shentsize < sh_size:
            raise ElfError("bad_elf", f"section header entry size {shentsize} < {sh_size}")
        if shnum == 0 or phnum == PN_XNUM or shstrndx == SHN_XINDEX:
            # Extended numbering: the real counts are in section 0 (sh_size, sh_link, sh_info).
            sh0 = struct.unpack(sh_fmt, _pread(f, shoff, sh_size))
            if shnum == 0:
                shnum = sh0[5]
            if shstrndx == SHN_XINDEX:
                shstrndx = sh0[6]
            if phnum == PN_XNUM:
                phnum = sh0[7]
        if shnum and shoff + shnum * shentsize > size:
            raise ElfError("truncated_elf", f"section headers end past the end of the file ({size} bytes)")
    else:
        shnum = 0
    if phnum > _MAX_PHNUM:
        raise ElfError("bad_elf", f"implausible program header count {phnum}")
    ph_fmt = e + ("IIQQQQQQ" if is64 else "IIIIIIII")
    ph_size = struct.calcsize(ph_fmt)
    loads: list[Segment] = []
    notes: list[tuple[int, int, int]] = []
    if phnum:
        if phentsize < ph_size:
            raise ElfError("bad_elf", f"program header entry size {phentsize} < {ph_size}")
        if phoff + phnum * phentsize > size:
            raise ElfError("truncated_elf", f"program headers end past the end of the file ({size} bytes)")
        table = _pread(f, phoff, phnum * phentsize)
        if len(table) < phnum * phentsize:
            raise ElfError("truncated_elf", f"program headers end past the end of the file ({size} bytes)")
        for i in range(phnum):
            v = struct.unpack_from(ph_fmt, table, i * phentsize)
            if is64:
                p_type, p_flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, p_align = v
            else:
                p_type, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, p_flags, p_align = v
            if p_type == PT_LOAD:
                if p_offset + p_filesz > size:
                    raise ElfError(
                        "truncated_elf",
                        f"loadable segment at file offset {p_offset:#x} (+{p_filesz:#x}) "
                        f"ends past the end of the file ({size:#x} bytes)",
                    )
                if p_filesz and (p_vaddr - p_offset) % _MIN_PAGE:
                    # Neither the kernel nor ld.so maps such a segment (the file offset and the
                    # address must agree modulo the page size): no process runs this file as it
                    # is, and its offsets would be read at the wrong addresses.
                    raise ElfError(
                        "bad_elf",
                        f"loadable segment at file offset {p_offset:#x} has address {p_vaddr:#x}: "
                        "not mappable (offset and address differ modulo the page size)",
                    )
                loads.append(Segment(p_offset, p_filesz, p_vaddr, p_memsz, p_flags))
            elif p_type == PT_NOTE:
                notes.append((p_offset, p_filesz, p_align))
    loads.sort(key=lambda s: s.vaddr)
    return ElfLayout(
        size=size,
        is64=is64,
        little=ei_data == 1,
        e_type=e_type,
        machine=machine,
        shoff=shoff,
        shnum=shnum,
        shentsize=shentsize,
        shstrndx=shstrndx,
        loads=loads,
        note_ranges=notes,
    )


def parse_notes(data: bytes, *, little: bool, align: int = 4) -> list[Note]:
    """Walk a note area (a PT_NOTE segment or SHT_NOTE section); stop at the first bad record."""
    e = "<" if little else ">"
    a = 8 if align == 8 else 4
    out: list[Note] = []
    pos = 0
    n = len(data)
    while pos + 12 <= n:
        namesz, descsz, ntype = struct.unpack_from(e + "III", data, pos)
        pos += 12
        name_end = pos + namesz
        desc_start = (name_end + a - 1) & ~(a - 1)
        desc_end = desc_start + descsz
        if desc_end > n:
            break
        name = data[pos:name_end].rstrip(b"\0").decode("ascii", "replace")
        out.append(Note(name, ntype, data[desc_start:desc_end]))
        pos = (desc_end + a - 1) & ~(a - 1)
    return out


def read_notes(f: BinaryIO, layout: ElfLayout) -> list[Note]:
    """Every note in the file's PT_NOTE segments."""
    out: list[Note] = []
    for offset, size, align in layout.note_ranges:
        if size > _MAX_NOTE_BYTES or offset + size > layout.size:
            continue
        out.extend(parse_notes(_pread(f, offset, size), little=layout.little, align=align))
    return out


def _gnu_build_id(note: Note) -> bool:
    return note.name == "GNU" and note.type == NT_GNU_BUILD_ID and bool(note.desc)


def _go_build_id(note: Note) -> bool:
    return note.name == "Go" and note.type == NT_GO_BUILD_ID and bool(note.desc)


def oversized_build_id_notes(notes: list[Note]) -> int:
    """How many GNU or Go build-id notes :func:`build_id_from_notes` skipped for their size."""
    return sum(
        1
        for n in notes
        if (_gnu_build_id(n) and len(n.desc) > MAX_GNU_BUILD_ID_BYTES)
        or (_go_build_id(n) and len(n.desc) > MAX_GO_BUILD_ID_BYTES)
    )


def build_id_from_notes(notes: list[Note]) -> tuple[str, str]:
    """(build-id, kind) from notes: GNU first, then Go; ("", "") when neither is there.

    A note longer than any build-id (more than 64 bytes for GNU, as elfutils'
    debuginfod client allows; 256 for Go's ~83-character text) is skipped: it
    would be the prefix of every function ID of the file, and a hostile one
    of 1 MiB made IDs of 2 MB (an index row PostgreSQL refuses).
    """
    go = ""
    for note in notes:
        if _gnu_build_id(note) and len(note.desc) <= MAX_GNU_BUILD_ID_BYTES:
            return note.desc.hex(), BUILD_ID_GNU
        if _go_build_id(note) and len(note.desc) <= MAX_GO_BUILD_ID_BYTES and not go:
            go = go_build_id_text(note.desc)
    if go:
        return go, BUILD_ID_GO
    return "", ""


def go_build_id_text(desc: bytes) -> str:
    """The Go build-id as ``go tool buildid`` prints it; hex when it is not plain printable text.

    Go build-ids are ``actionID/contentID`` strings of URL-safe base64 ([A-Za-z0-9_-/]);
    anything else (a ``:`` would break the function ID) falls back to hex.
    """
    text = desc.rstrip(b"\0").decode("ascii", "replace")
    if text and all(c.isalnum() or c in "-_/=+." for c in text):
        return text
    return desc.hex()


def fallback_build_id(f: BinaryIO, *, max_bytes: int = MAX_FALLBACK_HASH_BYTES) -> str:
    """``sha256-<first 40 hex digits of the SHA-256 of the whole file>``.

    A file larger than ``max_bytes`` (a sparse 1 TB file would hash for hours)
    is ``budget_exceeded``.
    """
    size = os.fstat(f.fileno()).st_size
    if size > max_bytes:
        raise ElfError(
            "budget_exceeded", f"{size} bytes to hash for a fallback build-id, more than {max_bytes}"
        )
    return fallback_from_digest(_sha256_hex(f, size))


def fallback_from_digest(hexdigest: str) -> str:
    return FALLBACK_PREFIX + hexdigest[:FALLBACK_HEX_DIGITS]


def _sha256_hex(f: BinaryIO, size: int) -> str:
    h = hashlib.sha256()
    read_chunks(f.fileno(), size, h.update)
    return h.hexdigest()


def read_chunks(
    fd: int, size: int, consume: Callable[[memoryview], object], check: Callable[[], object] | None = None
) -> int:
    """Feed the file's first ``size`` bytes to ``consume`` in 1 MiB chunks, read at their offsets
    (the file position is not moved), calling ``check`` after each; returns the bytes read (fewer
    when the file is shorter).

    Every chunk is read into one buffer, reused: a new ``bytes`` per chunk (``os.pread``) costs a
    fresh allocation whose pages the kernel must zero, about a third of the time of hashing a file
    already in the page cache. ``consume`` gets a view of the buffer valid only during its call
    (``hashlib``'s ``update`` and ``zlib.crc32`` are done with it when they return).
    """
    buf = bytearray(min(READ_CHUNK_BYTES, max(size, 0)))
    view = memoryview(buf)
    pos = 0
    try:
        while pos < size:
            want = min(READ_CHUNK_BYTES, size - pos)
            n = os.preadv(fd, [view[:want]], pos)
            if not n:
                break
            consume(view[:n])
            pos += n
            if check is not None:
                check()
    finally:
        view.release()
    return pos


def file_build_id(
    f: BinaryIO, layout: ElfLayout | None = None, *, max_bytes: int = MAX_FALLBACK_HASH_BYTES
) -> tuple[str, str]:
    """(build-id, kind) of an open ELF file: GNU, else Go, else the content-hash fallback."""
    if layout is None:
        layout = read_layout(f)
    bid, kind = build_id_from_notes(read_notes(f, layout))
    if bid:
        return bid, kind
    return fallback_build_id(f, max_bytes=max_bytes), BUILD_ID_FALLBACK
