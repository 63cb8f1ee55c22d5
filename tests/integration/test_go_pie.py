"""Go binaries as distributions ship them: position-independent, internally and externally linked, stripped.

Issue 12, defects 1 and 2. The Go test program (tests/native/stella_go.go) is built
with ``-buildmode=pie`` (``-linkmode=internal``: the table in ``.data.rel.ro.gopclntab``;
``-linkmode=external``: inside ``.data.rel.ro``, no section of its own), as an ordinary
executable for comparison, then ``strip``-ped, and once more with no section headers.

References that share nothing with the canonicalizer's own search for the table:

- tests/native/gosym_ref.go: Go's ``debug/gosym`` over the UNSTRIPPED copy's table,
  located through its symbol table (``runtime.pclntab``..``runtime.epclntab``, based at
  ``runtime.text``);
- ``go tool addr2line`` where this toolchain's can read the table: Go 1.19's only looks for
  a section named ``.gopclntab`` and bases it at ``.text``, so it reads the ordinary
  executable, and the internally linked PIE once ``objcopy`` renames the section (there
  ``.text`` starts at ``runtime.text``); an externally linked build puts C start-up code
  before ``runtime.text``, so ``debug/gosym`` with the right base is the reference there.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from stellaops_runtime.canonical.demangle import demangle
from stellaops_runtime.canonical.limits import Limits
from stellaops_runtime.canonical.symbolizer import Symbolizer
from tests.elf_files import patched
from tests.native.build import Programs, build_go_variants, find_go

VARIANTS = ("go_exe", "go_pie_int", "go_pie_ext")
SAMPLE = 300
GO12_MAGIC = 0xFFFFFFFB


@pytest.fixture(scope="session")
def go_progs(tmp_path_factory: pytest.TempPathFactory) -> Programs:
    return build_go_variants(tmp_path_factory.mktemp("gopie"))


# -- independent readers ---------------------------------------------------------------------


def segments(path: Path) -> list[tuple[int, int, int]]:
    """(vaddr, file offset, file size) of each PT_LOAD, read with pyelftools."""
    with path.open("rb") as f:
        return [
            (s.header.p_vaddr, s.header.p_offset, s.header.p_filesz)
            for s in ELFFile(f).iter_segments()
            if s.header.p_type == "PT_LOAD"
        ]


def file_offset(segs: list[tuple[int, int, int]], vaddr: int) -> int:
    for va, off, size in segs:
        if va <= vaddr < va + size:
            return vaddr - va + off
    raise AssertionError(f"{vaddr:#x} is in no loadable segment")


def gosym_list(ref: Path, binary: Path) -> list[tuple[int, int, str]]:
    out = subprocess.run([str(ref), "-list", str(binary)], capture_output=True, text=True, check=True).stdout
    rows = [line.split(" ", 2) for line in out.splitlines()]
    return [(int(a, 16), int(b, 16), name) for a, b, name in rows]


def gosym_lookup(ref: Path, binary: Path, addrs: list[int]) -> list[tuple[int, str] | None]:
    text = "".join(f"{a:#x}\n" for a in addrs)
    out = subprocess.run(
        [str(ref), str(binary)], input=text, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(out) == len(addrs)
    return [
        None if line == "? ?" else (int(line.split(" ", 1)[0], 16), line.split(" ", 1)[1]) for line in out
    ]


def addr2line(binary: Path, addrs: list[int]) -> list[str]:
    """Function names from ``go tool addr2line`` (it prints name, then file:line)."""
    out = subprocess.run(
        ["go", "tool", "addr2line", str(binary)],
        input="".join(f"{a:#x}\n" for a in addrs),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(out) == 2 * len(addrs)
    return out[0::2]


def nm_symbol(path: Path, name: str) -> int:
    for line in subprocess.run(
        ["nm", str(path)], capture_output=True, text=True, check=True
    ).stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise AssertionError(f"{name} not in {path}'s symbol table")


def symbolize_cli(path: Path, offsets: list[int]) -> tuple[int, list[dict[str, object]], str]:
    p = subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", "symbolize", "--no-lines", "--file", str(path)]
        + [hex(o) for o in offsets],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return p.returncode, [json.loads(line) for line in p.stdout.splitlines()], p.stderr


def sample_addresses(funcs: list[tuple[int, int, str]], n: int, seed: str) -> list[int]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        entry, end, _name = rng.choice(funcs)
        out.append(rng.randrange(entry, end))
    return out


def require_go(go_progs: Programs, variant: str) -> tuple[Path, Path]:
    if find_go() is None:
        pytest.skip("no go toolchain")
    return go_progs.get(variant), go_progs.get("gosym_ref")


# -- defect 1: stripped PIE binaries resolve, and agree with Go's own readers -------------------


@pytest.mark.parametrize("copy", ["stripped", "noshdr"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_stripped_go_agrees_with_debug_gosym(go_progs: Programs, variant: str, copy: str) -> None:
    full, ref = require_go(go_progs, variant)
    stripped = go_progs.get(f"{variant}_{copy}")
    funcs = gosym_list(ref, full)
    assert len(funcs) > 1000
    addrs = sample_addresses(funcs, SAMPLE, f"{variant}-{copy}")
    segs = segments(stripped)
    expected = gosym_lookup(ref, full, addrs)
    code, rows, stderr = symbolize_cli(stripped, [file_offset(segs, a) for a in addrs])
    assert code == 0, stderr
    assert len(rows) == SAMPLE
    bad = []
    for addr, want, row in zip(addrs, expected, rows, strict=True):
        assert want is not None, hex(addr)
        entry, name = want
        got = (row["symbol"], row["offset"])
        if got != (demangle(name), addr - entry):
            bad.append(f"{addr:#x}: debug/gosym {name}+{addr - entry:#x}, we {got} from {row['source']}")
    assert not bad, f"{len(bad)} of {SAMPLE} disagree:\n" + "\n".join(bad[:30])
    sources = {r["source"] for r in rows}
    assert "gopclntab" in sources and sources <= {"gopclntab", "dynsym"}, sources


@pytest.mark.parametrize("variant", ["go_exe", "go_pie_int"])
def test_stripped_go_agrees_with_go_tool_addr2line(go_progs: Programs, variant: str, tmp_path: Path) -> None:
    full, ref = require_go(go_progs, variant)
    stripped = go_progs.get(f"{variant}_stripped")
    target = stripped
    if variant == "go_pie_int":  # Go 1.19's addr2line reads only a section named .gopclntab
        if not shutil.which("objcopy"):
            pytest.skip("no objcopy")
        target = tmp_path / "renamed"
        subprocess.run(
            ["objcopy", "--rename-section", ".data.rel.ro.gopclntab=.gopclntab", str(stripped), str(target)],
            check=True,
        )
    addrs = sample_addresses(gosym_list(ref, full), SAMPLE, f"addr2line-{variant}")
    names = addr2line(target, addrs)
    assert "?" not in names  # the reference read every address
    segs = segments(stripped)
    code, rows, stderr = symbolize_cli(stripped, [file_offset(segs, a) for a in addrs])
    assert code == 0, stderr
    bad = [
        f"{a:#x}: addr2line {want}, we {row['symbol']}"
        for a, want, row in zip(addrs, names, rows, strict=True)
        if row["symbol"] != demangle(want)
    ]
    assert not bad, f"{len(bad)} of {SAMPLE} disagree:\n" + "\n".join(bad[:30])


# -- defect 2: one ID per function whatever copy (and table) is read -----------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_stripped_and_unstripped_copies_give_identical_ids(go_progs: Programs, variant: str) -> None:
    full, ref = require_go(go_progs, variant)
    copies = {c: go_progs.get(f"{variant}_{c}") for c in ("stripped", "noshdr")}
    funcs = gosym_list(ref, full)
    addrs = sorted({a for entry, end, _ in funcs for a in (entry, (entry + end) // 2)})
    segs = segments(full)
    offsets = [file_offset(segs, a) for a in addrs]
    sym = Symbolizer(limits=Limits(parse_seconds=120))  # the clock budget is not under test here
    try:
        ids = {"full": [sym.resolve_file(str(full), o) for o in offsets]}
        for c, path in copies.items():
            ids[c] = [sym.resolve_file(str(path), o) for o in offsets]
        stats = sym.stats()
    finally:
        sym.close()
    # Entries come from the unstripped symbol table; a midpoint may fall in the padding after a
    # function, which .symtab sizes leave out and the Go table covers: the same name either way.
    entries = {entry for entry, _end, _name in funcs}
    assert {r.source for a, r in zip(addrs, ids["full"], strict=True) if a in entries} == {"symtab"}
    for c in copies:
        assert {r.source for r in ids[c]} <= {"gopclntab", "dynsym"}
        bad = [
            f"{a:#x}: unstripped {r0.function_id}, {c} {r1.function_id}"
            for a, r0, r1 in zip(addrs, ids["full"], ids[c], strict=True)
            if r0.function_id != r1.function_id or not r1.symbol
        ]
        assert not bad, f"{len(bad)} of {len(addrs)} IDs differ:\n" + "\n".join(bad[:30])
    assert stats.get("resolved_gopclntab", 0) >= len(addrs)
    # The unstripped symbol table really spells assembly bodies with ".abi0" (what made IDs differ).
    nm = subprocess.run(["nm", str(full)], capture_output=True, text=True, check=True).stdout
    abi0 = [line.split()[2] for line in nm.splitlines() if line.endswith(".abi0")]
    assert len(abi0) > 50
    by_symbol = {r.symbol for r in ids["full"]}
    assert "runtime.rt0_go" in by_symbol and not any(s.endswith(".abi0") for s in by_symbol)
    # An assembly body and its ABIInternal wrapper: two entries, one name, in every copy.
    text = {
        p[2]: int(p[0], 16)
        for p in (line.split() for line in nm.splitlines())
        if len(p) == 3 and p[1] in "tT"
    }
    at = {a: i for i, a in enumerate(addrs)}
    pairs = [n[: -len(".abi0")] for n in abi0 if n[: -len(".abi0")] in text]
    assert len(pairs) > 5
    for name in pairs:
        body, wrapper = text[name + ".abi0"], text[name]
        assert body != wrapper
        for copy in ids.values():
            assert (copy[at[body]].symbol, copy[at[body]].offset) == (name, 0)
            assert (copy[at[wrapper]].symbol, copy[at[wrapper]].offset) == (name, 0)


def test_dwarf_only_copy_gives_the_same_ids(go_progs: Programs) -> None:
    """The third table: DWARF names (no ABI suffix either) give the symbol table's IDs."""
    full, ref = require_go(go_progs, "go_exe")
    dwarf = go_progs.get("go_exe_dwarfonly")
    funcs = gosym_list(ref, full)
    addrs = [a for entry, end, _ in funcs for a in (entry, (entry + end) // 2)]
    segs = segments(full)
    sym = Symbolizer(limits=Limits(parse_seconds=120))  # pyelftools on a loaded CI machine
    try:
        pairs = [
            (
                sym.resolve_file(str(full), file_offset(segs, a)),
                sym.resolve_file(str(dwarf), file_offset(segs, a)),
            )
            for a in addrs
        ]
    finally:
        sym.close()
    bad = [
        f"{r0.function_id} vs {r1.function_id} ({r1.source})"
        for r0, r1 in pairs
        if r0.function_id != r1.function_id
    ]
    assert not bad, f"{len(bad)} of {len(addrs)} IDs differ:\n" + "\n".join(bad[:30])
    sources = [r1.source for _, r1 in pairs]
    assert sources.count("dwarf") > 0.9 * len(addrs)


# -- textStart carried only by a relocation (what lld and arm64 GNU ld leave in the file) --------


def _text_start_field(full: Path, stripped: Path) -> tuple[int, int]:
    """(vaddr, file offset in ``stripped``) of the pclntab header's textStart word."""
    table = nm_symbol(full, "runtime.pclntab")
    field = table + 8 + 2 * 8
    off = file_offset(segments(stripped), field)
    data = stripped.read_bytes()
    magic, pads, min_lc, ptr_size = struct.unpack_from("<IHBB", data, off - 24)
    assert (magic, pads, min_lc, ptr_size) in ((0xFFFFFFF0, 0, 1, 8), (0xFFFFFFF1, 0, 1, 8))
    assert struct.unpack_from("<Q", data, off)[0] == nm_symbol(full, "runtime.text")
    return field, off


def _rela_entry(path: Path, vaddr: int) -> int:
    """File offset of the .rela.dyn entry whose r_offset is ``vaddr`` (pyelftools)."""
    with path.open("rb") as f:
        sec = ELFFile(f).get_section_by_name(".rela.dyn")
        assert sec is not None
        for i, rel in enumerate(sec.iter_relocations()):
            if rel["r_offset"] == vaddr:
                return sec["sh_offset"] + i * sec["sh_entsize"]
    raise AssertionError(f"no relocation at {vaddr:#x}")


def test_text_start_from_the_relocation(go_progs: Programs, tmp_path: Path) -> None:
    full, ref = require_go(go_progs, "go_pie_ext")
    stripped = go_progs.get("go_pie_ext_stripped")
    field, off = _text_start_field(full, stripped)
    zeroed = patched(stripped, tmp_path / "zeroed", [(off, b"\0" * 8)])
    addrs = sample_addresses(gosym_list(ref, full), SAMPLE, "zeroed")
    offsets = [file_offset(segments(stripped), a) for a in addrs]
    sym = Symbolizer(limits=Limits(parse_seconds=120))  # the clock budget is not under test here
    try:
        want = [sym.resolve_file(str(stripped), o).function_id for o in offsets]
        got = [sym.resolve_file(str(zeroed), o) for o in offsets]
        assert [r.function_id for r in got] == want
        assert all(r.symbol for r in got)
        # Neither the word nor a relocation: refused and counted, never guessed from .text.
        rel = _rela_entry(stripped, field)
        norel = patched(zeroed, tmp_path / "norel", [(rel, struct.pack("<Q", 0))])
        noshdr = tmp_path / "zeroed_noshdr"
        patched(go_progs.get("go_pie_ext_noshdr"), noshdr, [(off, b"\0" * 8)])
        for path in (norel, noshdr):
            r = sym.resolve_file(str(path), offsets[0])
            assert r.error == "malformed" and not r.symbol, r
            assert "textStart" in r.detail, r.detail
        assert sym.stats()["malformed"] == 2
    finally:
        sym.close()


# -- hostile tables: counted failures, no crash, no hang ------------------------------------------


def _hostile_copies(full: Path, stripped: Path, tmp_path: Path) -> dict[str, Path]:
    table = nm_symbol(full, "runtime.pclntab")
    base = file_offset(segments(stripped), table)
    data = stripped.read_bytes()
    nfunc, _nfiles, _text, fn_off, _cu, _ft, _pc, pcln = struct.unpack_from("<8Q", data, base + 8)
    functab = base + pcln
    e10, f10 = struct.unpack_from("<II", data, functab + 10 * 8)
    e11, f11 = struct.unpack_from("<II", data, functab + 11 * 8)
    _entry5, func5 = struct.unpack_from("<II", data, functab + 5 * 8)
    edits = {
        "wrong_magic": [(base, struct.pack("<I", 0x12345678))],
        "go12_magic": [(base, struct.pack("<I", GO12_MAGIC))],
        "truncated": [(base + 8, struct.pack("<Q", nfunc * 64))],
        "huge_count": [(base + 8, struct.pack("<Q", (1 << 24) - 1))],
        "bad_offsets": [(base + 8 + 3 * 8, struct.pack("<Q", 1 << 40))],
        "unsorted": [(functab + 10 * 8, struct.pack("<IIII", e11, f10, e10, f11))],
        "name_outside": [(functab + func5 + 4, struct.pack("<i", 0x7FFFFFF0))],
    }
    assert fn_off < pcln
    return {name: patched(stripped, tmp_path / name, e) for name, e in edits.items()}


@pytest.mark.parametrize("variant", ["go_pie_int", "go_pie_ext"])
def test_hostile_pclntab_is_a_counted_failure(go_progs: Programs, variant: str, tmp_path: Path) -> None:
    full, _ref = require_go(go_progs, variant)
    stripped = go_progs.get(f"{variant}_stripped")
    main = file_offset(segments(stripped), nm_symbol(full, "main.main"))
    copies = _hostile_copies(full, stripped, tmp_path)
    table = file_offset(segments(stripped), nm_symbol(full, "runtime.pclntab"))
    cut = tmp_path / "cut"  # the file ends inside the table: its segment runs past the end
    cut.write_bytes(stripped.read_bytes()[: table + 4096])
    sym = Symbolizer()
    try:
        for name, path in copies.items():
            t0 = time.monotonic()
            r = sym.resolve_file(str(path), main + 4)
            assert time.monotonic() - t0 < 10, name
            allowed = (
                {"budget_exceeded", "malformed"} if name in ("huge_count", "truncated") else {"malformed"}
            )
            assert r.error in allowed and not r.symbol, (name, r)
            assert r.function_id.endswith(f":+{main + 4:#x}"), r.function_id
        stats = sym.stats()
        assert stats.get("malformed", 0) + stats.get("budget_exceeded", 0) == len(copies)
        r = sym.resolve_file(str(cut), main + 4)
        assert r.error == "truncated_elf" and not r.symbol, r
        assert sym.stats()["truncated_elf"] == 1
    finally:
        sym.close()
    code, rows, stderr = symbolize_cli(copies["unsorted"], [main])
    assert code == 2 and rows[0]["error"] == "malformed" and "Traceback" not in stderr, stderr
