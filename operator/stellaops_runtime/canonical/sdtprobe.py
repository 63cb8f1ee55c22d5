"""Where a USDT probe is: its link-time address from a file's ``.note.stapsdt`` notes.

Why this module exists: split from canonical/binary.py, it reads one
section's notes, bounded (a ``.note.stapsdt`` over 4 MiB is not read), and
applies the prelink adjustment of ``.stapsdt.base`` when the section has moved.
The FrameCanonicalizer uses it to give a USDT event the function its probe is in.
The notes' own format (:func:`sdt_probes`) moved here from canonical/elflayout.py.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from stellaops_runtime.canonical.elflayout import ElfError, ElfLayout, Note, parse_notes
from stellaops_runtime.canonical.symtab import SectionInfo, read_section

MAX_SDT_NOTES = 4 << 20
NT_STAPSDT = 3


@dataclass(frozen=True, slots=True)
class SdtProbe:
    """One SystemTap/USDT probe from a ``.note.stapsdt`` note."""

    provider: str
    name: str
    pc: int  # link-time virtual address of the probe point
    base: int  # link-time address of .stapsdt.base (for prelink adjustment)


def sdt_probes(notes: list[Note], *, little: bool, is64: bool) -> list[SdtProbe]:
    """USDT probes described by ``stapsdt`` notes (type 3, name "stapsdt")."""
    e = "<" if little else ">"
    fmt = e + ("QQQ" if is64 else "III")
    head = struct.calcsize(fmt)
    out: list[SdtProbe] = []
    for note in notes:
        if note.name != "stapsdt" or note.type != NT_STAPSDT or len(note.desc) < head + 2:
            continue
        pc, base, _sem = struct.unpack_from(fmt, note.desc, 0)
        parts = note.desc[head:].split(b"\0")
        if len(parts) < 2:
            continue
        out.append(
            SdtProbe(parts[0].decode("utf-8", "replace"), parts[1].decode("utf-8", "replace"), pc, base)
        )
    return out


def find_sdt_probe(
    f: BinaryIO, sections: dict[str, SectionInfo], layout: ElfLayout, provider: str, name: str
) -> int | None:
    """Link-time address of USDT probe ``provider:name``, or None (no such probe, no or unreadable notes)."""
    sec = sections.get(".note.stapsdt")
    if sec is None or sec.size > MAX_SDT_NOTES:
        return None
    try:
        data = read_section(f, sec.offset, sec.size, ".note.stapsdt")
    except ElfError:
        return None
    notes = parse_notes(data, little=layout.little, align=sec.addralign or 4)
    base_sec = sections.get(".stapsdt.base")
    for p in sdt_probes(notes, little=layout.little, is64=layout.is64):
        if p.provider == provider and p.name == name:
            if base_sec is not None and p.base:
                return p.pc + (base_sec.addr - p.base)  # prelink adjustment
            return p.pc
    return None
