"""The native symbol-table index (canonical/_symindex.c) against the Python path, on real and hostile ELF.

Both paths are run in one process (``STELLAOPS_SYMINDEX=python`` switches the
native one off, canonical/symnative.py) over this machine's libraries and
programs and the test programs of tests/native/build.py, stripped and not:
the tables must hold the same starts, ends and raw names, and thousands of
random offsets the same answers (symbol, offset, function ID, source,
outcome). Hostile copies (names out of the string table, section indices past
the table, ends past 2^64, random damage to the symbol and string tables, a
symbol budget) must give both paths the same tables or the same error.
"""

from __future__ import annotations

import random
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from stellaops_runtime.canonical import symnative
from stellaops_runtime.canonical.debugfiles import DebugSearch
from stellaops_runtime.canonical.elflayout import ElfError, read_layout
from stellaops_runtime.canonical.limits import DEFAULT_LIMITS, Limits
from stellaops_runtime.canonical.resolution import Resolution
from stellaops_runtime.canonical.symbolizer import Symbolizer
from stellaops_runtime.canonical.symtab import index_tables, read_section_table
from tests.native.build import Programs, build_programs

SYSTEM = [
    Path("/usr/lib/x86_64-linux-gnu/libc.so.6"),
    Path("/usr/lib/x86_64-linux-gnu/libstdc++.so.6"),
    Path("/usr/lib/x86_64-linux-gnu/libLLVM-14.so.1"),
    Path("/usr/bin/containerd"),
    Path("/usr/bin/python3.11"),
]
PROGRAMS = ["c_dbg", "c_nodbg", "c_stripped", "cpp", "rs_legacy", "rs_v0", "go_full", "go_stripped"]


@pytest.fixture(scope="session")
def programs(tmp_path_factory: pytest.TempPathFactory) -> Programs:
    return build_programs(tmp_path_factory.mktemp("native"))


@pytest.fixture
def both(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    if not symnative.loaded():
        pytest.skip("the native index is not built (no compiler at install time)")
    yield monkeypatch


def test_the_extension_is_built_where_a_compiler_is() -> None:
    if shutil.which("gcc") is None:
        pytest.skip("no C compiler: the Python path only")
    assert symnative._NATIVE is not None, "setup.py's extension was not built: run scripts/setup.sh"


def _tables(path: Path, mode: str, mp: pytest.MonkeyPatch, limits: Limits = DEFAULT_LIMITS) -> object:
    """(source, starts, ends, raw names) of each table of ``path``, or the ElfError's reason."""
    mp.setenv(symnative.ENV, mode)
    with path.open("rb") as f:
        try:
            layout = read_layout(f)
            budget = limits.budget(str(path))
            tables = index_tables(read_section_table(f, layout, budget), f, layout, budget)
        except ElfError as e:
            return ("error", e.reason, str(e))
    return [(str(t.source), t.starts, t.ends, list(t.names)) for t in tables]


def _offsets(path: Path, tables: object, rng: random.Random, n: int) -> list[int]:
    """``n`` random offsets in the file's executable PT_LOADs, and the edges of 300 of its functions."""
    with path.open("rb") as f:
        loads = [s.header for s in ELFFile(f).iter_segments() if s.header.p_type == "PT_LOAD"]
    text = [(h.p_offset, h.p_offset + h.p_filesz) for h in loads if h.p_flags & 1 and h.p_filesz]
    out = [rng.randrange(*rng.choice(text)) for _ in range(n)]
    assert isinstance(tables, list)
    for _, starts, ends, _ in tables:
        for i in rng.sample(range(len(starts)), min(300, len(starts))):
            for v in (starts[i] - 1, starts[i], ends[i] - 1, ends[i]):
                out += [v - h.p_vaddr + h.p_offset for h in loads if h.p_vaddr <= v < h.p_vaddr + h.p_filesz]
    return [*out, 0, 2**40]


def _answers(path: Path, offsets: list[int], mode: str, mp: pytest.MonkeyPatch) -> list[Resolution | None]:
    """The answers of the symbol tables (``QuickLookup.answer_many``: None where they name nothing)
    for every offset, then ``resolve_file_many``'s for the first 200 (DWARF and Go's table after a
    miss, separate debug files off: their readers are not the code compared)."""
    mp.setenv(symnative.ENV, mode)
    s = Symbolizer(limits=Limits(parse_seconds=120))  # a loaded machine must not make one path give up
    s.set_debug_search(DebugSearch(enabled=False))
    try:
        quick = s.binary(str(path)).quick
        assert quick is not None
        named = quick.answer_many(str(path), offsets, [""] * len(offsets), lambda key: None)
        # whole Resolutions (every field, the native batch's made without __init__ included)
        return [*named, *s.resolve_file_many(str(path), offsets[:200])]
    finally:
        s.close()


def _same(path: Path, mp: pytest.MonkeyPatch, n: int = 3000) -> None:
    native = _tables(path, "native", mp)
    assert native == _tables(path, "python", mp)
    offsets = _offsets(path, native, random.Random(str(path)), n)
    answers = _answers(path, offsets, "native", mp)
    assert answers == _answers(path, offsets, "python", mp)
    if native:  # the offsets compared are named ones: at each edge of 300 functions at least
        assert sum(a is not None for a in answers[: len(offsets)]) >= min(300, len(native[0][1]))


@pytest.mark.parametrize("path", SYSTEM, ids=lambda p: p.name)
def test_system_files_index_and_answer_alike(both: pytest.MonkeyPatch, path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} not installed")
    _same(path, both)


@pytest.mark.parametrize("name", PROGRAMS)
def test_test_programs_index_and_answer_alike(
    both: pytest.MonkeyPatch, programs: Programs, name: str
) -> None:
    _same(programs.get(name), both, n=1000)


# -- hostile copies ------------------------------------------------------------------------


def _symtab(path: Path) -> tuple[int, int, int, int]:
    """(offset, size, string table offset, string table size) of ``path``'s .symtab."""
    with path.open("rb") as f:
        elf = ELFFile(f)
        sec = elf.get_section_by_name(".symtab")
        strsec = elf.get_section(sec["sh_link"])
        return sec["sh_offset"], sec["sh_size"], strsec["sh_offset"], strsec["sh_size"]


def _records(data: bytearray, off: int, size: int) -> Iterator[int]:
    return iter(range(off, off + size - size % 24, 24))


def _functions(data: bytearray, off: int, size: int) -> list[int]:
    """Where each STT_FUNC record defined in a section begins."""
    return [r for r in _records(data, off, size) if data[r + 4] & 0xF == 2 and data[r + 6 : r + 8] != b"\0\0"]


def test_names_past_the_string_table_are_dropped_alike(
    both: pytest.MonkeyPatch, programs: Programs, tmp_path: Path
) -> None:
    src = programs.get("c_nodbg")
    off, size, _, strsize = _symtab(src)
    data = bytearray(src.read_bytes())
    for i, r in enumerate(_records(data, off, size)):
        if i % 2:
            struct.pack_into("<I", data, r, strsize + i * 1000)  # st_name past the table
    dst = tmp_path / "names"
    dst.write_bytes(bytes(data))
    native = _tables(dst, "native", both)
    assert native == _tables(dst, "python", both)
    assert isinstance(native, list) and native  # the records left still index


def test_section_indices_and_sizes_out_of_range_give_the_same_ends(
    both: pytest.MonkeyPatch, programs: Programs, tmp_path: Path
) -> None:
    src = programs.get("c_nodbg")
    off, size, _, _ = _symtab(src)
    data = bytearray(src.read_bytes())
    funcs = _functions(data, off, size)
    for k, r in enumerate(funcs):
        if k % 3 == 0:
            struct.pack_into("<HQQ", data, r + 6, 0xFEFF, 2**64 - 16, 0)  # no such section, no size
        elif k % 3 == 1:
            struct.pack_into("<Q", data, r + 16, 2**64 - 1)  # an end past 2^64
    dst = tmp_path / "ends"
    dst.write_bytes(bytes(data))
    native = _tables(dst, "native", both)
    assert native == _tables(dst, "python", both)
    assert isinstance(native, list)
    assert any(e >= 2**64 for _, _, ends, _ in native for e in ends)


def test_non_ascii_alias_names_rank_as_python_does(
    both: pytest.MonkeyPatch, programs: Programs, tmp_path: Path
) -> None:
    """Every function moved to one start: one alias group, names made non-ASCII (Python ranks those)."""
    src = programs.get("c_nodbg")
    off, size, stroff, strsize = _symtab(src)
    data = bytearray(src.read_bytes())
    funcs = _functions(data, off, size)
    start = struct.unpack_from("<Q", data, funcs[0] + 8)[0]
    for r in funcs:
        struct.pack_into("<Q", data, r + 8, start)
        name = struct.unpack_from("<I", data, r)[0]
        if 0 < name < strsize - 1 and data[stroff + name] not in (0, ord("_")):
            data[stroff + name] = 0xC3 if name % 2 else 0xFF  # a lead byte, or bytes no UTF-8 has
    dst = tmp_path / "aliases"
    dst.write_bytes(bytes(data))
    native = _tables(dst, "native", both)
    assert native == _tables(dst, "python", both)
    assert isinstance(native, list) and len(native[0][1]) == 1


def test_a_symbol_budget_stops_both_alike(both: pytest.MonkeyPatch) -> None:
    path = SYSTEM[1]
    if not path.exists():
        pytest.skip(f"{path} not installed")
    small = Limits(max_symbols=100)
    native = _tables(path, "native", both, small)
    assert native == _tables(path, "python", both, small)
    assert native[0] == "error" and "more than 100" in str(native[2])


def test_random_damage_to_the_symbol_tables_reads_alike(
    both: pytest.MonkeyPatch, programs: Programs, tmp_path: Path
) -> None:
    src = programs.get("c_nodbg")
    off, size, stroff, strsize = _symtab(src)
    clean = src.read_bytes()
    rng = random.Random(12)
    for k in range(60):
        data = bytearray(clean)
        lo, n = (off, size) if k % 3 else (stroff, strsize)
        for _ in range(rng.choice((1, 8, 64))):
            data[lo + rng.randrange(n)] = rng.randrange(256)
        dst = tmp_path / f"damaged{k}"
        dst.write_bytes(bytes(data))
        assert _tables(dst, "native", both) == _tables(dst, "python", both), k
