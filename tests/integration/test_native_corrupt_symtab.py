"""A target whose ELF symbol table is damaged must be a ``failed`` probe, never a dead agent.

libbcc divides a symbol table's size by its entry size: a ``.symtab`` or
``.dynsym`` with ``sh_entsize`` 0 killed the whole process with SIGFPE (``probes
run`` exited 136; an agent would crash at each start, the node unobserved) at
the load, or when such a file was renamed over a probed path, as a container
can do with its own binary. Now native/symaddr.py finds the address (its
reader checks the entry size) and BCC is given it, never reading a symbol
table: the file is listed in ``failed`` with the reason; the other probes keep
counting (a rewrite racing the lookup: tests/integration/test_native_symaddr.py).
``probes run`` as a user runs it; real BCC (skips elsewhere, or without gcc).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from elftools.elf.elffile import ELFFile

from stellaops_runtime.canonical.elflayout import ElfError
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.detect import detect
from stellaops_runtime.native.symaddr import find_address

pytestmark = pytest.mark.bpf
CACHE = str(Path(".cache/native").resolve())
PROGRAM = r"""
__attribute__((noinline)) int h5_fn(int x) { return x + 1; }
int main(void) { long s = 0; for (int i = 0; i < 3; i++) s += h5_fn(i); return s == -1; }
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("symtab")
    (d / "p.c").write_text(PROGRAM)
    subprocess.run(["gcc", "-O1", "-o", str(d / "p"), str(d / "p.c")], check=True)
    return d / "p"


def damaged(src: Path, out: Path, section: str, entsize: int = 0) -> Path:
    """A copy of ``src`` whose ``section``'s header says its entries are ``entsize`` bytes."""
    shutil.copy2(src, out)
    with open(src, "rb") as f:
        elf = ELFFile(f)
        index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == section)
        at = elf["e_shoff"] + index * elf["e_shentsize"] + 56  # Elf64_Shdr.sh_entsize
    with open(out, "r+b") as f:
        f.seek(at)
        f.write(struct.pack("<Q", entsize))
    return out


def test_the_lookup_names_a_damaged_table(program: Path, tmp_path: Path) -> None:
    assert find_address(str(program), "h5_fn")
    with pytest.raises(ElfError, match=r"^\.symtab: symbol entry size 0, expected 24$"):
        find_address(str(damaged(program, tmp_path / "a", ".symtab")), "h5_fn")
    with pytest.raises(ElfError, match=r"^\.dynsym: symbol entry size 7, expected 24$"):
        find_address(str(damaged(program, tmp_path / "b", ".dynsym", 7)), "h5_fn")
    (tmp_path / "short").write_bytes(program.read_bytes()[:40])
    (tmp_path / "headers-cut").write_bytes(program.read_bytes()[: os.path.getsize(program) - 100])
    for name in ("short", "headers-cut"):
        with pytest.raises(ElfError, match=r"past the end of the file|cut short"):
            find_address(str(tmp_path / name), "h5_fn")


def probes_run(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "stellaops_runtime.cli.main", "probes", "run", "--json", "--no-exec", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, STELLA_CACHE_DIR=CACHE),
    )  # fmt: skip


def summary(proc: subprocess.Popen[str]) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (proc.returncode, err[-2000:])
    return orjson.loads(out.strip().splitlines()[-1])["summary"]


@pytest.mark.parametrize("when", ["at the load", "renamed over it while running"])
def test_a_damaged_symbol_table_is_a_failed_probe_and_the_others_count(
    program: Path, tmp_path: Path, when: str
) -> None:
    rep = detect(mount_tracefs=True, compile_test=True, cache_dir=CACHE)
    if rep.posture < Posture.EBPF_DEEP:
        pytest.skip(f"native uprobes cannot run here: {rep.missing}")
    bad = tmp_path / "app"
    good = tmp_path / "good"
    shutil.copy2(program, good)
    if when == "at the load":
        damaged(program, bad, ".symtab")
        proc = probes_run("--seconds", "1", "--uprobe", f"{bad}:h5_fn", "--uprobe", f"{good}:h5_fn")
    else:
        shutil.copy2(program, bad)
        # --seconds counts from the attach; the probes look at their targets' files once a second
        # (native/source.py): a rename 1 s after the start meets the load or two looks at least
        proc = probes_run("--seconds", "3", "--uprobe", f"{bad}:h5_fn", "--uprobe", f"{good}:h5_fn")
        time.sleep(1)  # not a condition: the file is refused whether the load or a look meets it
        damaged(program, tmp_path / "app.new", ".symtab")
        os.rename(tmp_path / "app.new", bad)
    s = summary(proc)
    assert f"uprobe {good}:h5_fn" in s["attached"], s
    reasons = [f["reason"] for f in s["failed"] if f["probe"] == f"{bad}:h5_fn"]
    assert reasons and ".symtab: symbol entry size 0, expected 24" in reasons[0], s["failed"]
