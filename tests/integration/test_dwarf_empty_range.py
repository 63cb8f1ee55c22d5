"""An empty entry in a function's DWARF range list is no code the linker dropped (review RH1).

s40 H1 left out a DWARF function with any range outside an executable section (code
``--gc-sections`` dropped keeps its DWARF at a tombstone address). An empty range (start ==
end), which GCC writes in range lists (``readelf -wR`` shows "(start == end)" in the lists of
this very build) and which ``code_parts`` has always skipped, counted as "outside": the whole
function lost its DWARF name. Here the ``.cold`` entry of ``hot``'s list is made empty in the
built file; ``hot`` keeps its name, in the binary and in its separate debug file
(``objcopy --only-keep-debug``: ``.text`` is ``SHT_NOBITS`` there, its address and flags kept),
while the dropped ``unused_big`` is still left out.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from stellaops_runtime.canonical.dwarfinfo import DwarfIndex
from tests.integration.test_dwarf_discarded_code import _symbols

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
volatile int sink;
__attribute__((cold, noreturn, noinline)) void die(int x) { printf("rare %d\n", x); exit(2); }
__attribute__((noinline)) int hot(int x) {
  if (__builtin_expect(x > 100, 0)) { for (int i = 0; i < x; i++) sink += i * 3; die(x); }
  return x * 2 + sink;
}
void unused_big(void) { sink += 3; }
int main(int argc, char **argv) { printf("%d\n", hot(argc)); return 0; }
"""


def _functions(path: Path) -> tuple[dict[str, int], int]:
    with path.open("rb") as f:
        index = DwarfIndex(ELFFile(f), None)
        return {name: low for low, _size, name, *_ in index.functions()}, index.outside_code


def test_an_empty_range_entry_keeps_the_functions_dwarf_name(tmp_path: Path) -> None:
    (tmp_path / "e.c").write_text(_SOURCE)
    exe = tmp_path / "e"
    subprocess.run(
        [
            "gcc",
            "-O2",
            "-g",
            "-gdwarf-4",
            "-fPIE",
            "-pie",
            "-ffunction-sections",
            "-Wl,--gc-sections",
            "e.c",
            "-o",
            "e",
        ],
        cwd=tmp_path,
        check=True,
    )
    syms = _symbols(exe)
    if "hot.cold" not in syms:
        pytest.skip("this gcc did not split hot into a .cold part")
    assert "unused_big" not in syms
    hot, cold = syms["hot"], syms["hot.cold"]
    data = bytearray(exe.read_bytes())
    with exe.open("rb") as f:
        ranges = ELFFile(f).get_section_by_name(".debug_ranges")
        start, size = int(ranges["sh_offset"]), int(ranges["sh_size"])
    # hot's list: (hot, hot_end), (cold, cold_end); cold_end becomes cold: an empty entry
    at = data.find(struct.pack("<Q", hot), start, start + size)
    assert at >= 0 and data[at + 16 : at + 24] == struct.pack("<Q", cold), "hot's range list not found"
    data[at + 24 : at + 32] = struct.pack("<Q", cold)
    exe.write_bytes(bytes(data))
    debug = tmp_path / "e.debug"
    subprocess.run(["objcopy", "--only-keep-debug", str(exe), str(debug)], check=True)
    for path in (exe, debug):
        names, outside = _functions(path)
        assert names.get("hot") == hot, (path.name, names)
        assert "hot.cold" not in names  # its only other range is empty: no .cold part
        assert names.get("main") == syms["main"], (path.name, names)
        assert "unused_big" not in names and outside == 1, (path.name, names, outside)
