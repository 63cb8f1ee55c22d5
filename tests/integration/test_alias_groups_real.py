"""Real alias groups (C++ constructor/destructor pairs, libc's aliases) named at first use, as the rule says.

canonical/aliasgroups.py leaves most alias groups undecided until a name is
read. Here every entry of real tables (a g++ -O2 program with many
constructors and destructors, built in the test; libstdc++ and libLLVM-14 where
installed) is compared with a reference computed from pyelftools'
``iter_symbols()`` and the rule written out in the test, with the table read
through lookups in a random order first, and through ``resolve_file`` against
llvm-symbolizer's function start for the same addresses where it agrees on
the start.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from stellaops_runtime.canonical.addrindex import AddressTable
from stellaops_runtime.canonical.cxx_gnu import canonicalize_gnu_cxx
from stellaops_runtime.canonical.elflayout import read_layout
from stellaops_runtime.canonical.symbolizer import Symbolizer
from stellaops_runtime.canonical.symtab import function_symbols, read_section_table

_BIND = {"STB_GLOBAL": 0, "STB_WEAK": 1, "STB_LOCAL": 2}

PROGRAM = r"""
#include <cstdio>
#include <string>
#include <vector>
namespace stella {
struct Base { virtual ~Base(); explicit Base(int v); int v; };
Base::Base(int x) : v(x) {}
Base::~Base() { std::printf("~Base %d\n", v); }
%CLASSES%
}
int main(int argc, char **argv) {
    std::vector<stella::Base *> all;
%NEWS%
    for (auto *b : all) delete b;
    return argc > 5 ? 1 : 0;
}
"""


def _program(n: int) -> str:
    classes = "\n".join(
        f"struct D{i} : Base {{ D{i}(int x); ~D{i}() override; std::string s; }};\n"
        f'D{i}::D{i}(int x) : Base(x + {i}), s("{i}") {{}}\n'
        f'D{i}::~D{i}() {{ std::printf("~D{i} %s\\n", s.c_str()); }}'
        for i in range(n)
    )
    news = "\n".join(f"    all.push_back(new stella::D{i}(argc));" for i in range(n))
    return PROGRAM.replace("%CLASSES%", classes).replace("%NEWS%", news)


def _reference(path: Path, section: str) -> dict[int, tuple[str, int]]:
    """start -> (raw name, end) of every sized function start, by the rule, from pyelftools' symbols."""
    groups: dict[int, list[tuple[int, int, str, int]]] = {}
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for s in elf.get_section_by_name(section).iter_symbols():
            kind, shndx = s["st_info"]["type"], s["st_shndx"]
            if kind not in ("STT_FUNC", "STT_LOOS") or isinstance(shndx, str) or shndx >= 0xFF00:
                continue
            if not s["st_value"] or not s.name:
                continue
            bind = _BIND.get(s["st_info"]["bind"], 3)
            under = len(s.name) - len(s.name.lstrip("_"))
            groups.setdefault(s["st_value"], []).append((s["st_size"], under, s.name, bind))
    out: dict[int, tuple[str, int]] = {}
    for start, members in groups.items():
        if not any(m[0] for m in members):
            continue  # size-less groups end at the next symbol: not what this test is about
        size, _, name, _ = min(members, key=lambda m: (0 if m[0] else 1, m[1], m[3], len(m[2]), m[2]))
        out[start] = (name, start + size)
    return out


def _check(path: Path, section: str) -> int:
    """Compare the table built from ``path``'s ``section`` with the reference; returns the number of
    alias groups that were left pending."""
    with open(path, "rb") as f:
        layout = read_layout(f)
        cols = function_symbols(
            read_section_table(f, layout), f, section, is64=layout.is64, little=layout.little
        )
    t = AddressTable(section.lstrip("."), cols)
    pending = len(t._aliases) if t._aliases is not None else 0
    idx = list(range(len(t)))
    random.Random(len(t)).shuffle(idx)
    for i in idx[: len(idx) // 2]:  # half the entries named through the lookup path first
        t.canonical_name(i)
    ref = _reference(path, section)
    got = {t.starts[i]: (t.names[i], t.ends[i]) for i in range(len(t)) if t.starts[i] in ref}
    assert got == ref
    return pending


@pytest.fixture(scope="module")
def cxx_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    d = tmp_path_factory.mktemp("aliases")
    src = d / "aliases.cpp"
    src.write_text(_program(60))
    exe = d / "aliases"
    subprocess.run(["g++", "-O2", "-o", str(exe), str(src)], check=True)
    return exe


def test_constructor_and_destructor_aliases_of_a_built_program(cxx_program: Path) -> None:
    pending = _check(cxx_program, ".symtab")
    assert pending >= 60  # C1/C2 and D1/D2 pairs: the groups this change leaves to their first read


@pytest.mark.parametrize(
    "path",
    [Path("/usr/lib/x86_64-linux-gnu/libstdc++.so.6"), Path("/usr/lib/x86_64-linux-gnu/libLLVM-14.so.1")],
)
def test_real_libraries(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} not installed")
    assert _check(path, ".dynsym") > 0


def test_resolve_file_names_aliases_like_llvm_symbolizer(cxx_program: Path) -> None:
    """Through the Symbolizer (first sight of every offset), each alias group's entry is named as
    llvm-symbolizer names the same address, demangled by ``c++filt -i`` (constructor and destructor
    pairs demangle to one text, whichever member either tool picks), and as the reference's winner."""
    if shutil.which("llvm-symbolizer") is None or shutil.which("c++filt") is None:
        pytest.skip("llvm-symbolizer or c++filt not installed")
    ref = _reference(cxx_program, ".symtab")
    with open(cxx_program, "rb") as f:
        layout = read_layout(f)
    text = next(s for s in layout.loads if s.flags & 1)
    starts = sorted(s for s, (name, _) in ref.items() if name.startswith("_ZN6stella"))
    assert len(starts) >= 120
    sym = Symbolizer(file_lines=False)
    try:
        got = sym.resolve_file_many(str(cxx_program), [s - text.vaddr + text.offset for s in starts])
    finally:
        sym.close()
    out = subprocess.run(
        ["llvm-symbolizer", f"--obj={cxx_program}", "--functions=linkage", "--no-inlines"],
        input="".join(f"{s:#x}\n" for s in starts),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    theirs = [out[i] for i in range(0, 3 * len(starts), 3)]
    raw = theirs + [ref[s][0] for s in starts]
    demangled = subprocess.run(
        ["c++filt", "-i"], input="\n".join(raw) + "\n", capture_output=True, text=True, check=True
    ).stdout.split("\n")
    texts = [canonicalize_gnu_cxx(d) for d in demangled[: 2 * len(starts)]]
    for k, r in enumerate(got):
        assert r.resolved and r.offset == 0, (starts[k], r)
        assert r.symbol == texts[k] == texts[len(starts) + k]
