"""clang's DWARF 5 (indexed addresses and range lists) against llvm-symbolizer.

clang 14 and later write DWARF 5 by default, and address code through the unit's address pool:
``DW_AT_low_pc`` is ``DW_FORM_addrx`` (an index into ``.debug_addr``) and ``DW_AT_ranges`` is
``DW_FORM_rnglistx`` (an index into the unit's offset table in ``.debug_rnglists``). GCC writes
plain addresses and section offsets outside split DWARF, so the other DWARF tests never met them.
Before this test, every lookup in a clang build failed: the inlined functions of a clang binary
were never counted ("not observed" for each of them) and a clang binary's DWARF-only copy resolved
nothing.

Programs are built here with Debian's clang (scripts/setup.sh installs it):

- the inline-chain program of tests/integration/test_dwarf_inline_chain.py at ``-O2 -g``: its
  chains must equal ``llvm-symbolizer --inlines`` at every byte of its own functions and at 300
  random addresses, with no lookup failing and no range list left unread;
- tests/native/stella_cpp.cpp and stella_split.c at ``-O2 -g``, each against a copy stripped of
  its symbol tables but not of its DWARF: every address the DWARF-only copy names gets the symbol
  table's name and offset, and the program's own functions are all named;
- the CLI, as a user runs it: ``stella-runtime symbolize --file`` on a stripped build whose DWARF
  is in a separate file (``.gnu_debuglink``) names the inlined functions llvm-symbolizer names on
  the unstripped build.

Each build is checked to contain the two forms, so a clang that stopped writing them would fail
here rather than pass without testing anything.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from tests.e2e.test_agent_inlined import symbolize_agrees_on_inlines
from tests.integration import test_dwarf_cold as cold
from tests.integration import test_dwarf_inline_chain as chains
from tests.native.build import HERE, dwarf_only_copy

CLANG_CXX = ["-O2", "-g", "-gdwarf-5"]


def _clang(lang: str) -> str:
    return chains._tool("clang++" if lang == "c++" else "clang")


def _forms(path: Path) -> dict[str, set[str]]:
    """attribute -> the forms it has anywhere in the file's DWARF (low_pc and ranges, by tag)."""
    seen: dict[str, set[str]] = {}
    with path.open("rb") as f:
        dwarf = ELFFile(f).get_dwarf_info(relocate_dwarf_sections=False)
        for cu in dwarf.iter_CUs():
            for die in cu.iter_DIEs():
                for name in ("DW_AT_low_pc", "DW_AT_ranges"):
                    attr = die.attributes.get(name)
                    if attr is not None:
                        seen.setdefault(f"{die.tag}/{name}", set()).add(attr.form)
    return seen


@pytest.fixture(scope="module")
def inline_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("clang_inline")
    (d / "inl.cpp").write_text(chains.CXX_SRC)
    subprocess.run([_clang("c++"), *CLANG_CXX, "-o", str(d / "cxx"), str(d / "inl.cpp")], check=True)
    forms = _forms(d / "cxx")
    assert "DW_FORM_addrx" in forms["DW_TAG_subprogram/DW_AT_low_pc"], forms
    assert "DW_FORM_rnglistx" in forms["DW_TAG_inlined_subroutine/DW_AT_ranges"], forms
    return d / "cxx"


def test_clang_inline_chains_equal_llvm_symbolizer(inline_program: Path) -> None:
    addrs, n_own = chains.addresses(inline_program, "3inl")
    ref = chains.llvm_chains(inline_program, addrs)
    ours, stats = chains.our_chains(inline_program, addrs)
    print(f"clang -O2 -g (DWARF 5): {len(addrs)} addresses ({n_own} in own functions), stats {stats}")
    assert chains.disagreements(addrs, ours, ref, "clang") == []
    assert stats["errors"] == stats["ranges_unread"] == stats["unit_unreadable"] == 0
    # not vacuous: most own addresses are inside inlined code, two deep in places, and some of
    # them only through a range list (an inlined subroutine with DW_AT_ranges)
    assert sum(1 for c in ours[:n_own] if c) > n_own // 4
    assert max(len(c) for c in ours[:n_own]) >= 2


def test_clang_inlined_ranges_come_from_the_range_lists(inline_program: Path) -> None:
    """The addresses covered only by inlined subroutines with DW_AT_ranges (rnglistx) answer."""
    with inline_program.open("rb") as f:
        dwarf = ELFFile(f).get_dwarf_info(relocate_dwarf_sections=False)
        lists = dwarf.range_lists()
        assert lists is not None
        covered: list[int] = []
        for cu in dwarf.iter_CUs():
            base = cu.get_top_DIE().attributes["DW_AT_low_pc"].value
            for die in cu.iter_DIEs():
                ranges = die.attributes.get("DW_AT_ranges")
                if die.tag != "DW_TAG_inlined_subroutine" or ranges is None:
                    continue
                assert ranges.form == "DW_FORM_rnglistx"
                for e in lists.get_range_list_at_offset(ranges.value, cu=cu):
                    if hasattr(e, "begin_offset"):
                        lo, hi = (e.begin_offset, e.end_offset)
                        if not e.is_absolute:
                            lo, hi = lo + base, hi + base
                        covered.extend(range(lo, hi))
    assert len(covered) > 20, "too few addresses in range-listed inlined code to prove anything"
    ref = chains.llvm_chains(inline_program, covered)
    ours, _ = chains.our_chains(inline_program, covered)
    assert all(ref), "llvm-symbolizer names an inlined function at each of them"
    assert chains.disagreements(covered, ours, ref, "clang rnglistx") == []


@pytest.mark.parametrize(
    ("name", "lang", "source", "own"),
    [
        ("cpp", "c++", "stella_cpp.cpp", {"peer::run(int)", "peer::Canvas::paint(int)", "main"}),
        ("c", "c", "stella_split.c", {"main", "report"}),
    ],
)
def test_clang_dwarf_only_copy_gives_the_symbol_tables_names(
    tmp_path: Path, name: str, lang: str, source: str, own: set[str]
) -> None:
    full, dwarf_only = tmp_path / name, tmp_path / f"{name}_dwarfonly"
    subprocess.run([_clang(lang), "-O2", "-g", "-gdwarf-5", "-o", str(full), str(HERE / source)], check=True)
    dwarf_only_copy(full, dwarf_only)
    assert "DW_FORM_addrx" in _forms(dwarf_only)["DW_TAG_subprogram/DW_AT_low_pc"]
    result = cold._compare(full, dwarf_only)
    result.report(f"clang -O2 -g {source}: DWARF-only vs symbol table")
    assert result.unexplained == []
    assert own <= result.resolved, sorted(result.resolved)
    # what stays unresolved has no DWARF of its own: the C runtime's start-up code, and clang's
    # __clang_call_terminate (a helper it emits without debug information)
    crt = {"_start", "_init", "_fini", "deregister_tm_clones", "register_tm_clones"}
    crt |= {"__do_global_dtors_aux", "frame_dummy", "__clang_call_terminate"}
    assert result.unresolved <= crt, sorted(result.unresolved - crt)


def test_cli_names_a_clang_builds_inlined_functions_from_its_debug_file(
    inline_program: Path, tmp_path: Path
) -> None:
    full = inline_program
    stripped, debug = tmp_path / "cxx.stripped", tmp_path / "cxx.debug"
    subprocess.run(["objcopy", "--only-keep-debug", str(full), str(debug)], check=True)
    subprocess.run(["strip", "-o", str(stripped), str(full)], check=True)
    subprocess.run(["objcopy", f"--add-gnu-debuglink={debug}", str(stripped)], check=True, cwd=tmp_path)
    docs = symbolize_agrees_on_inlines(full, stripped, "_ZN3inl7entry_a")
    assert all(d["symbol"] == "inl::entry_a(int)" for d in docs), docs[0]
