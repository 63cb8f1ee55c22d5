"""Which C++ names go to GNU's demangler: every marker of canonical/demangle.py, on a program built here.

``demangle_uncached`` sends a C++ name to libstdc++'s ``__cxa_demangle`` when
it holds a construct LLVM spells differently from ``c++filt`` (an inheriting
constructor ``CI``, a ``decltype`` ``Dt``/``DT``, a local name: a ``Z`` after the
leading ``_Z``, a TLS init or wrapper ``_ZTH``/``_ZTW``), and tests the
two-character markers only once their first character is in the name. Here a
g++ program with each construct (and names with the first characters alone:
constructors ``C1``, destructors ``D1``, ``T`` template parameters) is built; for
every function symbol nm lists, the name must equal ``c++filt -i``'s and be
counted as GNU's (``cxx_gnu``) exactly when the marker, looked for here with
plain substring tests, is in it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from stellaops_runtime.canonical import demangle as dm
from stellaops_runtime.canonical.cxx_gnu import canonicalize_gnu_cxx

SOURCE = r"""
#include <cstdio>
#include <string>
#include <utility>
namespace stella {
struct Base { explicit Base(int v) : v(v) {} Base(int a, int b) : v(a + b) {} virtual ~Base() {} int v; };
struct Derived : Base { using Base::Base; ~Derived() override { std::printf("%d\n", v); } };
template <typename T> auto twice(T x) -> decltype(x + x) { return x + x; }          // DT: an expression
template <typename T> auto same(T x) -> decltype(x) { return x; }                   // Dt: an id-expression
template <typename T> auto call(T f) -> decltype(f()) { return f(); }
int counter() { static int calls = 0; return ++calls; }                             // Z...E: a local static
template <typename T> int local_of() { static T seen{}; seen = seen + T(1); return int(seen); }
thread_local std::string tls_name = "x";                                            // _ZTH / _ZTW
std::string &name_ref() { return tls_name; }
struct Cat { Cat() {} ~Cat() {} void Doze() {} };                                   // C1 / D1 alone
template <typename T> struct Tpl { T Take(T t) { return t; } };
}
int main(int argc, char **argv) {
    stella::Derived d(argc), e(argc, 2);
    stella::Cat c; c.Doze();
    stella::Tpl<long> t;
    auto lam = [argc] { return argc; };
    long r = stella::twice(argc) + stella::same(2L) + stella::call(lam) + stella::counter()
           + stella::local_of<int>() + stella::local_of<double>() + t.Take(argc)
           + long(stella::name_ref().size());
    return r == 12345 ? 1 : 0;
}
"""


def _marker(name: str) -> bool:
    """The constructs GNU's demangler takes, by plain substring tests."""
    body = name[2:]
    return "CI" in name or "Dt" in name or "DT" in name or "Z" in body or name.startswith(("_ZTH", "_ZTW"))


@pytest.fixture(scope="module")
def symbols(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    for tool in ("g++", "nm", "c++filt"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    d = tmp_path_factory.mktemp("gnu-markers")
    src = d / "markers.cpp"
    src.write_text(SOURCE)
    exe = d / "markers"
    subprocess.run(["g++", "-O0", "-std=c++17", "-o", str(exe), str(src)], check=True)
    out = subprocess.run(
        ["nm", "--defined-only", str(exe)], capture_output=True, text=True, check=True
    ).stdout
    names = sorted(
        {ln.split()[-1] for ln in out.splitlines() if ln.split()[1:2] in (["T"], ["t"], ["W"], ["w"])}
    )
    return [n for n in names if n.startswith("_Z")]


def test_every_marker_is_present(symbols: list[str]) -> None:
    """The program holds each construct, and names with the markers' first characters alone."""
    assert any("CI" in n for n in symbols)
    assert any("Dt" in n for n in symbols)
    assert any("DT" in n for n in symbols)
    assert any("Z" in n[2:] for n in symbols)
    assert any(n.startswith("_ZTH") for n in symbols) and any(n.startswith("_ZTW") for n in symbols)
    near = [n for n in symbols if not _marker(n)]
    assert any("C" in n for n in near) and any("D" in n for n in near) and any("T" in n[2:] for n in near)


def test_gnu_takes_exactly_the_marked_names_and_both_agree_with_cxxfilt(symbols: list[str]) -> None:
    reference = subprocess.run(
        ["c++filt", "-i"], input="\n".join(symbols) + "\n", capture_output=True, text=True, check=True
    ).stdout.split("\n")
    for name, theirs in zip(symbols, reference, strict=False):
        dm.reset_stats()
        ours = dm.demangle_uncached(name)
        stats = dm.demangle_stats()
        assert ours == canonicalize_gnu_cxx(theirs), name
        assert stats.cxx == 1 and stats.failures == 0, name
        if _marker(name):
            assert stats.cxx_gnu == 1, name
        else:  # LLVM's text unless LLVM rejected it or kept a collapsed qualifier (both GNU's then)
            assert stats.cxx_gnu == 0 or " const const" in (_llvm(name) or " const const"), name


def _llvm(name: str) -> str | None:
    pycxxfilt = pytest.importorskip("pycxxfilt")
    try:
        out: str | None = pycxxfilt.itanium_demangle(name)
    except ValueError:
        return None
    return out


def test_mach_o_and_decorated_forms_dispatch_alike(symbols: list[str]) -> None:
    """``__Z`` (Mach-O), ``@VERSION`` and ``.llvm.<n>`` forms of each name: one text, one demangler."""
    for name in symbols:
        dm.reset_stats()
        plain = dm.demangle_uncached(name)
        gnu = dm.demangle_stats().cxx_gnu
        for form in ("_" + name, name + "@@V_1.2", name + ".llvm.8817"):
            dm.reset_stats()
            assert dm.demangle_uncached(form) == plain, form
            assert dm.demangle_stats().cxx_gnu == gnu, form


def test_reference_tool_found(symbols: list[str]) -> None:
    assert Path(shutil.which("c++filt") or "").exists() and len(symbols) > 20
