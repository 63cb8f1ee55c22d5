"""DWARF inlined-subroutine chains (canonical/dwarfinline.py) against llvm-symbolizer --inlines.

Programs are built here: a C++ program at -O2 -g whose small functions (static members, a
static function, a template) are inlined into each other and into non-inlined callers, and a
Rust program at ``-C opt-level=2 -g`` (legacy and v0 mangling) likewise; the Rust binaries also
carry the standard library's DWARF, which inlines deeply.

Addresses: every byte of the program's own functions (symbol names carrying a marker) plus 300
seeded-random addresses inside any sized function of the symbol table. Reference: one
``llvm-symbolizer --inlines --no-demangle --output-style=JSON`` process per binary (addresses on
stdin); its frames minus the last (the function the address is physically in) are the inlined
chain, innermost first. Names are compared **mangled, exactly** (``--no-demangle`` gives the
linkage names DWARF records, which is what ``DwarfInlines`` returns). Disagreements are printed.

The separate-debug-file case reads the ``objcopy --only-keep-debug`` file and must give the
original's chains. The hostile cases patch the built C++ binary's DWARF (an origin outside the
section, an origin at a non-subprogram DIE, a self-referencing specification, a truncated and a
garbled unit, a DIE budget): the affected answers are ``()``, counted, never another name, and
nothing raises.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from elftools.dwarf.die import DIE
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from stellaops_runtime.canonical.dwarfinline import DwarfInlines, dwarf_inlines
from stellaops_runtime.canonical.limits import Limits
from tests.elf_files import patched as patched_copy

SAMPLES = 300
LIMITS = Limits(parse_seconds=60.0)
SHF_COMPRESSED = 0x800

CXX_SRC = r"""
#include <cstdio>
#include <cstdlib>
namespace inl {
struct Acc {
  static inline int leaf(int x) { return x * 3 + (x >> 2); }
  static inline int mid(int x) { int s = 0; for (int i = 0; i < x; ++i) s += leaf(i ^ x); return s; }
};
static inline int outer(int x) { return Acc::mid(x) + Acc::leaf(x + 1); }
template <typename T> inline T twice(T v) { return outer(static_cast<int>(v)) * 2; }
__attribute__((noinline)) int entry_a(int x) { return twice<long>(x) + outer(x * 7); }
__attribute__((noinline)) int entry_b(int x) { return Acc::mid(x) - twice<int>(x); }
}  // namespace inl
extern "C" __attribute__((noinline)) int c_style(int x) { return inl::Acc::leaf(x) + 1; }
int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 5;
  std::printf("%d %d %d\n", inl::entry_a(n), inl::entry_b(n), c_style(n));
  return 0;
}
"""

# -flto: the inlined DIEs of the link-time units refer to their origins in the compile-time
# unit with DW_FORM_ref_addr (another unit of .debug_info)
LTO_SRC = {
    "lib.h": "namespace inl { struct Lib { static int leaf(int x); static int mid(int x); }; }\n",
    "lib.cpp": r"""
#include "lib.h"
namespace inl {
int Lib::leaf(int x) { return x * 5 + (x >> 1); }
int Lib::mid(int x) { int s = 0; for (int i = 0; i < x; ++i) s += leaf(i ^ x); return s; }
}
""",
    "app.cpp": r"""
#include <cstdio>
#include <cstdlib>
#include "lib.h"
namespace inl { __attribute__((noinline)) int entry_c(int x) { return Lib::mid(x) + Lib::leaf(x); } }
int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 5;
  std::printf("%d\n", inl::entry_c(n));
}
""",
}

RUST_SRC = r"""
use std::collections::HashMap;
#[inline(always)]
fn leaf(x: u64) -> u64 { x.wrapping_mul(31) ^ (x >> 3) }
#[inline]
fn mid(v: &[u64]) -> u64 { v.iter().map(|&x| leaf(x)).fold(0, |a, b| a.wrapping_add(b)) }
pub struct Acc { m: HashMap<u64, u64> }
impl Acc {
    #[inline]
    fn bump(&mut self, k: u64) -> u64 { let e = self.m.entry(k).or_insert(0); *e += leaf(k); *e }
}
#[inline(never)]
pub fn entry_a(n: u64) -> u64 { let v: Vec<u64> = (0..n).collect(); mid(&v) + leaf(n) }
#[inline(never)]
pub fn entry_b(acc: &mut Acc, n: u64) -> u64 { (0..n).map(|i| acc.bump(i % 7)).sum() }
fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(9);
    let mut acc = Acc { m: HashMap::new() };
    println!("{} {}", entry_a(n), entry_b(&mut acc, n));
}
"""

# case -> symbol-name marker of the program's own functions
MARKERS = {"cxx": "3inl", "cxx_lto": "3inl", "rust_legacy": "inlchain", "rust_v0": "inlchain"}


def _tool(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError(f"none of {names} installed (scripts/setup.sh)")


def _rustc() -> str:
    return _tool("rustc", "/root/.cargo/bin/rustc")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inline_chain")
    out: dict[str, Path] = {}
    (d / "inl.cpp").write_text(CXX_SRC)
    subprocess.run([_tool("g++"), "-O2", "-g", "-o", str(d / "cxx"), str(d / "inl.cpp")], check=True)
    out["cxx"] = d / "cxx"
    for name, text in LTO_SRC.items():
        (d / name).write_text(text)
    lto = [
        _tool("g++"),
        "-O2",
        "-g",
        "-flto",
        "-o",
        str(d / "cxx_lto"),
        str(d / "app.cpp"),
        str(d / "lib.cpp"),
    ]
    subprocess.run(lto, check=True)
    out["cxx_lto"] = d / "cxx_lto"
    (d / "inlchain.rs").write_text(RUST_SRC)
    rust = [_rustc(), "-C", "opt-level=2", "-g", "--crate-name", "inlchain"]
    subprocess.run([*rust, "-o", str(d / "rust_legacy"), str(d / "inlchain.rs")], check=True)
    out["rust_legacy"] = d / "rust_legacy"
    v0 = subprocess.run(
        [*rust, "-C", "symbol-mangling-version=v0", "-o", str(d / "rust_v0"), str(d / "inlchain.rs")],
        capture_output=True,
        text=True,
    )
    if v0.returncode == 0:
        out["rust_v0"] = d / "rust_v0"
    return out


# -- the two readers -------------------------------------------------------------------------


def llvm_chains(path: Path, addrs: list[int]) -> list[tuple[str, ...]]:
    """llvm-symbolizer's inlined frames per address (all frames but the last), mangled."""
    cmd = [
        _tool("llvm-symbolizer", "/usr/lib/llvm-14/bin/llvm-symbolizer"),
        "--inlines",
        "--no-demangle",
        "--functions=linkage",
        "--output-style=JSON",
        f"--obj={path}",
    ]
    res = subprocess.run(
        cmd, input="\n".join(hex(a) for a in addrs), capture_output=True, text=True, check=True
    )
    lines = res.stdout.splitlines()
    assert len(lines) == len(addrs), res.stderr
    return [tuple(frame["FunctionName"] for frame in json.loads(line)["Symbol"][:-1]) for line in lines]


@contextmanager
def open_inlines(path: Path, limits: Limits = LIMITS) -> Iterator[DwarfInlines | None]:
    with path.open("rb") as f:
        yield dwarf_inlines(ELFFile(f), limits.budget(str(path)))


def our_chains(
    path: Path, addrs: list[int], limits: Limits = LIMITS
) -> tuple[list[tuple[str, ...]], dict[str, int]]:
    with open_inlines(path, limits) as inl:
        assert inl is not None, f"{path} has .debug_info"
        return [inl.inlined_at(a) for a in addrs], dict(inl.stats)


def addresses(path: Path, marker: str, seed: int = 1) -> tuple[list[int], int]:
    """Every byte of the own functions, then SAMPLES random in-function addresses; (addrs, own count)."""
    with path.open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        funcs = [
            (s.name, s["st_value"], s["st_size"])
            for s in symtab.iter_symbols()
            if s["st_info"]["type"] == "STT_FUNC" and s["st_size"] > 0 and s["st_value"]
        ]
    own = [a for name, start, size in funcs if marker in name for a in range(start, start + size)]
    assert own, f"no function named like {marker!r} in {path}"
    rng = random.Random(seed)
    sampled = []
    for _ in range(SAMPLES):
        _, start, size = rng.choice(funcs)
        sampled.append(start + rng.randrange(size))
    return own + sampled, len(own)


def disagreements(
    addrs: list[int], ours: list[tuple[str, ...]], ref: list[tuple[str, ...]], label: str
) -> list[str]:
    bad = [f"{a:#x}: ours {o} llvm {r}" for a, o, r in zip(addrs, ours, ref, strict=True) if o != r]
    if bad:
        print(f"{label}: {len(bad)} of {len(addrs)} addresses disagree with llvm-symbolizer")
        for line in bad[:40]:
            print("  ", line)
    return bad


# -- agreement -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(MARKERS))
def test_chains_equal_llvm_symbolizer(built: dict[str, Path], case: str) -> None:
    if case not in built:
        pytest.skip(f"the installed rustc does not build {case}")
    path = built[case]
    addrs, n_own = addresses(path, MARKERS[case])
    ref = llvm_chains(path, addrs)
    ours, stats = our_chains(path, addrs)
    print(f"{case}: {len(addrs)} addresses ({n_own} in own functions), stats {stats}")
    assert disagreements(addrs, ours, ref, case) == []
    # not vacuous: the own functions have inlined code, nested at least two deep
    assert sum(1 for c in ours[:n_own] if c) > n_own // 4
    assert max(len(c) for c in ours[:n_own]) >= 2
    assert stats["answered"] == sum(1 for c in ours if c)
    assert stats["unit_unreadable"] == stats["bad_origin"] == stats["origin_loop"] == 0
    if case == "cxx_lto":  # origins in another unit were followed (that unit's table was built)
        assert stats["units_walked"] >= 2


@pytest.mark.parametrize("case", ["cxx", "rust_legacy"])
def test_separate_debug_file_gives_same_chains(built: dict[str, Path], case: str, tmp_path: Path) -> None:
    path = built[case]
    debug = tmp_path / f"{case}.debug"
    stripped = tmp_path / case
    subprocess.run([_tool("objcopy"), "--only-keep-debug", str(path), str(debug)], check=True)
    subprocess.run([_tool("strip"), "--strip-debug", "-o", str(stripped), str(path)], check=True)
    addrs, _ = addresses(path, MARKERS[case], seed=2)
    ref = llvm_chains(path, addrs)
    ours, stats = our_chains(debug, addrs)
    print(f"{case} debug file: {len(addrs)} addresses, stats {stats}")
    assert disagreements(addrs, ours, ref, f"{case} (.debug file)") == []
    assert any(ours)
    with open_inlines(stripped) as inl:
        assert inl is None  # no .debug_info: the lead attaches the debug file instead


# -- hostile DWARF ---------------------------------------------------------------------------


def _dies(path: Path) -> tuple[int, int, list[DIE], int, int]:
    """(.debug_info file offset, its size, the DIEs of the unit holding entry_a, unit offset, unit size)."""
    with path.open("rb") as f:
        elf = ELFFile(f)
        sec = elf.get_section_by_name(".debug_info")
        assert sec is not None and not sec["sh_flags"] & SHF_COMPRESSED, "patching needs plain .debug_info"
        dwarf = elf.get_dwarf_info(relocate_dwarf_sections=False)
        for cu in dwarf.iter_CUs():
            dies = list(cu.iter_DIEs())
            if any(
                d.attributes.get("DW_AT_linkage_name")
                and b"entry_a" in d.attributes["DW_AT_linkage_name"].value
                for d in dies
            ):
                return sec["sh_offset"], sec["sh_size"], dies, cu.cu_offset, cu.size
    raise AssertionError("no unit with entry_a")


def _ranges(die: DIE) -> tuple[int, int] | None:
    low, high = die.attributes.get("DW_AT_low_pc"), die.attributes.get("DW_AT_high_pc")
    if low is None or high is None or high.form == "DW_FORM_addr":
        return None
    return low.value, low.value + high.value


def _check_only_dropped(
    path: Path, patched: Path, addrs: list[int]
) -> tuple[list[tuple[str, ...]], dict[str, int]]:
    """Every answer on the patched file is the original's or (): never another name."""
    before, _ = our_chains(path, addrs)
    after, stats = our_chains(patched, addrs)
    wrong = [(hex(a), b, c) for a, b, c in zip(addrs, before, after, strict=True) if c and c != b]
    assert wrong == [], wrong[:10]
    return after, stats


def _inlined_with_ref4_origin(dies: list[DIE]) -> tuple[DIE, tuple[int, int]]:
    for d in dies:
        span = _ranges(d)
        origin = d.attributes.get("DW_AT_abstract_origin")
        if (
            d.tag == "DW_TAG_inlined_subroutine"
            and span
            and origin is not None
            and origin.form == "DW_FORM_ref4"
        ):
            return d, span
    raise AssertionError("no inlined DIE with low_pc/high_pc and a ref4 origin")


@pytest.mark.parametrize("where", ["past_section", "mid_die", "not_subprogram"])
def test_bad_abstract_origin_gives_nothing(built: dict[str, Path], tmp_path: Path, where: str) -> None:
    path = built["cxx"]
    sec_off, sec_size, dies, cu_off, _ = _dies(path)
    die, (low, high) = _inlined_with_ref4_origin(dies)
    origin = die.attributes["DW_AT_abstract_origin"]
    target = {
        "past_section": sec_size + 0x1000,  # outside .debug_info
        "mid_die": die.offset + 1,  # inside the unit, not a DIE's start
        "not_subprogram": die.offset,  # the inlined DIE itself
    }[where]
    patched = patched_copy(
        path, tmp_path / "bad", [(sec_off + origin.offset, struct.pack("<I", target - cu_off))]
    )
    addrs = list(range(low, high))
    before, _ = our_chains(path, addrs)
    assert all(before), "the inlined range has chains before the patch"
    after, stats = _check_only_dropped(path, patched, [*addrs, *addresses(path, MARKERS["cxx"])[0]])
    assert after[: len(addrs)] == [()] * len(addrs)
    assert stats["bad_origin"] >= 1 and stats["chains_dropped"] >= len(addrs)


def test_self_referencing_specification_gives_nothing(built: dict[str, Path], tmp_path: Path) -> None:
    path = built["cxx"]
    sec_off, _, dies, cu_off, _ = _dies(path)
    by_offset = {d.offset: d for d in dies}
    for die in dies:
        origin = die.attributes.get("DW_AT_abstract_origin")
        span = _ranges(die)
        if (
            die.tag != "DW_TAG_inlined_subroutine"
            or origin is None
            or origin.form != "DW_FORM_ref4"
            or not span
        ):
            continue
        target = by_offset.get(cu_off + origin.value)
        spec = target.attributes.get("DW_AT_specification") if target is not None else None
        if target is not None and spec is not None and spec.form == "DW_FORM_ref4":
            break
    else:
        raise AssertionError("no inlined DIE whose origin has a ref4 DW_AT_specification (static member)")
    low, high = span
    patched = patched_copy(
        path, tmp_path / "loop", [(sec_off + spec.offset, struct.pack("<I", target.offset - cu_off))]
    )
    after, stats = _check_only_dropped(path, patched, list(range(low, high)))
    assert after == [()] * (high - low)
    assert stats["origin_loop"] >= 1


def _shdr_size_field(path: Path, name: str) -> int:
    """File offset of section ``name``'s sh_size (ELF64 little-endian)."""
    with path.open("rb") as f:
        elf = ELFFile(f)
        assert elf.elfclass == 64 and elf.little_endian
        for i, sec in enumerate(elf.iter_sections()):
            if sec.name == name:
                return int(elf["e_shoff"] + i * elf["e_shentsize"] + 32)
    raise AssertionError(name)


@pytest.mark.parametrize("how", ["truncated", "garbled"])
def test_damaged_unit_gives_nothing(built: dict[str, Path], tmp_path: Path, how: str) -> None:
    path = built["cxx"]
    sec_off, _, _, cu_off, cu_size = _dies(path)
    if how == "truncated":  # .debug_info ends in the middle of the unit
        patch = (_shdr_size_field(path, ".debug_info"), struct.pack("<Q", cu_off + cu_size // 2))
    else:  # the unit's second half overwritten with 0xff
        patch = (sec_off + cu_off + cu_size // 2, b"\xff" * (cu_size - cu_size // 2))
    patched = patched_copy(path, tmp_path / how, [patch])
    addrs, n_own = addresses(path, MARKERS["cxx"])
    after, stats = _check_only_dropped(path, patched, addrs)
    assert after[:n_own] == [()] * n_own
    assert stats["unit_unreadable"] >= 1


@pytest.mark.parametrize(
    "limits", [Limits(max_dwarf_dies=100), Limits(parse_seconds=0.0)], ids=["dies", "clock"]
)
def test_unit_over_budget_gives_nothing(built: dict[str, Path], limits: Limits) -> None:
    path = built["rust_legacy"]
    addrs, n_own = addresses(path, MARKERS["rust_legacy"])
    ours, stats = our_chains(path, addrs, limits)
    assert ours[:n_own] == [()] * n_own
    assert stats["unit_over_budget"] >= 1
