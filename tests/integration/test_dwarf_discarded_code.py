"""DWARF of code the linker threw away names no frame (s40 H1).

``-ffunction-sections -Wl,--gc-sections`` (the default of many release builds, Rust's and Go's
linkers do the same) drops the sections of functions nothing calls but keeps their DWARF: GNU ld
and gold resolve the dropped function's ``DW_AT_low_pc`` to 0 (lld to -1 or -2), so its DIE
claims ``[0, size)``, and so do the DIEs of what was inlined into it. In a position-independent
executable that range holds ``.init``, ``.plt`` and the start of ``.text``. Before the fix a PLT
stub resolved as the dropped function (``unused_big``) and every frame of ``main`` and ``used``
carried the dropped function's inlined helper (``vulnerable_parse``) as inlined on the stack:
``on_stack`` evidence for a function that is not in the binary at all. A DWARF range now counts
only where the file has code (an allocated, executable section).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from stellaops_runtime.canonical.binary import Binary
from stellaops_runtime.canonical.resolution import Source
from tests.native.build import dwarf_only_copy

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

_SOURCE = r"""
#include <stdio.h>
volatile int sink;
#define B sink += sink * 3 + 1;
#define B10 B B B B B B B B B B
#define B100 B10 B10 B10 B10 B10 B10 B10 B10 B10 B10
static inline __attribute__((always_inline)) void vulnerable_parse(void) { B100 B100 B100 B100 B100 B100 }
void unused_big(void) { vulnerable_parse(); }
__attribute__((noinline)) int used(int x) { return x * 2 + sink; }
int main(int argc, char **argv) { printf("%d\n", used(argc)); return 0; }
"""


def _symbols(path: Path) -> dict[str, int]:
    out = subprocess.run(["nm", "--defined-only", str(path)], capture_output=True, text=True, check=True)
    return {
        p[2]: int(p[0], 16) for p in (line.split(" ", 2) for line in out.stdout.splitlines()) if len(p) == 3
    }


def _section(path: Path, name: str) -> int:
    out = subprocess.run(["readelf", "-SW", str(path)], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        fields = line.replace("[ ", "[").split()
        if len(fields) > 3 and fields[1] == name:
            return int(fields[3], 16)
    raise AssertionError(f"no {name} in {path}")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gc-sections")
    (out / "gc.c").write_text(_SOURCE)
    exe = out / "gc"
    subprocess.run(
        ["gcc", "-O1", "-g", "-fPIE", "-pie", "-ffunction-sections", "-Wl,--gc-sections", "gc.c", "-o", "gc"],
        cwd=out,
        check=True,
    )
    return exe


def test_dropped_functions_dwarf_names_no_frame(built: Path, tmp_path: Path) -> None:
    syms = _symbols(built)
    assert "unused_big" not in syms  # the linker dropped it; its DWARF says [0, size)
    plt = _section(built, ".plt")
    dwarf_only = tmp_path / "gc.dwarf-only"
    dwarf_only_copy(built, dwarf_only)
    for path in (built, dwarf_only):
        b = Binary.open(str(path))
        try:
            b.load_all()
            assert Source.DWARF in b.sources, b.load_errors
            for address in (plt, plt + 0x10, syms["_start"] + 0x10, syms["main"] + 4, syms["used"]):
                hit = b.lookup(address)
                assert hit is None or hit.symbol not in {"unused_big", "vulnerable_parse"}, (
                    path,
                    hex(address),
                    hit,
                )
                assert "vulnerable_parse" not in b.inlined_at(address), (path, hex(address))
            main = b.lookup(syms["main"] + 4)
            assert main is not None and main.symbol == "main"  # the real functions keep their DWARF
        finally:
            b.close()


_OTHER_UNIT = r"""
#include <stdio.h>
extern volatile int sink;
static inline __attribute__((always_inline)) int helper(int x) { sink += x; return sink * 7 + x; }
int main(int argc, char **argv) { printf("%d\n", helper(argc)); return 0; }
"""


@pytest.mark.skipif(shutil.which("clang") is None, reason="needs clang")
def test_a_dropped_units_tombstone_range_does_not_take_another_units_addresses(tmp_path: Path) -> None:
    """clang writes no ``.debug_aranges``, so a unit is found by its top DIE's range; the unit
    whose code was all dropped claims ``[0, size)`` over ``main`` of the next unit. Unfiltered,
    ``main``'s inlined ``helper`` was lost and file:line named the dropped unit's ``a.c`` (review
    RH1: this guard of 0c34cbb's unit-range filter was seen failing with the filter removed)."""
    first = _SOURCE.replace("#include <stdio.h>", "").split("__attribute__((noinline)) int used")[0]
    (tmp_path / "a.c").write_text(first)
    (tmp_path / "b.c").write_text(_OTHER_UNIT.lstrip())
    exe = tmp_path / "ab"
    subprocess.run(
        [
            "clang",
            "-O1",
            "-g",
            "-fPIE",
            "-pie",
            "-ffunction-sections",
            "-Wl,--gc-sections",
            "a.c",
            "b.c",
            "-o",
            "ab",
        ],
        cwd=tmp_path,
        check=True,
    )
    syms = _symbols(exe)
    assert "unused_big" not in syms
    address = syms["main"] + 8  # past the push: inside helper's inlined code
    b = Binary.open(str(exe))
    try:
        b.load_all()
        assert b.inlined_at(address) == ("helper",)
        assert b.file_line(address).endswith("b.c:3"), b.file_line(address)
    finally:
        b.close()
