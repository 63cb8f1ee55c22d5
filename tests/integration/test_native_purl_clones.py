"""A function named by PURL whose compiled body runs as its GCC clones is probed at those clones.

gcc -O2 compiles a static ``crc32`` taking a struct by value into ``crc32.isra.0`` only (IPA-SRA),
and a static ``inflate_fast`` called with constant arguments into ``inflate_fast.constprop.0``
only: the file defines no symbol of the function's name, so the probes by PURL found nothing
("not_in_package") and the function's calls ran unseen while the image was watched. Such a clone
is a whole copy entered once per call, so it is probed, under its own name (which every answer
counts as the function's, store/name_spellings.py ``clone_of``). A partial-inlining tail
(``adler32.part.0``) is not: ``adler32`` itself jumps to it, so probing both would count a call
twice. The root is a directory read as ``/proc/<pid>/root`` (``proc_root``): no process is needed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from stellaops_runtime.native import purl_targets as pt
from stellaops_runtime.native.purl_wiring import PurlWiring
from stellaops_runtime.store.name_spellings import entry_clone_of

PURL = "pkg:deb/debian/zlib1g@1.2.13"
PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
struct big { int a, b, c, d[40]; };
static int __attribute__((noinline)) crc32(struct big s, int n) {
  if (__builtin_expect(n < 0, 0)) { fprintf(stderr, "neg %d\n", n); abort(); }
  int r = 0; for (int i = 0; i < n; i++) r = r * 31 + s.a + i; return r; }
struct ctx { unsigned tab[256]; };
static unsigned __attribute__((noinline)) inflate_fast(const struct ctx *c, unsigned crc,
    const unsigned char *buf, unsigned len, int flag) { if (!buf) return 0; crc = ~crc;
  for (unsigned i = 0; i < len; i++) crc = c->tab[(crc ^ buf[i]) & 0xff] ^ (crc >> 8);
  if (flag) crc ^= 1; return ~crc; }
unsigned adler32(unsigned crc, const char *p) { if (!p) return crc;
  for (size_t i = 0; i < strlen(p); ++i) { crc = crc * 31 + p[i];
    if (crc > 100000) { fprintf(stderr, "big %u\n", crc); crc = 0; } }
  printf("%u\n", crc); return crc; }
int main(int argc, char **argv) {
  struct big b = {argc}; static struct ctx c;
  return crc32(b, argc) + crc32(b, argc + 1) + (int)inflate_fast(&c, 0, (void *)argv[0], 3, 0)
    + (int)inflate_fast(&c, 7, (void *)argv[0], 2, 0) + (int)adler32(1, argv[0])
    + (int)adler32(2, argc > 5 ? argv[1] : 0);
}
"""


def _root(tmp_path: Path) -> tuple[str, dict[str, int]]:
    """A proc root whose pid 1 root holds zlib1g's library built from PROGRAM; its function symbols."""
    root = tmp_path / "proc/1/root"
    lib = root / "usr/lib/x86_64-linux-gnu/libz.so.1"
    lib.parent.mkdir(parents=True)
    src = tmp_path / "z.c"
    src.write_text(PROGRAM)
    subprocess.run(["gcc", "-O2", "-o", str(lib), str(src)], check=True, capture_output=True, timeout=60)
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(
        "Package: zlib1g\nStatus: install ok installed\nVersion: 1.2.13\nArchitecture: amd64\n"
    )
    (root / "var/lib/dpkg/info/zlib1g:amd64.list").write_text("/.\n/usr/lib/x86_64-linux-gnu/libz.so.1\n")
    with lib.open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        funcs = {s.name: s["st_value"] for s in symtab.iter_symbols() if s["st_info"]["type"] == "STT_FUNC"}
    return str(tmp_path / "proc"), funcs


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_a_function_compiled_into_whole_clones_only_is_probed_at_them(tmp_path: Path) -> None:
    """Seen failing before the fix: crc32 and inflate_fast "not_in_package", nothing probed."""
    proc, funcs = _root(tmp_path)
    # what gcc 12 -O2 made of them (the premise of the test)
    assert {"crc32.isra.0", "inflate_fast.constprop.0", "adler32", "adler32.part.0"} <= set(funcs), funcs
    assert not {"crc32", "inflate_fast"} & set(funcs)
    plan = pt.PurlProbePlan(proc_root=proc)
    try:
        reports = {r.symbol: r for r in plan.add("c1", 1, PURL, ["crc32", "inflate_fast", "adler32"])}
        assert {s: r.status for s, r in reports.items()} == dict.fromkeys(reports, pt.RESOLVED), reports
        probed = sorted((t.module, t.symbol) for t in plan.targets())
        lib = "/usr/lib/x86_64-linux-gnu/libz.so.1"
        assert probed == [
            (lib, "adler32"),  # not adler32.part.0: adler32 jumps to it, a call would count twice
            (lib, "crc32.isra.0"),
            (lib, "inflate_fast.constprop.0"),
        ]
        assert [f.symbol for f in reports["crc32"].files] == ["crc32.isra.0"]
        assert reports["crc32"].to_dict()["files"] == [
            {"path": lib, "offset": reports["crc32"].files[0].offset, "symbol": "crc32.isra.0"}
        ]
        # the pod selection keeps a probe's events by (file, symbol) of the policies owning it: the
        # clone's events name the clone
        wiring = PurlWiring.__new__(PurlWiring)
        wiring._reports = {("p", PURL, s): [r] for s, r in reports.items()}
        assert sorted(wiring.owners()) == probed
        # each target's label is the loader's: the report is marked attached by it
        plan.mark([f"uprobe {t.label()}" for t in plan.targets()], [])
        assert {r.status for r in plan.reports} == {pt.ATTACHED}
    finally:
        plan.close()


def test_which_clones_are_entered_once_per_call() -> None:
    for stored in ("crc32.isra.0", "crc32.constprop.0", "crc32.lto_priv.0", "crc32.constprop.0.isra.0"):
        assert entry_clone_of(stored, "crc32"), stored
    assert entry_clone_of("f(int) (.isra.0)", "f(int)")
    for stored in (
        "crc32.part.0",
        "crc32.cold",
        "crc32.isra.0.cold",
        "crc32.constprop.0.part.0",
        "crc32x.isra.0",
    ):
        assert not entry_clone_of(stored, "crc32"), stored
    assert not entry_clone_of("f(int) (.cold)", "f(int)")
