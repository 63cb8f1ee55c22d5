"""Our resolve path against llvm-symbolizer, on this machine's binaries and programs built here.

For each binary, 300 addresses inside functions (seeded random: a function of
the ELF symbol table, then an offset inside its size; for the programs built
here also one address in every function named like a hard case: ``.cold``,
inheriting constructors ``CI1``/``CI2``, Go's ``.abi0``, GCC clones) are
resolved by ``Symbolizer.resolve_file`` (what ``stella-runtime symbolize
--file`` runs; a cold Symbolizer per binary) and by llvm-symbolizer in batch
mode (one process, addresses on stdin, ``--functions=linkage --no-inlines
--no-demangle``: the outermost function's linkage name and start). They agree on an address when

- we resolved it, at the start address llvm-symbolizer reports, and
- llvm-symbolizer's name is one of the ELF symbol table's names at that start
  (an alias such as ``_IO_fputs`` for ``fputs``), or demangles to our name;
- for a C++ name, our name is c++filt's for one of those aliases (canonical spelling).

Copies of one build (a ``strip``-ped copy with its separate debug file, a
DWARF-only copy, a stripped Go binary) are compared with llvm-symbolizer on
the original, and must give exactly the original's function IDs.

Disagreements are printed; the cases are parametrized per binary so the report
says which. One difference is accepted and counted: an address of a DWARF-only
copy whose ID differs from the original's only where DWARF cannot tell (a lone
GCC clone named as its origin, one of several functions merged by identical
code folding; docs/function-ids.md), when llvm-symbolizer reading the same
copy names the same function at the same start.

``python -m tests.integration.test_llvm_symbolizer_compare`` prints the table
in docs/symbolization.md.
"""

from __future__ import annotations

import functools
import json
import random
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from stellaops_runtime.canonical.demangle import canonicalize_gnu_cxx, demangle
from stellaops_runtime.canonical.limits import Limits
from stellaops_runtime.canonical.symbolizer import Symbolizer
from tests.native import compare_build

SAMPLES = 300
COMPARE_LIMITS = Limits(parse_seconds=120.0)
# Names of the hard cases of issue 12: every such function gets one address besides the random ones.
MARKERS = (".cold", "CI1", "CI2", ".abi0", ".isra", ".part", ".constprop")
SYSTEM = {
    "libc": Path("/usr/lib/x86_64-linux-gnu/libc.so.6"),
    "libstdcxx": Path("/usr/lib/x86_64-linux-gnu/libstdc++.so.6"),
    "libcrypto": Path("/usr/lib/x86_64-linux-gnu/libcrypto.so.3"),
    "containerd": Path("/usr/bin/containerd"),
    "python3.11": Path("/usr/bin/python3.11"),
}
CASES = [*SYSTEM, *compare_build.all_names()]


def llvm_symbolizer() -> str:
    for p in ("llvm-symbolizer", "/usr/lib/llvm-14/bin/llvm-symbolizer"):
        found = shutil.which(p)
        if found:
            return found
    raise AssertionError("llvm-symbolizer missing: install Debian's llvm package (scripts/setup.sh)")


# -- independent readers --------------------------------------------------------------------


@dataclass
class Table:
    """The ELF symbol tables of a file (and of its debug file): functions and their aliases."""

    sized: list[tuple[int, int]] = field(default_factory=list)  # (start, size) of sized functions
    names: dict[int, set[str]] = field(default_factory=dict)  # start -> every name there
    loads: list[tuple[int, int, int]] = field(default_factory=list)  # (vaddr, filesz, offset)

    def file_offset(self, vaddr: int) -> int:
        for v, size, off in self.loads:
            if v <= vaddr < v + size:
                return vaddr - v + off
        raise AssertionError(f"{vaddr:#x} is in no loadable segment")


def _add_symbols(table: Table, path: Path, sections: tuple[str, ...]) -> None:
    """FUNC/IFUNC symbols of ``sections``: headers by pyelftools, records by ``struct`` (ELF64 LE).

    pyelftools' own ``iter_symbols()`` takes seconds on containerd's 117,570 records.
    """
    with path.open("rb") as f:
        elf = ELFFile(f)
        assert elf.elfclass == 64 and elf.little_endian
        for name in sections:
            sec = elf.get_section_by_name(name)
            if sec is None or sec["sh_type"] not in ("SHT_SYMTAB", "SHT_DYNSYM"):
                continue
            strsec = elf.get_section(sec["sh_link"])
            f.seek(strsec["sh_offset"])
            strtab = f.read(strsec["sh_size"])
            f.seek(sec["sh_offset"])
            data = f.read(sec["sh_size"] - sec["sh_size"] % 24)
            for name_off, info, _other, shndx, value, size in struct.iter_unpack("<IBBHQQ", data):
                if (info & 0xF) not in (2, 10) or not value or shndx == 0:  # STT_FUNC, STT_GNU_IFUNC; defined
                    continue
                sym = strtab[name_off : strtab.index(b"\0", name_off)].decode("utf-8", "replace")
                if not sym:
                    continue
                table.names.setdefault(value, set()).add(sym)
                if size:
                    table.sized.append((value, size))


def read_table(path: Path, debug: Path | None = None) -> Table:
    t = Table()
    with path.open("rb") as f:
        for seg in ELFFile(f).iter_segments():
            if seg["p_type"] == "PT_LOAD":
                t.loads.append((seg["p_vaddr"], seg["p_filesz"], seg["p_offset"]))
    _add_symbols(t, path, (".symtab", ".dynsym"))
    if debug is not None:
        _add_symbols(t, debug, (".symtab",))
    t.sized = sorted(set(t.sized))
    return t


def build_id_debug_file(path: Path) -> Path | None:
    out = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if "Build ID:" in line:
            bid = line.split("Build ID:")[1].strip()
            p = Path(f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug")
            return p if p.is_file() else None
    return None


def sample(table: Table, seed: str, *, marked: bool) -> list[int]:
    """SAMPLES addresses: a random sized function, then a random offset inside it.

    With ``marked``, also the middle of every function named like a hard case (MARKERS).
    """
    rnd = random.Random(seed)
    starts = sorted({s for s, _ in table.sized})
    sizes: dict[int, int] = {}
    for s, size in table.sized:
        sizes[s] = max(sizes.get(s, 0), size)
    picks = [rnd.choice(starts) for _ in range(SAMPLES)]
    out = [s + rnd.randrange(sizes[s]) for s in picks]
    if marked:
        out += [s + sizes[s] // 2 for s in starts if any(m in n for n in table.names[s] for m in MARKERS)]
    return out


@dataclass(frozen=True)
class LlvmAnswer:
    name: str  # linkage name, "" when llvm-symbolizer found none
    start: int | None


def run_llvm(path: Path, addresses: list[int], *, outermost: bool = False) -> list[LlvmAnswer]:
    """One llvm-symbolizer process for all addresses (JSON lines, one per address, in order).

    ``outermost``: ask for the inline chain and take its last frame. On a file
    without a symbol table ``--no-inlines`` names the innermost inlined
    function instead of the function the address is in.
    """
    cmd = [llvm_symbolizer(), f"--obj={path}", "--functions=linkage", "--no-demangle"]
    cmd += ["--output-style=JSON"] if outermost else ["--no-inlines", "--output-style=JSON"]
    stdin = "".join(f"{a:#x}\n" for a in addresses)
    out = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=True, timeout=120).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(rows) == len(addresses), out[-2000:]
    answers = []
    for row in rows:
        chain = row.get("Symbol") or [{}]
        sym = chain[-1] if outermost else chain[0]
        name = sym.get("FunctionName", "")
        start = sym.get("StartAddress")
        answers.append(LlvmAnswer("" if name in ("", "??") else name, int(start, 16) if start else None))
    return answers


def run_ours(path: Path, offsets: list[int]) -> list[dict[str, object]]:
    """``Symbolizer.resolve_file`` (what ``symbolize --file`` runs), a cold Symbolizer per file.

    The time budget is raised (COMPARE_LIMITS): this compares answers, not speed, and on a
    loaded 2-core machine pyelftools needs 2-5 s for a Rust DWARF-only copy (the default
    budget is 2 s: ``budget_exceeded``; speed is the benchmark's business).
    """
    sym = Symbolizer(limits=COMPARE_LIMITS)
    try:
        return [sym.resolve_file(str(path), o).to_json() for o in offsets]
    finally:
        sym.close()


def cxxfilt(names: list[str]) -> dict[str, str]:
    """``c++filt -i`` over many names in one process (the reference spelling, docs/function-ids.md)."""
    if not names:
        return {}
    out = subprocess.run(
        ["c++filt", "-i"], input="\n".join(names) + "\n", capture_output=True, text=True, check=True
    )
    return dict(zip(names, out.stdout.splitlines(), strict=True))


def is_cxx(name: str) -> bool:
    """An Itanium C++ name (not a Rust legacy one, which ends in ``17h<16 hex>E``)."""
    core = name.split(".", 1)[0]
    return core.startswith("_Z") and not (len(core) > 20 and core.endswith("E") and core[-20:-17] == "17h")


# -- the comparison -----------------------------------------------------------------------------


@dataclass
class Result:
    case: str
    total: int = 0
    agree: int = 0
    unresolved: int = 0
    disagree: list[str] = field(default_factory=list)
    ids_compared: int = 0
    ids_differ: list[str] = field(default_factory=list)
    llvm_unknown: int = 0  # addresses llvm-symbolizer could not name in the file (not compared)
    dwarf_limited: int = 0  # DWARF-only copy: named as llvm-symbolizer names it from the same copy

    @property
    def ok(self) -> bool:
        return not self.disagree and not self.ids_differ and self.unresolved == 0


@functools.cache
def built() -> compare_build.Built:
    return compare_build.build_all()


def case_files(case: str) -> tuple[Path, Path, Path | None]:
    """(file we read, the reference file (its original), the reference's separate debug file).

    llvm-symbolizer reads the reference's debug file when there is one: it has
    the unstripped ``.symtab`` (llvm-symbolizer would name a stripped file's
    local functions from DWARF alone, as the function their code was inlined from).
    """
    if case in SYSTEM:
        path = SYSTEM[case]
        assert path.is_file(), f"{path} missing (scripts/setup.sh installs it)"
        return path, path, build_id_debug_file(path)
    b = built()
    if case not in b.paths:
        pytest.fail(f"{case} was not built: {b.errors.get(case, 'unknown')}")
    original = b.paths[b.original.get(case, case)]
    return b.paths[case], original, None


def in_copy(case: str, path: Path, table: Table, addresses: list[int]) -> tuple[list[bool], list[LlvmAnswer]]:
    """Which addresses the copy read can name at all (the others are not compared), and
    llvm-symbolizer's answers on the copy itself (DWARF-only copies; else empty).

    A DWARF-only copy cannot name code its DWARF does not describe (crt1's
    ``_start``): the addresses llvm-symbolizer names from that copy itself. A
    stripped Go binary keeps only Go's own function table, which covers
    ``[runtime.text, runtime.etext)``: C code linked in by cgo is outside it.
    """
    if case.endswith("_dwarfonly"):
        own = run_llvm(path, addresses, outermost=True)
        return [bool(a.name) for a in own], own
    if case.startswith("go_") and case.endswith("_stripped"):
        bounds = {
            n: a for a, names in table.names.items() for n in names if n in ("runtime.text", "runtime.etext")
        }
        assert len(bounds) == 2, bounds
        return [bounds["runtime.text"] <= a < bounds["runtime.etext"] for a in addresses], []
    return [True] * len(addresses), []


def dwarf_limited(got: dict[str, object], start: int, own: LlvmAnswer, gnu: dict[str, str]) -> bool:
    """A DWARF-only copy's answer that differs from the original's only where DWARF cannot tell.

    docs/function-ids.md ("Names from DWARF"): a lone GCC clone is named as its
    origin (DWARF records no ``.isra``/``.part``/``.constprop`` suffix), and of
    functions merged by identical-code folding DWARF describes one name. Such an
    answer is accepted only when llvm-symbolizer, reading the same copy, names
    the same function at the same start: both tools read what the file holds.
    """
    if not own.name or own.start != start:
        return False
    name = canonicalize_gnu_cxx(gnu[own.name]) if own.name in gnu else demangle(own.name)
    return name == got["symbol"]


def compare(case: str) -> Result:
    ours_path, ref_path, ref_debug = case_files(case)
    table = read_table(ref_path, ref_debug)
    assert table.sized, f"{ref_path}: no sized functions in its symbol tables"
    addresses = sample(table, case, marked=case not in SYSTEM)
    offsets = [table.file_offset(a) for a in addresses]
    llvm = run_llvm(ref_debug or ref_path, addresses)
    ours = run_ours(ours_path, offsets)
    original = run_ours(ref_path, offsets) if ours_path != ref_path else None
    present, own = in_copy(case, ours_path, table, addresses)
    wanted: set[str] = {a.name for a in own if a.name and is_cxx(a.name)}
    for a in llvm:
        if a.name and a.start is not None:
            wanted |= {n for n in table.names.get(a.start, ()) if is_cxx(n)}
            if is_cxx(a.name):
                wanted.add(a.name)
    gnu = cxxfilt(sorted(wanted))
    res = Result(case)
    for i, (addr, want, got) in enumerate(zip(addresses, llvm, ours, strict=True)):
        if not want.name or not present[i]:
            res.llvm_unknown += 1
            continue
        start = addr - int(str(got.get("offset") or 0))
        differs = original is not None and got["function_id"] != original[i]["function_id"]
        if differs and own and not got.get("error") and dwarf_limited(got, start, own[i], gnu):
            res.ids_compared += 1
            res.total += 1
            res.dwarf_limited += 1
            continue
        if original is not None:
            res.ids_compared += 1
            if got["function_id"] != original[i]["function_id"]:
                res.ids_differ.append(
                    f"{addr:#x}: {got['function_id']} != original {original[i]['function_id']}"
                )
        res.total += 1
        if got.get("error"):
            res.unresolved += 1
            res.disagree.append(f"{addr:#x}: llvm {want.name} @ {want.start or 0:#x}; ours {got['error']}")
            continue
        aliases = table.names.get(start, set())
        same_fn = (want.start is None or want.start == start) and (
            want.name in aliases or demangle(want.name) == got["symbol"]
        )
        spelled = True
        cxx = [n for n in aliases | {want.name} if is_cxx(n)]
        if same_fn and cxx:
            spelled = got["symbol"] in {canonicalize_gnu_cxx(gnu[n]) for n in cxx if n in gnu}
        if same_fn and spelled:
            res.agree += 1
        else:
            why = "other function" if not same_fn else "spelling differs from c++filt"
            res.disagree.append(
                f"{addr:#x}: {why}: llvm {want.name} @ {want.start or 0:#x}; "
                f"ours {got['symbol']} @ {start:#x} ({got['source']})"
            )
    return res


def report(res: Result) -> str:
    lines = [
        f"{res.case}: {res.agree}/{res.total} agree, {res.unresolved} unresolved by us, "
        f"{len(res.disagree) - res.unresolved} other disagreements, "
        f"llvm-symbolizer unknown {res.llvm_unknown}; "
        f"DWARF-only answers as llvm-symbolizer's on the same copy {res.dwarf_limited}; "
        f"IDs differing from the original copy: {len(res.ids_differ)}/{res.ids_compared}"
    ]
    lines += [f"  disagree {d}" for d in res.disagree[:40]]
    lines += [f"  id {d}" for d in res.ids_differ[:40]]
    return "\n".join(lines)


@pytest.mark.parametrize("case", CASES)
def test_agrees_with_llvm_symbolizer(case: str) -> None:
    res = compare(case)
    print(report(res))
    assert res.total >= SAMPLES // 2, report(res)
    assert res.ok, report(res)


def main() -> None:
    print(
        "| binary | addresses llvm-symbolizer names | agree | unresolved by us | other disagreements |"
        " IDs equal to the original's | DWARF cannot tell |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for case in CASES:
        try:
            r = compare(case)
        except BaseException as e:  # a missing toolchain: say so in the table
            print(f"| `{case}` | not run: {type(e).__name__}: {str(e)[:80]} | | | | | |")
            continue
        ids = (
            f"{r.ids_compared - len(r.ids_differ) - r.dwarf_limited}/{r.ids_compared}"
            if r.ids_compared
            else "—"
        )
        other = len(r.disagree) - r.unresolved
        print(f"| `{case}` | {r.total} | {r.agree} | {r.unresolved} | {other} | {ids} | {r.dwarf_limited} |")
        sys.stdout.flush()
        print(report(r), file=sys.stderr)


if __name__ == "__main__":
    main()
