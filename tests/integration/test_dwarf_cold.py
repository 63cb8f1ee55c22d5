"""A DWARF-only copy of a binary gives the function IDs its symbol-table copy gives (issue 12, defect 3).

Real programs are built here (tests/native/build.py, ``build_dwarf_variants``): stella_cpp.cpp with
g++ -O2 -g, whose unlikely branches GCC moves to ``<function>.cold`` parts (a ``.cold`` symbol in
``.symtab``, a second ``DW_AT_ranges`` range in DWARF), and stella_rs.rs with rustc -O -g (v0
mangling, std's DWARF included). Each is compared with a copy stripped of its symbol tables but
not of ``.debug_*``, at the entry, the last byte and random addresses of every function of the
symbol table. The IDs must be identical wherever the DWARF-only copy names a function, except for
the two documented cases DWARF cannot tell apart (docs/function-ids.md, "DWARF-only files"): a
lone GCC clone (named as its origin) and a function merged with another one (the symbol table's
alias choice may be the other name). Every ``.cold`` part must agree, and a function DWARF gives
no symbol name for (C++ internal linkage) must stay unresolved rather than get a short name.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stellaops_runtime.canonical.binary import Binary
from stellaops_runtime.canonical.corpus import build_cxx_sample
from stellaops_runtime.canonical.demangle import demangle
from stellaops_runtime.canonical.limits import Limits
from stellaops_runtime.canonical.resolution import Source
from tests.native.build import Programs, build_dwarf_variants, dwarf_only_copy

# pyelftools decodes std's DWARF of the Rust program in ~3-4 s on a loaded 2-core machine, over the
# default 2 s parse budget; this test is about names, so it gives the parse more time.
_LIMITS = Limits(parse_seconds=120.0)
_CLONE = re.compile(r"\.(?:isra|constprop|part|lto_priv)\.[0-9]+")


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> Programs:
    return build_dwarf_variants(tmp_path_factory.mktemp("dwarf-variants"))


def _symtab_aliases(path: Path) -> dict[int, set[str]]:
    """start address -> raw names of every defined function symbol there, from binutils' nm."""
    out = subprocess.run(["nm", "--defined-only", str(path)], capture_output=True, text=True, check=True)
    aliases: dict[int, set[str]] = {}
    for line in out.stdout.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "TtWwi":
            aliases.setdefault(int(parts[0], 16), set()).add(parts[2])
    return aliases


@dataclass
class Comparison:
    counts: Counter[str] = field(default_factory=Counter)
    unexplained: list[tuple[str, object, object]] = field(default_factory=list)
    cold_addresses: int = 0
    unresolved: set[str] = field(default_factory=set)  # symtab names the DWARF-only copy left out
    resolved: set[str] = field(default_factory=set)

    def report(self, label: str) -> None:
        total = sum(self.counts.values())
        named = total - self.counts["unresolved"]
        print(
            f"\n{label}: {self.counts['same']}/{total} addresses identical "
            f"({100 * self.counts['same'] / total:.1f}%), {self.counts['same']}/{named} of those the "
            f"DWARF-only copy names ({100 * self.counts['same'] / named:.1f}%); {dict(self.counts)}"
        )


def _compare(full: Path, dwarf_only: Path) -> Comparison:
    symtab = Binary.open(str(full), limits=_LIMITS)
    dwarf = Binary.open(str(dwarf_only), limits=_LIMITS)
    try:
        assert symtab.build_id == dwarf.build_id
        assert symtab.sources[0] == Source.SYMTAB
        assert Source.SYMTAB not in dwarf.sources  # classified as a file without a symbol table
        dwarf.load_all()
        assert Source.DWARF in dwarf.sources, dwarf.load_errors
        aliases = _symtab_aliases(full)
        table = symtab.tables[0]
        rng = random.Random(12)
        result = Comparison()
        for i, start in enumerate(table.starts):
            end = table.ends[i]
            if end <= start:
                continue
            raw_names = aliases.get(start, set())
            cold = any(n.endswith(".cold") for n in raw_names)
            for address in {start, end - 1, *(rng.randrange(start, end) for _ in range(6))}:
                ours = symtab.lookup(address)
                theirs = dwarf.lookup(address)
                assert ours is not None
                result.cold_addresses += cold
                if theirs is None:
                    result.counts["unresolved"] += 1
                    result.unresolved.add(ours.symbol)
                    continue
                result.resolved.add(ours.symbol)
                if (theirs.symbol, theirs.symbol_offset) == (ours.symbol, ours.symbol_offset):
                    result.counts["same"] += 1
                elif theirs.start == ours.start and theirs.symbol in {demangle(n) for n in raw_names}:
                    result.counts["merged function, other alias"] += 1
                elif theirs.start == ours.start and any(
                    _CLONE.search(n) and demangle(_CLONE.sub("", n)) == theirs.symbol for n in raw_names
                ):
                    result.counts["lone GCC clone, named as its origin"] += 1
                else:
                    result.unexplained.append((hex(address), ours, theirs))
        return result
    finally:
        symtab.close()
        dwarf.close()


def test_cpp_o2_dwarf_only_copy_gives_the_symbol_tables_ids(variants: Programs) -> None:
    full, dwarf_only = variants.get("cpp_o2g"), variants.get("cpp_o2g_dwarfonly")
    result = _compare(full, dwarf_only)
    result.report("C++ -O2 -g: DWARF-only vs symbol table")
    assert result.unexplained == []
    assert result.cold_addresses >= 20  # the program has .cold parts, and they were all compared
    cold = {n for n in result.resolved if n.endswith(" (.cold)")}
    assert {
        "peer::run(int) (.cold)",
        "peer::checked_area(peer::Rect const&) (.cold)",
        "peer::Canvas::paint(int) (.cold)",
    } <= cold
    assert {"main", "main.cold"} <= result.resolved  # C++'s extern "C" main: DW_AT_name + DW_AT_external
    # a function with internal linkage has no symbol name in GCC's DWARF: left unresolved, not "scaled"
    assert "peer::(anonymous namespace)::scaled(int, int)" in result.unresolved
    assert "peer::(anonymous namespace)::scaled(int, int) (.cold)" in result.unresolved


def test_a_clone_beside_its_origin_stays_unresolved(variants: Programs) -> None:
    """``check`` and GCC's ``check.part.0`` point to one DWARF origin and carry no name of their own:
    both stay unresolved in the DWARF-only copy rather than share the name ``check``."""
    full, dwarf_only = variants.get("c_o2g"), variants.get("c_o2g_dwarfonly")
    names = {n for group in _symtab_aliases(full).values() for n in group}
    assert {"check", "check.part.0"} <= names, "gcc -O2 did not split check() (partial inlining)"
    result = _compare(full, dwarf_only)
    result.report("C -O2 -g with a .part clone: DWARF-only vs symbol table")
    assert result.unexplained == []
    assert {"check", "check.part.0"} <= result.unresolved
    assert not {"check", "check.part.0"} & result.resolved
    assert {"main", "report"} <= result.resolved


def test_rust_dwarf_only_copy_gives_the_symbol_tables_ids(variants: Programs) -> None:
    full, dwarf_only = variants.get("rs_v0_g"), variants.get("rs_v0_g_dwarfonly")
    result = _compare(full, dwarf_only)
    result.report("Rust -O -g (v0): DWARF-only vs symbol table")
    assert result.unexplained == []
    assert result.counts["lone GCC clone, named as its origin"] == 0
    own = {"<stella_rs::Widget>::area", "<stella_rs::Widget as stella_rs::Shape>::sides", "stella_rs::main"}
    assert own <= result.resolved
    assert not own & result.unresolved


def test_gcc_clones_in_a_dwarf_only_copy(tmp_path: Path) -> None:
    """The demangling corpus's g++ sample (-O2 -g): lambdas, std::function, templates and GCC's
    ``.isra``/``.constprop`` clones. A clone whose origin has no body of its own is named as its
    origin (the documented limit); everything else the DWARF-only copy names is identical."""
    full = build_cxx_sample(workdir=tmp_path, debug=True)
    dwarf_only = tmp_path / "sample_dwarfonly"
    dwarf_only_copy(full, dwarf_only)
    result = _compare(full, dwarf_only)
    result.report("C++ sample -O2 -g: DWARF-only vs symbol table")
    assert result.unexplained == []
    assert result.counts["lone GCC clone, named as its origin"] > 0
    assert "stella::run(int) (.cold)" in result.resolved
    # lambdas' bodies and std::function's handlers for them have internal linkage: no DWARF name
    assert any("_M_invoke" in n for n in result.unresolved)
    assert not any("_M_invoke" in n for n in result.resolved)


def test_cli_names_a_cold_part_alike_in_both_copies(variants: Programs) -> None:
    """``symbolize --file`` (the CLI, as a user runs it) on both copies, at a ``.cold`` part's bytes."""
    full, dwarf_only = variants.get("cpp_o2g"), variants.get("cpp_o2g_dwarfonly")
    cold = [a for a, names in _symtab_aliases(full).items() if "_ZN4peer3runEi.cold" in names]
    assert len(cold) == 1
    binary = Binary.open(str(full))
    try:
        file_offset = binary.layout.offset_of(cold[0])
    finally:
        binary.close()
    assert file_offset is not None
    offsets = [hex(file_offset), hex(file_offset + 5)]
    answers = []
    for path in (full, dwarf_only):
        proc = subprocess.run(
            [sys.executable, "-m", "stellaops_runtime.cli.main", "symbolize", "--file", str(path), *offsets],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        answers.append([json.loads(line) for line in proc.stdout.splitlines()])
    from_symtab, from_dwarf = answers
    assert [a["source"] for a in from_symtab] == ["symtab", "symtab"]
    assert [a["source"] for a in from_dwarf] == ["dwarf", "dwarf"]
    assert [a["function_id"] for a in from_dwarf] == [a["function_id"] for a in from_symtab]
    assert from_dwarf[0]["function_id"].endswith(":peer::run(int) (.cold)+0x0")
    assert from_dwarf[1]["function_id"].endswith(":peer::run(int) (.cold)+0x5")
