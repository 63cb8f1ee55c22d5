"""Small ELF helpers the symbolizer tests share: where an address lies in a file, and patched copies.

Read with pyelftools, which shares no code with the canonicalizer's own ELF
reading (canonical/elflayout.py), so a test's expected offsets do not come
from the code under test.
"""

from __future__ import annotations

from pathlib import Path

from elftools.elf.elffile import ELFFile


def file_offset(path: Path, vaddr: int) -> int:
    """The file offset of link-time address ``vaddr`` (the PT_LOAD holding it)."""
    with path.open("rb") as f:
        for seg in ELFFile(f).iter_segments():
            hd = seg.header
            if hd.p_type == "PT_LOAD" and hd.p_vaddr <= vaddr < hd.p_vaddr + hd.p_filesz:
                return int(vaddr - hd.p_vaddr + hd.p_offset)
    raise AssertionError(f"{vaddr:#x} is in no PT_LOAD of {path}")


def patched(src: Path, dst: Path, edits: list[tuple[int, bytes]]) -> Path:
    """``dst``: a copy of ``src`` with each (file offset, bytes) written over it."""
    data = bytearray(src.read_bytes())
    for off, raw in edits:
        data[off : off + len(raw)] = raw
    dst.write_bytes(bytes(data))
    return dst
