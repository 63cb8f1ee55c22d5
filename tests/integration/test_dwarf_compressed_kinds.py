"""DWARF compressed the old GNU way (``.zdebug_*``) or with zstd (s40 H1).

``-gz=zlib-gnu`` (GCC, binutils' ``--compress-debug-sections=zlib-gnu``; older toolchains' default
where compression was on) names the sections ``.zdebug_info``, ``.zdebug_line``, ... Functions and
inlined functions were read from them, but ``Binary.file_line`` looked for ``.debug_line`` only,
so ``stella-runtime symbolize`` printed no file:line for such a build. A section compressed with
zstd (``ELFCOMPRESS_ZSTD``, binutils 2.40's ``--compress-debug-sections=zstd``) is not read (no
zstd decoder is pinned): the DWARF source is ``malformed`` and the symbol tables still name every
frame (docs/symbolization.md, Limits).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from stellaops_runtime.canonical.binary import Binary
from stellaops_runtime.canonical.symbolizer import Symbolizer

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

_SOURCE = """
volatile int sink;
__attribute__((noinline)) int work(int x) { return x * 3 + sink; }
int main(int argc, char **argv) { return work(argc); }
"""


def _build(out: Path, name: str, *flags: str) -> Path:
    (out / "p.c").write_text(_SOURCE)
    subprocess.run(["gcc", "-O1", "-g", *flags, "p.c", "-o", name], cwd=out, check=True)
    return out / name


def _address(path: Path, symbol: str) -> int:
    out = subprocess.run(["nm", str(path)], capture_output=True, text=True, check=True).stdout
    return next(int(p[0], 16) for p in (line.split() for line in out.splitlines()) if p[-1] == symbol)


def test_zdebug_sections_give_file_lines(tmp_path: Path) -> None:
    plain = _build(tmp_path, "plain")
    zgnu = _build(tmp_path, "zgnu", "-gz=zlib-gnu")
    with open(zgnu, "rb") as f:
        assert ELFFile(f).get_section_by_name(".zdebug_line") is not None
    address = _address(zgnu, "work") + 1
    lines = []
    for path in (plain, zgnu):
        b = Binary.open(str(path))
        try:
            lines.append(b.file_line(address))
        finally:
            b.close()
    assert lines[0].endswith("p.c:3"), lines
    assert lines[1] == lines[0]
    # a copy with no symbol table names the function from that DWARF (its names are in .debug_str)
    dwarf_only = tmp_path / "zgnu.dwarf-only"
    keep = ["--keep-section=.debug_*", "--keep-section=.zdebug_*"]
    subprocess.run(["strip", "--strip-all", *keep, "-o", str(dwarf_only), str(zgnu)], check=True)
    r = Symbolizer().resolve_file(str(dwarf_only), address)  # a PIE's text: file offset == address
    assert (r.symbol, r.source) == ("work", "dwarf"), r


def test_zstd_dwarf_is_malformed_and_the_symbol_table_still_names(tmp_path: Path) -> None:
    built = _build(tmp_path, "gz", "-gz=zlib")
    data = bytearray(built.read_bytes())
    with open(built, "rb") as f:
        compressed = [s["sh_offset"] for s in ELFFile(f).iter_sections() if s["sh_flags"] & 0x800]
    assert compressed
    for at in compressed:
        struct.pack_into("<I", data, at, 2)  # ch_type ELFCOMPRESS_ZSTD
    zstd = tmp_path / "zstd"
    zstd.write_bytes(bytes(data))
    dwarf_only = tmp_path / "zstd.dwarf-only"
    subprocess.run(
        ["strip", "--strip-all", "--keep-section=.debug_*", "-o", str(dwarf_only), str(zstd)], check=True
    )
    offset = _address(built, "work") + 1  # a PIE's text: file offset == address
    sym = Symbolizer(file_lines=True)
    named = sym.resolve_file(str(zstd), offset)
    assert (named.symbol, named.source, named.file_line, named.inlined) == ("work", "symtab", "", ())
    unnamed = sym.resolve_file(str(dwarf_only), offset)
    assert (unnamed.symbol, unnamed.error) == ("", "malformed"), unnamed
