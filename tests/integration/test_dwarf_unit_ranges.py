"""Which compile unit holds an address, in a file without ``.debug_aranges`` (clang's default).

The inlined-function and file:line lookups find an address's unit through ``.debug_aranges``;
clang writes none unless asked (``-gdwarf-aranges``), so there the units' own top entries
(``DW_AT_low_pc``/``DW_AT_high_pc`` or ``DW_AT_ranges``) are read, once, over every unit
(canonical/dwarfinfo.py, ``DwarfIndex._unit_ranges``). A program of many units is built here
with clang, and:

- every function's address is in the unit pyelftools names as its source file's unit;
- a walk over budget (too many units, or the clock) answers nothing, is counted once and not
  walked again at the next lookup;
- a unit whose top entry is garbled answers nothing while every other unit still answers.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from stellaops_runtime.canonical.dwarfinfo import DwarfIndex
from stellaops_runtime.canonical.limits import Limits
from tests.e2e.test_agent_inlined import nm_functions
from tests.elf_files import patched
from tests.integration.test_dwarf_inline_chain import _tool

UNITS = 80  # more than one time-check interval of the walk


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("units")
    sources = []
    for i in range(UNITS):
        src = d / f"unit{i:02d}.c"
        src.write_text(
            f"__attribute__((noinline)) int f{i:02d}(int x) {{ return x * {i + 3} + (x >> 2); }}\n"
        )
        sources.append(str(src))
    calls = " + ".join(f"f{i:02d}(argc)" for i in range(UNITS))
    protos = "".join(f"int f{i:02d}(int);\n" for i in range(UNITS))
    (d / "main.c").write_text(f"{protos}int main(int argc, char **argv) {{ return ({calls}) & 1; }}\n")
    out = d / "prog"
    subprocess.run([_tool("clang"), "-O1", "-g", "-o", str(out), *sources, str(d / "main.c")], check=True)
    with out.open("rb") as f:
        assert ELFFile(f).get_section_by_name(".debug_aranges") is None, "clang wrote .debug_aranges"
    return out


def _truth(path: Path) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """(source file name -> its unit's offset, function -> (start, size)) from pyelftools and nm."""
    units: dict[str, int] = {}
    with path.open("rb") as f:
        for cu in ELFFile(f).get_dwarf_info().iter_CUs():
            name = cu.get_top_DIE().attributes["DW_AT_name"].value.decode()
            units[Path(name).name] = cu.cu_offset
    funcs = {name: (start, end - start) for name, (start, end) in nm_functions(path).items()}
    return units, funcs


def _index(path: Path, limits: Limits) -> tuple[DwarfIndex, object]:
    f = path.open("rb")
    return DwarfIndex(ELFFile(f), limits.budget(str(path))), f


def test_each_address_is_in_its_own_unit(program: Path) -> None:
    units, funcs = _truth(program)
    index, f = _index(program, Limits())
    try:
        for i in range(UNITS):
            start, size = funcs[f"f{i:02d}"]
            want = units[f"unit{i:02d}.c"]
            assert {index.cu_offset_for(a) for a in (start, start + size - 1)} == {want}, f"f{i:02d}"
        assert index.cu_offset_for(funcs["main"][0]) == units["main.c"]
        assert index.cu_offset_for(0x10) == -1  # no unit's code there
        assert index.errors == index.units_over_budget == 0
    finally:
        f.close()


@pytest.mark.parametrize(
    "limits", [Limits(max_dwarf_dies=10), Limits(parse_seconds=0.0)], ids=["units", "clock"]
)
def test_a_walk_over_budget_answers_nothing_once(program: Path, limits: Limits) -> None:
    _, funcs = _truth(program)
    index, f = _index(program, limits)
    try:
        answers = [index.cu_offset_for(funcs[f"f{i:02d}"][0]) for i in range(UNITS)]
        assert answers == [-1] * UNITS
        assert index.units_over_budget == 1  # walked once, remembered
        assert index.errors == 1
        assert index.file_line(funcs["f00"][0]) == ""  # the lookups built on it answer nothing, quietly
    finally:
        f.close()


def test_a_garbled_unit_leaves_the_others_answering(program: Path, tmp_path: Path) -> None:
    units, funcs = _truth(program)
    victim = units["unit07.c"]
    with program.open("rb") as f:
        elf = ELFFile(f)
        info = elf.get_section_by_name(".debug_info")
        cu = elf.get_dwarf_info().get_CU_at(victim)
        top_die_at = info["sh_offset"] + cu.cu_die_offset
    bad = patched(program, tmp_path / "garbled", [(top_die_at, b"\x7f")])  # no such abbreviation
    index, f = _index(bad, Limits())
    try:
        assert index.cu_offset_for(funcs["f07"][0]) == -1
        for i in (0, 6, 8, UNITS - 1):
            assert index.cu_offset_for(funcs[f"f{i:02d}"][0]) == units[f"unit{i:02d}.c"]
        assert index.errors == 1 and index.units_over_budget == 0
    finally:
        f.close()
