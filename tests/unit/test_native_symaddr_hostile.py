"""A uprobe's address lookup on hostile ELF files: refused with a reason, never a wrong address or a crash.

The brief's hostile shapes, each cut into a small valid file built here (the
same builder as test_native_symaddr_bounds.py): a symbol table or string
table past the file's end, overlapping sections, a name offset past its
string table, a link to no section, a section header table past the end or
of an absurd count. native/symaddr.py must answer ``ElfError`` (the reason
goes to ``failed``) or ``SymbolNotFound``; any other exception ended the
probes' load. These pass on the code as it is: review evidence, kept.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from stellaops_runtime.canonical.elflayout import ElfError
from stellaops_runtime.native.symaddr import SymbolNotFound, find_address
from tests.unit.test_native_symaddr_bounds import _elf

SH_SIZE = 64
SYMTAB, STRTAB = 1, 2  # section indexes in the builder's file


def _base(tmp_path: Path) -> tuple[bytearray, int]:
    path = tmp_path / "base"
    _elf(path, b"\0other\0target\0", [1, 7])  # "target" is the second symbol, at 0x1002
    data = bytearray(path.read_bytes())
    assert find_address(str(path), "target") == 0x1002
    return data, struct.unpack_from("<Q", data, 40)[0]  # e_shoff


def _set(data: bytearray, at: int, fmt: str, value: int) -> None:
    struct.pack_into(fmt, data, at, value)


def _cases(data: bytearray, shoff: int) -> dict[str, bytearray]:
    sh = lambda i, field: shoff + i * SH_SIZE + field  # noqa: E731 (offset, size, link at 24, 32, 40)
    out: dict[str, bytearray] = {}

    def case(name: str, *edits: tuple[int, str, int]) -> None:
        d = bytearray(data)
        for at, fmt, value in edits:
            _set(d, at, fmt, value)
        out[name] = d

    n = len(data)
    case("symtab offset past the end", (sh(SYMTAB, 24), "<Q", n + 4096))
    case("symtab size past the end", (sh(SYMTAB, 32), "<Q", 1 << 40))
    case("strtab past the end", (sh(STRTAB, 24), "<Q", n - 2))
    case("strtab offset wraps", (sh(STRTAB, 24), "<Q", (1 << 64) - 8))
    case("symtab over the strtab", (sh(SYMTAB, 24), "<Q", struct.unpack_from("<Q", data, sh(STRTAB, 24))[0]))
    case("strtab over the symtab", (sh(STRTAB, 24), "<Q", struct.unpack_from("<Q", data, sh(SYMTAB, 24))[0]))
    case("symtab linked to no section", (sh(SYMTAB, 40), "<I", 999))
    case("symtab linked to itself", (sh(SYMTAB, 40), "<I", SYMTAB))
    case("section headers past the end", (40, "<Q", n + 64))
    case("absurd section count", (60, "<H", 0xFFFF))
    case("section header string index out of range", (62, "<H", 0xFFFE))
    sym = struct.unpack_from("<Q", data, sh(SYMTAB, 24))[0]
    case("a name offset past the string table", (sym + 2 * 24, "<I", 0xFFFFFFF0))
    return out


def test_hostile_section_layouts_are_refused_with_a_reason(tmp_path: Path) -> None:
    data, shoff = _base(tmp_path)
    for name, d in _cases(data, shoff).items():
        path = tmp_path / name.replace(" ", "_")
        path.write_bytes(bytes(d))
        try:
            found = find_address(str(path), "target")
        except (ElfError, SymbolNotFound) as e:
            assert str(e), name
            continue
        except Exception as e:  # the point: nothing else may come out
            pytest.fail(f"{name}: {type(e).__name__}: {e}")
        # only a layout that leaves the symbol and its name where they were may still find it
        assert found == 0x1002, (name, hex(found))
