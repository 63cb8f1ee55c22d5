"""Which section indices the column reader keeps (canonical/symtab.py), byte by byte.

The reader decides per record from the two bytes of ``st_shndx`` and the type
nibble of ``st_info`` with whole-column byte tables (no Python object per
record); a mistake there would drop or keep whole classes of symbols, e.g.
functions in section 256 (low byte 0) of a file with many sections, or
``SHN_ABS`` (0xfff1) ones. Every high byte and a spread of low bytes are
checked against the rule itself: a function (``STT_FUNC`` or
``STT_GNU_IFUNC``) with ``0 < st_shndx < 0xff00``, for both ELF classes and
byte orders.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from stellaops_runtime.canonical.symtab import SectionInfo, function_symbols

TYPES = [0, 1, 2, 3, 10, 0x12, 0x22, 0x1A, 0x11]  # NOTYPE, OBJECT, FUNC, SECTION, IFUNC; bindings mixed in
LOW_BYTES = [0, 1, 2, 0x7F, 0x80, 0xF1, 0xFE, 0xFF]


def _pack(is64: bool, little: bool, name: int, value: int, info: int, shndx: int) -> bytes:
    e = "<" if little else ">"
    if is64:
        return struct.pack(e + "IBBHQQ", name, info, 0, shndx, value, 16)
    return struct.pack(e + "IIIBBH", name, value, 16, info, 0, shndx)


@pytest.mark.parametrize("is64", [True, False])
@pytest.mark.parametrize("little", [True, False])
def test_kept_exactly_functions_in_a_section(tmp_path: Path, is64: bool, little: bool) -> None:
    strtab = b"\0f\0"
    records = [_pack(is64, little, 0, 0, 0, 0)]  # the null symbol
    expected: list[int] = []
    value = 0x1000
    for hi in range(256):
        for lo in LOW_BYTES:
            shndx = hi << 8 | lo
            for info in TYPES:
                value += 16
                records.append(_pack(is64, little, 1, value, info, shndx))
                if info & 0xF in (2, 10) and 0 < shndx < 0xFF00:
                    expected.append(value)
    sym = b"".join(records)
    path = tmp_path / "syms.bin"
    path.write_bytes(sym + strtab)
    rec = 24 if is64 else 16
    sections = [
        SectionInfo("", "0", 0, 0, 0, 0, 0, 0),
        SectionInfo(".symtab", "SHT_SYMTAB", 0, 0, len(sym), 2, rec, 8),
        SectionInfo(".strtab", "SHT_STRTAB", 0, len(sym), len(strtab), 0, 0, 1),
    ]
    with open(path, "rb") as f:
        cols = function_symbols(sections, f, ".symtab", is64=is64, little=little)
    assert list(cols.starts) == expected
    functions = sum(1 for t in TYPES if t & 0xF in (2, 10))
    # every section index but 0 and 0xff00..0xffff
    assert len(expected) == (255 * len(LOW_BYTES) - 1) * functions
