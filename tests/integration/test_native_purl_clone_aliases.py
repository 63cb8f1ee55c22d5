"""docs/native-probes.md: a function's clones are probed "at an offset no other probe of the function
has", and a numbered copy (``crc32.2``) is one of them.

An alias of the function (a second symbol at its own address, as ``.set`` or LTO makes) probed
again would count each call twice; a numbered local copy is a whole copy, entered once per call,
and must be probed or its calls run unseen. test_native_purl_clones.py builds what gcc -O2 makes
of real code and has neither: here both are written with assembler labels.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from stellaops_runtime.native.purl_targets import function_offsets

PROGRAM = r"""
int __attribute__((noinline, used)) crc32(int n) {
  int r = 0; for (int i = 0; i < n; i++) r = r * 31 + i; return r; }
/* an alias of crc32 (its own address): not probed again */
__asm__(".globl crc32.lto_priv.0\n.type crc32.lto_priv.0,@function\n.set crc32.lto_priv.0, crc32");
/* a numbered copy with its own body, and an alias of that copy */
int __attribute__((noinline, used)) crc32_copy(int n) __asm__("crc32.2");
int crc32_copy(int n) { int r = 7; for (int i = 0; i < n; i++) r = r * 33 + i; return r; }
__asm__(".globl crc32.isra.0\n.type crc32.isra.0,@function\n.set crc32.isra.0, crc32.2");
int main(int argc, char **argv) { (void)argv; return crc32(argc) + crc32_copy(argc); }
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_a_clone_is_probed_once_per_offset_and_a_numbered_copy_is_probed(tmp_path: Path) -> None:
    src = tmp_path / "a.c"
    src.write_text(PROGRAM)
    lib = tmp_path / "liba.so"
    subprocess.run(["gcc", "-O1", "-o", str(lib), str(src)], check=True, capture_output=True, timeout=60)
    fd = os.open(lib, os.O_RDONLY)
    try:
        out, clones = function_offsets(fd, ["crc32"])
    finally:
        os.close(fd)
    assert set(out) == {"crc32"}
    probed = clones["crc32"]
    # crc32.lto_priv.0 is crc32's own address: not probed again (each call would count twice)
    assert "crc32.lto_priv.0" not in probed
    # the numbered copy has its own body: probed; its alias crc32.isra.0 (same offset) is not
    assert set(probed) == {"crc32.2"}
    assert probed["crc32.2"] != out["crc32"]
