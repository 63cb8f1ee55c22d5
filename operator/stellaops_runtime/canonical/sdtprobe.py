"""Where a USDT probe is: its link-time address from a file's ``.note.stapsdt`` notes.

Why this module exists: split from canonical/binary.py, it reads one
section's notes, bounded (a ``.note.stapsdt`` over 4 MiB is not read), and
applies the prelink adjustment of ``.stapsdt.base`` when the section has moved.
The FrameCanonicalizer uses it to give a USDT event the function its probe is in.
"""

from __future__ import annotations

from typing import BinaryIO

from stellaops_runtime.canonical.elflayout import ElfError, ElfLayout, parse_notes, sdt_probes
from stellaops_runtime.canonical.symtab import SectionInfo, read_section

MAX_SDT_NOTES = 4 << 20


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
