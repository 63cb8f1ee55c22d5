"""Finding a Go function table by its magic and header checks, and the one spelling of ABI-suffixed names.

The tables are built byte by byte from the published layout (tests/unit/test_symbol_tables.py's
``build_pclntab``); tests/integration/test_go_pie.py does the same on real Go binaries.
"""

from __future__ import annotations

import struct

import pytest

from stellaops_runtime.canonical import gopclntab
from stellaops_runtime.canonical.demangle import demangle, go_package_path, language_of
from stellaops_runtime.canonical.gopclnfind import may_have_table
from stellaops_runtime.canonical.gopclntab import (
    MAGIC_GO116,
    MAGIC_GO118,
    MAGIC_GO120,
    parse_functions,
    plausible,
    scan,
)
from stellaops_runtime.canonical.symtab import SectionInfo
from tests.unit.test_symbol_tables import build_pclntab

FUNCS = [(0x401000, "runtime.main"), (0x401100, "main.(*T).M"), (0x401180, "main.main.func1")]


def table(magic: int = MAGIC_GO120) -> bytes:
    return build_pclntab(magic, FUNCS, 0x401200, text_start=0x401000)


@pytest.mark.parametrize("magic", [MAGIC_GO116, MAGIC_GO118, MAGIC_GO120])
def test_scan_finds_a_table_inside_other_data(magic: int) -> None:
    t = table(magic)
    # other data before and after, with decoy magics that fail the header checks
    decoy = struct.pack("<I", magic) + b"\x00\x00\x03\x08" + struct.pack("<I", magic) + b"\x01\x00\x01\x08"
    region = b"\x11" * 13 + decoy + b"\x22" * 7 + t + b"\x33" * 40
    hits = scan(region, little=True)
    assert [pos for pos, _ in hits] == [13 + len(decoy) + 7]
    assert hits[0][1].nfunc == 3 and hits[0][1].min_lc == 1


def _with(data: bytes, offset: int, raw: bytes) -> bytes:
    return data[:offset] + raw + data[offset + len(raw) :]


def test_plausible_rejects_each_broken_header_field() -> None:
    t = table()
    assert plausible(t, 0, True) is not None
    functab = struct.unpack_from("<Q", t, 8 + 7 * 8)[0]
    broken = {
        "wrong magic": _with(t, 0, struct.pack("<I", 0xFFFFFFF2)),
        "go1.2 magic": _with(t, 0, struct.pack("<I", 0xFFFFFFFB)),
        "pad byte": _with(t, 4, b"\x01"),
        "minLC 3": _with(t, 6, b"\x03"),
        "ptrSize 2": _with(t, 7, b"\x02"),
        "no functions": _with(t, 8, struct.pack("<Q", 0)),
        "offsets out of order": _with(t, 8 + 4 * 8, struct.pack("<Q", 8)),  # cutab before funcnametab
        "offset past the region": _with(t, 8 + 6 * 8, struct.pack("<Q", len(t) + 100)),
        "function table past the region": _with(t, 8, struct.pack("<Q", 1000)),
        "unsorted": _with(t, functab, struct.pack("<II", 0x150, 0)),
        "unrelocated zeros": _with(t, functab, b"\0" * 28),
        "truncated": t[: functab + 12],
    }
    for what, data in broken.items():
        assert plausible(data, 0, True) is None, what
        assert scan(data, little=True) == [], what


def test_a_table_of_unrelocated_entries_is_refused() -> None:
    """A go1.16 PIE table whose entry words a linker left 0 (the values live in relocations)."""
    zeros = build_pclntab(MAGIC_GO116, [(0, "a"), (0, "b")], 0)
    with pytest.raises(ValueError, match="covers no code"):
        parse_functions(zeros, little=True)
    assert plausible(zeros, 0, True) is None


def test_scan_is_bounded_on_a_region_full_of_magics(monkeypatch: pytest.MonkeyPatch) -> None:
    """10,000 header-shaped decoys: at most 64 are checked, nothing is found, no time is lost.

    The work is counted (checks made), not timed: a wall-clock bound flakes on a loaded machine."""
    decoy = struct.pack("<IBBBB", MAGIC_GO118, 0, 0, 1, 8) + struct.pack("<8Q", 5, 1, 0x1000, 1, 1, 1, 1, 1)
    region = decoy * 10_000 + table(MAGIC_GO118)
    checked: list[int] = []

    def counted(data: bytes, pos: int, little: bool) -> object:
        checked.append(pos)
        return plausible(data, pos, little)

    monkeypatch.setattr(gopclntab, "plausible", counted)
    assert scan(region, little=True) == []
    assert len(checked) == 64, len(checked)
    monkeypatch.undo()
    assert scan(decoy * 10 + table(MAGIC_GO118), little=True)[0][0] == 10 * len(decoy)


def _section(name: str, size: int = 64, type_: str = "SHT_PROGBITS") -> SectionInfo:
    return SectionInfo(
        name=name, type=type_, addr=0x1000, offset=0x1000, size=size, link=0, entsize=0, addralign=8
    )


def test_which_files_are_searched() -> None:
    def names(*secs: SectionInfo) -> dict[str, SectionInfo]:
        return {s.name: s for s in secs}

    assert may_have_table(names(_section(".gopclntab")))
    assert may_have_table(names(_section(".data.rel.ro.gopclntab")))
    assert may_have_table(names(_section(".data.rel.ro"), _section(".go.buildinfo")))
    assert may_have_table(names(_section(".data.rel.ro"), _section(".note.go.buildid", type_="SHT_NOTE")))
    # a C/C++ library's .data.rel.ro is never searched; an empty or NOBITS table is not a table
    assert not may_have_table(names(_section(".data.rel.ro"), _section(".text")))
    assert not may_have_table(names(_section(".gopclntab", type_="SHT_NOBITS")))
    assert not may_have_table(names(_section(".gopclntab", size=0)))


@pytest.mark.parametrize(
    ("symbol", "canonical"),
    [
        ("crypto/sha256.block.abi0", "crypto/sha256.block"),
        ("runtime.rt0_go.abi0", "runtime.rt0_go"),
        ("internal/bytealg.IndexByteString.abi0", "internal/bytealg.IndexByteString"),
        ("github.com/x/y.(*T).M.abiinternal", "github.com/x/y.(*T).M"),
        ("main.Map[go.shape.int_0].abi0", "main.Map[...]"),
        ("gopkg.in/yaml%2ev3.F.abi0", "gopkg.in/yaml%2ev3.F"),
        # a function named abi0 keeps its name: nothing would be left after the package
        ("pkg.abi0", "pkg.abi0"),
        ("github.com/x.abi0", "github.com/x.abi0"),
        ("gopkg.in/yaml%2ev3.abi0", "gopkg.in/yaml%2ev3.abi0"),
        ("main.abiCheck", "main.abiCheck"),
        ("crypto/sha256.block", "crypto/sha256.block"),
    ],
)
def test_go_abi_suffixes_are_dropped(symbol: str, canonical: str) -> None:
    assert demangle(symbol) == canonical
    assert language_of(symbol) == "go"
    assert go_package_path(symbol) == go_package_path(canonical)
