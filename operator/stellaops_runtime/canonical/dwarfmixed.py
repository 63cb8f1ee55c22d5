"""DWARF split between ``.zdebug_*`` and ``.debug_*`` sections: the sections pyelftools leaves out.

Why this module exists: with ``-gz=zlib-gnu`` (GNU as/ld's legacy compression) each DWARF
section is compressed only where that makes it smaller, so a file has ``.zdebug_info`` and
``.zdebug_line`` beside a plain ``.debug_str`` or ``.debug_line_str``. pyelftools reads either
every ``.zdebug_*`` name or every ``.debug_*`` one, never a mix, so the strings every name points
into were missing: the line table (``symbolize``'s file:line), names and inlined functions of
such a file failed (tests/integration/test_dwarf_compressed_kinds.py). After pyelftools built its
view, a section it left empty is read under the other spelling. Sizes were charged to the parse
budget beforehand (``check_dwarf_sections`` counts both spellings, a ``.zdebug_*`` one by its
verified inflated size).
"""

from __future__ import annotations

from elftools.dwarf.dwarfinfo import DWARFInfo
from elftools.elf.elffile import ELFFile

__all__ = ["fill_mixed_sections"]

_ATTRS = {
    "aranges": "debug_aranges_sec",
    "abbrev": "debug_abbrev_sec",
    "str": "debug_str_sec",
    "line": "debug_line_sec",
    "loc": "debug_loc_sec",
    "ranges": "debug_ranges_sec",
    "addr": "debug_addr_sec",
    "str_offsets": "debug_str_offsets_sec",
    "line_str": "debug_line_str_sec",
    "loclists": "debug_loclists_sec",
    "rnglists": "debug_rnglists_sec",
}


def fill_mixed_sections(elf: ELFFile, dwarf: DWARFInfo) -> None:
    """Give ``dwarf`` each section it lacks that the file holds under the other spelling."""
    compressed = elf.has_section(".zdebug_info")
    for part, attr in _ATTRS.items():
        if getattr(dwarf, attr) is not None:
            continue
        other = f".debug_{part}" if compressed else f".zdebug_{part}"
        section = elf.get_section_by_name(other)
        if section is None:
            continue
        desc = elf._read_dwarf_section(section, False)
        if other.startswith(".zdebug_"):
            desc = elf._decompress_dwarf_section(desc)
        setattr(dwarf, attr, desc)
