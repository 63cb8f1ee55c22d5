"""The column-at-a-time symbol reader (canonical/symtab.py) and the tables built from its columns.

Two independent references: records packed here for every ELF class and byte
order (with each kind of record the reader must drop: undefined, absolute,
data, address 0, empty or out-of-table names), and pyelftools'
``iter_symbols()`` over this machine's real libraries. In both the table
built from the reader's columns must equal the table built from plain
per-symbol tuples (aliases, zero sizes and section bounds included).
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from stellaops_runtime.canonical.addrindex import STB_GLOBAL, STB_LOCAL, STB_WEAK, AddressTable, RawSymbol
from stellaops_runtime.canonical.elflayout import ElfError, read_layout
from stellaops_runtime.canonical.symtab import SectionInfo, function_symbols, read_section_table

STT_OBJECT, STT_FUNC, STT_GNU_IFUNC = 1, 2, 10
SHN_UNDEF, SHN_ABS, SHN_COMMON = 0, 0xFFF1, 0xFFF2
TEXT = (0x1000, 0x3000)  # section 1: [addr, addr + size)


def _pack(is64: bool, little: bool, name: int, value: int, size: int, info: int, shndx: int) -> bytes:
    e = "<" if little else ">"
    if is64:
        return struct.pack(e + "IBBHQQ", name, info, 0, shndx, value, size)
    return struct.pack(e + "IIIBBH", name, value, size, info, 0, shndx)


def _case(
    is64: bool, little: bool, seed: int
) -> tuple[bytes, bytes, list[tuple[int, int, int, int, int, str]]]:
    """(symbol section, string table, records as (name offset, value, size, info, shndx, name))."""
    rng = random.Random(seed)
    strtab = bytearray(b"\0")
    records = [(0, 0, 0, 0, 0, "")]  # the null symbol
    names = ["f", "_f", "__f", "g", "alias_a", "alias_b", "zz", "asm_entry"]
    for i in range(400):
        name = f"{rng.choice(names)}{i % 37}"
        off = len(strtab)
        strtab += name.encode() + b"\0"
        value = TEXT[0] + rng.randrange(0, TEXT[1] - 0x40, 0x10)
        size = rng.choice([0, 0x10, 0x20, 0x40])
        kind = rng.choice([STT_FUNC, STT_FUNC, STT_FUNC, STT_GNU_IFUNC, STT_OBJECT])
        bind = rng.choice([STB_LOCAL, STB_GLOBAL, STB_WEAK])
        shndx = rng.choice([1, 1, 1, 1, SHN_UNDEF, SHN_ABS, SHN_COMMON])
        records.append((off, value, size, (bind << 4) | kind, shndx, name))
    # What the reader must drop even though type and section are right:
    records.append((len(strtab) - 1, TEXT[0], 8, (STB_GLOBAL << 4) | STT_FUNC, 1, ""))  # empty name
    records.append((len(strtab) + 999, TEXT[0] + 8, 8, (STB_GLOBAL << 4) | STT_FUNC, 1, ""))  # name outside
    records.append((1, 0, 8, (STB_GLOBAL << 4) | STT_FUNC, 1, "f0"))  # address 0
    sym = b"".join(_pack(is64, little, n, v, s, i, x) for n, v, s, i, x, _ in records)
    return sym, bytes(strtab), records


def _expected(records: list[tuple[int, int, int, int, int, str]], arm: bool) -> list[RawSymbol]:
    out: list[RawSymbol] = []
    for _off, value, size, info, shndx, name in records:
        if info & 0xF not in (STT_FUNC, STT_GNU_IFUNC) or shndx in (SHN_UNDEF, SHN_ABS, SHN_COMMON):
            continue
        if not value or not name:
            continue
        out.append((value & ~1 if arm else value, size, name, info >> 4, TEXT[0] + TEXT[1]))
    return out


def _same(a: AddressTable, b: AddressTable) -> None:
    assert a.starts == b.starts
    assert a.ends == b.ends
    assert list(a.names) == list(b.names)


@pytest.mark.parametrize("is64", [True, False])
@pytest.mark.parametrize("little", [True, False])
def test_columns_match_per_record_reading(tmp_path: Path, is64: bool, little: bool) -> None:
    sym, strtab, records = _case(is64, little, seed=is64 * 2 + little)
    path = tmp_path / "syms.bin"
    path.write_bytes(sym + strtab)
    rec = 24 if is64 else 16
    sections = [
        SectionInfo("", "0", 0, 0, 0, 0, 0, 0),
        SectionInfo(".text", "1", TEXT[0], 0, TEXT[1], 0, 0, 16),
        SectionInfo(".symtab", "SHT_SYMTAB", 0, 0, len(sym), 3, rec, 8),
        SectionInfo(".strtab", "SHT_STRTAB", 0, len(sym), len(strtab), 0, 0, 1),
    ]
    for arm in (False, True):
        with open(path, "rb") as f:
            cols = function_symbols(sections, f, ".symtab", is64=is64, little=little, arm=arm)
        expected = _expected(records, arm)
        assert len(cols) == len(expected)
        assert sorted(zip(cols.starts, cols.sizes, list(cols.names), cols.binds, strict=True)) == sorted(
            (s, z, n, b) for s, z, n, b, _ in expected
        )
        _same(AddressTable("symtab", cols), AddressTable("symtab", expected))
    # A wrong entry size is a damaged file, said so.
    bad = [*sections[:2], SectionInfo(".symtab", "SHT_SYMTAB", 0, 0, len(sym), 3, rec + 1, 8), sections[3]]
    with open(path, "rb") as f, pytest.raises(ElfError, match="entry size"):
        function_symbols(bad, f, ".symtab", is64=is64, little=little)


def _pyelftools_reference(path: Path, section: str) -> list[RawSymbol]:
    with open(path, "rb") as f:
        elf = ELFFile(f)
        ends = [s["sh_addr"] + s["sh_size"] for s in elf.iter_sections()]
        out: list[RawSymbol] = []
        for s in elf.get_section_by_name(section).iter_symbols():
            kind, shndx = s["st_info"]["type"], s["st_shndx"]
            if kind not in ("STT_FUNC", "STT_LOOS") or isinstance(shndx, str) or shndx >= 0xFF00:
                continue
            if not s["st_value"] or not s.name:
                continue
            bind = {"STB_LOCAL": 0, "STB_GLOBAL": 1, "STB_WEAK": 2}.get(s["st_info"]["bind"], 10)
            out.append((s["st_value"], s["st_size"], s.name, bind, ends[shndx] if shndx < len(ends) else 0))
        return out


def _libc_debug_file() -> list[Path]:
    found = sorted(Path("/usr/lib/debug/.build-id").glob("*/*.debug"), key=lambda p: -p.stat().st_size)
    return found[:1]


@pytest.mark.parametrize(
    ("path", "section"),
    [
        (Path("/usr/lib/x86_64-linux-gnu/libc.so.6"), ".dynsym"),
        (Path("/usr/lib/x86_64-linux-gnu/libstdc++.so.6"), ".dynsym"),
        *((p, ".symtab") for p in _libc_debug_file()),
    ],
)
def test_real_libraries_match_pyelftools(path: Path, section: str) -> None:
    if not path.exists():
        pytest.skip(f"{path} not installed")
    with open(path, "rb") as f:
        layout = read_layout(f)
        cols = function_symbols(
            read_section_table(f, layout), f, section, is64=layout.is64, little=layout.little
        )
    reference = _pyelftools_reference(path, section)
    assert len(cols) == len(reference) > 100
    _same(AddressTable("dynsym", cols), AddressTable("dynsym", reference))


def test_a_table_over_the_symbol_budget_is_refused_before_its_columns_are_built(tmp_path: Path) -> None:
    """A file can hold millions of function records in a table within the byte budget (64 MiB:
    2.8 million): each became Python ints (about 150 bytes a record: 400 MiB for a 60 MiB file a
    container wrote) before the count was checked. The count is checked first now: the memory
    spent stays near the table's own bytes."""
    import tracemalloc

    from stellaops_runtime.canonical.limits import Limits

    n = 200_000
    func = _pack(True, True, 1, TEXT[0], 1, (STB_GLOBAL << 4) | STT_FUNC, 1)
    sym = _pack(True, True, 0, 0, 0, 0, 0) + func * n
    strtab = b"\0f\0"
    path = tmp_path / "many.bin"
    path.write_bytes(sym + strtab)
    sections = [
        SectionInfo("", "0", 0, 0, 0, 0, 0, 0),
        SectionInfo(".text", "1", TEXT[0], 0, TEXT[1], 0, 0, 16),
        SectionInfo(".symtab", "SHT_SYMTAB", 0, 0, len(sym), 3, 24, 8),
        SectionInfo(".strtab", "SHT_STRTAB", 0, len(sym), len(strtab), 0, 0, 1),
    ]
    budget = Limits(max_symbols=1000).budget("lookup")
    tracemalloc.start()
    try:
        with open(path, "rb") as f, pytest.raises(ElfError, match=f"{n} functions, more than 1000") as e:
            function_symbols(sections, f, ".symtab", is64=True, little=True, budget=budget)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert e.value.reason == "budget_exceeded"
    assert peak < 3 * len(sym), (peak, len(sym))  # the table's bytes and a few columns of bytes
