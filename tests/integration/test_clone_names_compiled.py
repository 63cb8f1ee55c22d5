"""The names real compilers give a function's other bodies, and the question by name that must meet them.

A question by name also names the function's clones (store/name_spellings.py ``clone_of``). Which
suffixes a compiler writes is read here from real builds, not assumed:

- GCC numbers a nested function ``inner.0``, ``inner.1`` (two functions named ``inner`` in two
  functions), and LLVM's module linking (full LTO: ``llvm-link``) renames the second static
  ``hash`` of a program ``hash.1``, as GCC's LTO renames both ``hash.lto_priv.0`` and
  ``hash.lto_priv.1``. Each is a function named so in the source. A bare numbered copy was no
  clone, so a call seen only there was "not observed" of ``hash`` (exit 1) though the
  ``.lto_priv.N`` spelling of the same rename was observed.
- GCC outlines an OpenMP parallel region of ``par`` as ``par._omp_fn.0``: code written in ``par``,
  run by libgomp's threads, was "not observed" of ``par``.

- ``target_clones`` bodies, one per x86 target, GCC's (``tc.aes``) and clang's (``tc.sha.1``,
  ``tc.arch_x86-64-v2.4``), never the resolver.
- Asked with its parameter list, a C++ function's bodies clang names apart: ``(anonymous
  namespace)::hidden(int) (.__uniq.<digits>)`` and a coroutine's ``work(int) (.resume)``.

Compiled to object files (no link, no run): milliseconds. Seen failing before the fix.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from stellaops_runtime.canonical.demangle import demangle
from stellaops_runtime.store.function_refs import function_query

NESTED = """
int outer(int n) { int inner(int x) { return x * n; } int s = 0; for (int i = 0; i < n; i++) s += inner(i);
  return s; }
int outer2(int n) { int inner(int x) { return x + n; } int s = 0; for (int i = 0; i < n; i++) s += inner(i);
  return s; }
int par(int n) {
  int s = 0;
#pragma omp parallel for reduction(+:s)
  for (int i = 0; i < n; i++) s += i;
  return s;
}
"""
STATIC = (
    "static int __attribute__((noinline)) hash(int x) {{ return x * {k}; }}\n"
    + "int {f}(int x) {{ return hash(x); }}\n"
)
STATIC_A = STATIC.format(k=31, f="fa")
STATIC_B = STATIC.format(k=17, f="fb")


def _functions(path: Path) -> set[str]:
    """The canonical names of the function symbols of an ELF file's symbol table."""
    with path.open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        return {demangle(s.name) for s in symtab.iter_symbols() if s["st_info"]["type"] == "STT_FUNC"}


def _run(*argv: str | Path) -> None:
    subprocess.run([str(a) for a in argv], check=True, capture_output=True, timeout=60)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_gcc_numbered_nested_functions_and_openmp_bodies_are_the_functions(tmp_path: Path) -> None:
    src = tmp_path / "nested.c"
    src.write_text(NESTED)
    _run("gcc", "-O2", "-fno-inline", "-fopenmp", "-c", src, "-o", tmp_path / "nested.o")
    names = _functions(tmp_path / "nested.o")
    assert {"inner.0", "inner.1", "par._omp_fn.0"} <= names, names
    assert function_query("inner").matches_name("inner.0")
    assert function_query("inner").matches_name("inner.1")
    assert function_query("par").matches_name("par._omp_fn.0")
    # another name that starts the same, and the suffix alone, are not the function
    assert not function_query("inne").matches_name("inner.1")
    assert not function_query("inner.").matches_name("inner.1")
    assert not function_query("par._omp").matches_name("par._omp_fn.0")


@pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("gcc", "clang", "llvm-link", "llc")), reason="needs gcc and LLVM"
)
def test_two_statics_of_one_name_renamed_by_lto_are_both_the_function(tmp_path: Path) -> None:
    (tmp_path / "a.c").write_text(STATIC_A)
    (tmp_path / "b.c").write_text(STATIC_B)
    for c in ("a", "b"):
        _run("clang", "-O2", "-flto", "-c", tmp_path / f"{c}.c", "-o", tmp_path / f"{c}.bc")
    _run("llvm-link", tmp_path / "a.bc", tmp_path / "b.bc", "-o", tmp_path / "ab.bc")
    _run("llc", "-O2", "-filetype=obj", tmp_path / "ab.bc", "-o", tmp_path / "llvm.o")
    gcc_lto = ("gcc", "-O2", "-flto", "-r", "-flinker-output=nolto-rel", "-nostdlib")
    _run(*gcc_lto, tmp_path / "a.c", tmp_path / "b.c", "-o", tmp_path / "gcc.o")
    llvm, gcc = _functions(tmp_path / "llvm.o"), _functions(tmp_path / "gcc.o")
    assert {"hash", "hash.1"} <= llvm, llvm
    assert {"hash.lto_priv.0", "hash.lto_priv.1"} <= gcc, gcc
    q = function_query("hash")
    for stored in ("hash", "hash.1", "hash.lto_priv.0", "hash.lto_priv.1"):
        assert q.matches_name(stored), stored


def test_a_clone_name_cut_before_its_number_is_no_function() -> None:
    """``f.part.0`` is a part of ``f``; ``f.part`` names no function, so a number after it is the
    clone's, not a rename of a function ``f.part``."""
    for asked, stored in (("f.part", "f.part.0"), ("f.isra", "f.isra.1"), ("f.lto_priv", "f.lto_priv.0")):
        assert not function_query(asked).matches_name(stored), (asked, stored)
    assert function_query("inner.0").matches_name("inner.0.cold")
    assert function_query("cold").matches_name("cold.1")  # a function named ``cold``, renamed


TARGET_CLONES = (
    '__attribute__((target_clones("avx2", "arch=haswell", "sse4.2", "default")))\n'
    "int tc(int x) { return x * 3 + 1; }\n"
    "int use(int x) { return tc(x); }\n"
)


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("gcc", "clang")), reason="needs gcc and clang")
def test_target_clones_are_the_functions(tmp_path: Path) -> None:
    """``target_clones`` (function multiversioning) compiles ``tc`` into one body per target and an
    ifunc that picks one at load time: a call runs in ``tc.avx2`` or ``tc.default`` (GCC), in
    ``tc.avx2.0`` or ``tc.default.3`` (clang), and no body is named ``tc``. Asked by name, ``tc`` was
    "not observed" (exit 1) whatever ran. Its resolver (``tc.resolver``) runs no code of ``tc``."""
    src = tmp_path / "tc.c"
    src.write_text(TARGET_CLONES)
    bodies = set()
    for cc in ("gcc", "clang"):
        _run(cc, "-O2", "-c", src, "-o", tmp_path / f"{cc}.o")
        bodies |= {n for n in _functions(tmp_path / f"{cc}.o") if n.startswith("tc.")}
    assert {"tc.avx2", "tc.arch_haswell", "tc.sse4_2", "tc.default", "tc.avx2.0", "tc.sse4.2.2"} <= bodies, (
        bodies
    )
    q = function_query("tc")
    for stored in sorted(bodies - {"tc.resolver", "tc.ifunc"}):
        assert q.matches_name(stored), stored
    assert not q.matches_name("tc.resolver")
    assert not function_query("tc.sse4").matches_name("tc.sse4.2.2")  # cut before the target's number
    assert function_query("avx2").matches_name("avx2.1")  # a function named so, renamed


CXX_BODIES = """
#include <coroutine>
struct task {
  struct promise_type {
    task get_return_object() { return {}; }
    std::suspend_never initial_suspend() { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() {}
    void unhandled_exception() {}
  };
};
task work(int n) { for (int i = 0; i < n; i++) co_await std::suspend_always{}; }
namespace { __attribute__((noinline)) int hidden(int x) { return x * 5; } }
int use(int x) { work(x); return hidden(x); }
"""


@pytest.mark.skipif(shutil.which("clang++") is None, reason="needs clang++")
def test_cxx_bodies_clang_names_apart_are_the_functions_asked_with_their_parameters(tmp_path: Path) -> None:
    """Asked as advisories write a C++ function, with its parameter list, two bodies clang names apart
    were "not observed" whatever ran there: a static or anonymous-namespace function built with
    ``-funique-internal-linkage-names`` (AutoFDO and Propeller builds) is stored as
    ``(anonymous namespace)::hidden(int) (.__uniq.<digits>)``, and a C++20 coroutine's body after its
    first suspension runs in ``work(int) (.resume)`` (its locals' destructors in ``.destroy``). The
    name without its parameter list already met them (any ``work(`` overload)."""
    src = tmp_path / "bodies.cpp"
    src.write_text(CXX_BODIES)
    obj = tmp_path / "bodies.o"
    _run("clang++", "-std=c++20", "-O2", "-funique-internal-linkage-names", "-c", src, "-o", obj)
    names = _functions(obj)
    uniq = [n for n in names if n.startswith("(anonymous namespace)::hidden(int) (.__uniq.")]
    assert len(uniq) == 1, names
    assert {"work(int) (.resume)", "work(int) (.destroy)"} <= names, names
    for asked, stored in (
        ("(anonymous namespace)::hidden(int)", uniq[0]),
        ("(anonymous namespace)::hidden( int )", uniq[0]),
        ("work(int)", "work(int) (.resume)"),
        ("work(int)", "work(int) (.destroy)"),
        ("work(int)", "work(int) (.cleanup)"),  # LLVM's third part, when the frame's allocation is elided
    ):
        assert function_query(asked).matches_name(stored), (asked, stored)
    assert not function_query("work(long)").matches_name("work(int) (.resume)")
    assert not function_query("work(int)").matches_name("work(int) (.resolver)")


CLONE_TARGETS = {  # what each compiler's target_clones takes (GCC: its CPU feature list only)
    "gcc": ("aes", "mmx", "xop", "bmi", "arch=x86-64-v2", "pclmul", "fma4"),
    "clang": ("aes", "sha", "adx", "amx-tile", "arch=x86-64-v2", "crc32", "cx16", "rdrnd", "sahf", "xsave"),
}


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("gcc", "clang")), reason="needs gcc and clang")
def test_every_x86_target_of_target_clones_is_the_functions(tmp_path: Path) -> None:
    """The target words were a short list: a body for AES-NI (``tc.aes``, what crypto code dispatches
    to), SHA, MMX, XOP, ``rdrnd``, ``crc32``... and clang's ``arch=`` with its hyphens kept
    (``tc.arch_x86-64-v2.4``) were no body of ``tc``, so a call that ran there was "not observed"."""
    bodies: set[str] = set()
    for cc, targets in CLONE_TARGETS.items():
        src = tmp_path / f"{cc}.c"
        attr = ", ".join(f'"{t}"' for t in (*targets, "default"))
        src.write_text(f"__attribute__((target_clones({attr}))) int tc(int x) {{ return x * 3 + 1; }}\n"
                       "int use(int x) { return tc(x); }\n")  # fmt: skip
        _run(cc, "-O2", "-c", src, "-o", tmp_path / f"{cc}.o")
        found = {n for n in _functions(tmp_path / f"{cc}.o") if n.startswith("tc.")} - {
            "tc.resolver",
            "tc.ifunc",
        }
        assert len(found) == len(targets) + 1, (cc, found)
        bodies |= found
    assert {"tc.aes", "tc.arch_x86_64_v2", "tc.sha.1", "tc.arch_x86-64-v2.4"} <= bodies, bodies
    q = function_query("tc")
    assert [b for b in sorted(bodies) if not q.matches_name(b)] == []
    assert not q.matches_name("tc.resolver")
    assert not q.matches_name("tc.ifunc")
