"""Demangling over real corpora: agreement with GNU c++filt and rustc-demangle, and the fallback.

The corpora are read from binaries on the machine at run time (canonical.corpus): libstdc++ and
the Rust toolchain's libLLVM (C++), librustc_driver/libstd (Rust v0), rustup and a rustc-built
sample (Rust legacy), Debian's containerd (Go), plus small C++/Rust/Go programs built here once per
session. Agreement percentages are printed (``pytest -s``) for the report; the assertions are a
high floor plus "every difference belongs to a documented class".
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyderust
import pytest

from stellaops_runtime.canonical import demangle as dm
from stellaops_runtime.canonical.corpus import (
    Corpus,
    build_cxx_sample,
    build_go_sample,
    build_rust_sample,
    cxx_corpus,
    debian_libllvm,
    defined_function_symbols,
    go_corpus,
    rust_legacy_corpus,
    rust_v0_corpus,
)
from stellaops_runtime.canonical.cxxfilt import CxxfiltDemangler
from stellaops_runtime.canonical.demangle import (
    BindingsDemangler,
    Demangler,
    canonicalize_gnu_cxx,
    demangle,
    go_package_path,
    rust_crate_name,
    strip_symbol_decorations,
)


@dataclass
class Built:
    cxx: Path
    cxx_o0: Path
    rust_legacy: Path
    rust_v0: Path
    go: Path


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demangle-corpus")


@pytest.fixture(scope="session")
def built(workdir: Path) -> Built:
    return Built(
        cxx=build_cxx_sample(workdir=workdir / "cxx"),
        cxx_o0=build_cxx_sample(workdir=workdir / "cxx", opt="-O0"),
        rust_legacy=build_rust_sample(workdir=workdir / "rust"),
        rust_v0=build_rust_sample(workdir=workdir / "rust", v0=True),
        go=build_go_sample(workdir=workdir / "go"),
    )


def _complete(corpus: Corpus) -> Corpus:
    assert not corpus.missing, f"corpus {corpus.name} is missing sources: {corpus.missing}"
    assert corpus.symbols, f"corpus {corpus.name} is empty"
    return corpus


@pytest.fixture(scope="session")
def cxx(built: Built) -> Corpus:
    corpus = _complete(cxx_corpus())
    corpus.add("g++ -O2 sample", (n for n in defined_function_symbols(built.cxx) if n[:2] == "_Z"))
    corpus.add("g++ -O0 sample", (n for n in defined_function_symbols(built.cxx_o0) if n[:2] == "_Z"))
    return corpus


@pytest.fixture(scope="session")
def rust_v0(built: Built) -> Corpus:
    corpus = _complete(rust_v0_corpus())
    corpus.add("rustc v0 sample", (n for n in defined_function_symbols(built.rust_v0) if n[:2] == "_R"))
    return corpus


@pytest.fixture(scope="session")
def rust_legacy(workdir: Path) -> Corpus:
    return _complete(rust_legacy_corpus(workdir=workdir / "legacy"))


@pytest.fixture(scope="session")
def go(built: Built) -> Corpus:
    corpus = _complete(go_corpus())
    corpus.add("go sample", (n for n in defined_function_symbols(built.go) if "." in n))
    return corpus


@pytest.fixture(scope="session")
def fallback() -> Iterator[CxxfiltDemangler]:
    with CxxfiltDemangler() as d:
        yield d


def _report(label: str, total: int, diffs: list[tuple[str, str, str]]) -> float:
    rate = 100.0 * (total - len(diffs)) / total
    print(f"\n{label}: {total - len(diffs)}/{total} agree ({rate:.3f}%)")
    for mangled, ours, theirs in diffs[:5]:
        print(f"  {mangled[:120]}\n    ours:   {ours[:200]}\n    theirs: {theirs[:200]}")
    return rate


def test_every_real_symbol_demangles(cxx: Corpus, rust_v0: Corpus, rust_legacy: Corpus, go: Corpus) -> None:
    dm.clear_cache()
    dm.reset_stats()
    for corpus in (cxx, rust_v0, rust_legacy, go):
        for name in corpus.symbols:
            demangle(name)
    stats = dm.demangle_stats()
    assert stats.failures == 0
    assert stats.cxx == len(cxx.symbols)
    assert stats.rust_v0 == len(rust_v0.symbols)
    assert stats.rust_legacy == len(rust_legacy.symbols)
    assert stats.go == len(go.symbols)
    print(f"\nC++ names __cxa_demangle answered (LLVM rejected or spells them otherwise): {stats.cxx_gnu}")


def test_cxx_agrees_with_gnu_cxxfilt(cxx: Corpus, fallback: CxxfiltDemangler) -> None:
    """``c++filt -i`` + canonicalize_gnu_cxx (the documented spellings) gives exactly our text on
    every mangled name of libstdc++ and Debian's libLLVM (functions and data, defined or not), the
    Rust toolchain's libLLVM functions and the g++ samples: one c++filt process for all of them."""
    assert any(src.startswith(str(p)) for p in debian_libllvm() for src in cxx.sources)
    assert len(cxx.symbols) > 50_000, cxx.sources
    started = time.perf_counter()
    theirs = fallback.demangle_many(cxx.symbols)
    spent = time.perf_counter() - started
    diffs = [(m, demangle(m), t) for m, t in zip(cxx.symbols, theirs, strict=True) if demangle(m) != t]
    _report(f"C++ vs GNU c++filt -i ({spent:.1f} s for c++filt)", len(cxx.symbols), diffs)
    assert diffs == []
    assert fallback.failures == 0


def test_inheriting_constructors_name_the_inherited_constructor(built: Built) -> None:
    """``CI1``/``CI2``: the constructor of the base class the derived one inherits, as c++filt says."""
    names = [n for n in defined_function_symbols(built.cxx_o0) if "CI1St15__uniq_ptr_impl" in n]
    names += [n for n in defined_function_symbols(built.cxx_o0) if "CI2St15__uniq_ptr_impl" in n]
    assert names, "g++ -O0 emitted no inheriting constructor of std::__uniq_ptr_data"
    gnu = subprocess.run(
        ["c++filt", "-i"], input="".join(n + "\n" for n in names), capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for mangled, theirs in zip(names, gnu, strict=True):
        ours = demangle(mangled)
        assert ours == canonicalize_gnu_cxx(theirs)
        assert ours.startswith("std::__uniq_ptr_data<stella::Vec2<int>,")
        assert ours.endswith(">::__uniq_ptr_impl(stella::Vec2<int>*)")


_STD_ABBREVIATIONS = {
    "std::string": "std::basic_string<char, std::char_traits<char>, std::allocator<char>>",
    "std::istream": "std::basic_istream<char, std::char_traits<char>>",
    "std::ostream": "std::basic_ostream<char, std::char_traits<char>>",
    "std::iostream": "std::basic_iostream<char, std::char_traits<char>>",
}
_ABBREVIATION = re.compile(r"std::(?:string|istream|ostream|iostream)\b")


def test_cxx_vs_verbose_cxxfilt_differs_only_in_std_abbreviations(cxx: Corpus) -> None:
    """Plain ``c++filt`` (verbose) expands std::string & co.; that is the only other difference."""
    names = cxx.symbols
    out = subprocess.run(
        ["c++filt"], input="".join(n + "\n" for n in names), capture_output=True, text=True, check=True
    ).stdout.splitlines()
    raw = [(m, demangle(m), canonicalize_gnu_cxx(g)) for m, g in zip(names, out, strict=True)]
    diffs = [d for d in raw if d[1] != d[2]]
    _report("C++ vs GNU c++filt (verbose)", len(names), diffs)
    unexplained = [
        d for d in diffs if _ABBREVIATION.sub(lambda m: _STD_ABBREVIATIONS[m.group(0)], d[1]) != d[2]
    ]
    assert unexplained == []


def test_rust_v0_agrees_with_rustc_demangle(rust_v0: Corpus) -> None:
    diffs = []
    for m in rust_v0.symbols:
        theirs = pyderust.demangle(strip_symbol_decorations(m))  # alternate form: no crate hashes
        if demangle(m) != theirs:
            diffs.append((m, demangle(m), theirs))
    rate = _report("Rust v0 vs rustc-demangle", len(rust_v0.symbols), diffs)
    assert rate >= 99.9


def test_rust_legacy_agrees_with_rustc_demangle(rust_legacy: Corpus) -> None:
    diffs = []
    for m in rust_legacy.symbols:
        theirs = pyderust.demangle(m)
        if demangle(m) != theirs:
            diffs.append((m, demangle(m), theirs))
    rate = _report("Rust legacy vs rustc-demangle", len(rust_legacy.symbols), diffs)
    assert rate == 100.0


# c++filt (binutils 2.40) prints 128-bit const generics wrongly (-0x0000…_ for i128::MIN)
_WIDE_CONST = re.compile(r"K[no]n?[0-9a-f]{17,}_")


def test_fallback_agrees_with_primary_on_every_corpus(
    cxx: Corpus, rust_v0: Corpus, rust_legacy: Corpus, go: Corpus, fallback: CxxfiltDemangler
) -> None:
    backends: list[Demangler] = [BindingsDemangler(), fallback]  # one interface, two implementations
    primary, secondary = backends
    for corpus in (cxx, rust_v0, rust_legacy, go):
        ours = primary.demangle_many(corpus.symbols)
        theirs = secondary.demangle_many(corpus.symbols)
        diffs = [(m, o, t) for m, o, t in zip(corpus.symbols, ours, theirs, strict=True) if o != t]
        rate = _report(f"{corpus.name}: bindings vs c++filt fallback", len(corpus.symbols), diffs)
        assert rate >= 99.9
        unexplained = [d for d in diffs if not (corpus.name == "rust_v0" and _WIDE_CONST.search(d[0]))]
        assert unexplained == []


def test_fallback_coprocess_answers_one_name_at_a_time(
    cxx: Corpus, rust_v0: Corpus, rust_legacy: Corpus
) -> None:
    names = cxx.symbols[:200] + rust_v0.symbols[:200] + rust_legacy.symbols[:100] + ["memcpy", "main.main"]
    with CxxfiltDemangler() as coproc:
        batch = coproc.demangle_many(names)
        assert [coproc.demangle(n) for n in names] == batch
        # a name with a newline would desynchronise the pipe: refused and counted
        before = coproc.failures
        assert coproc.demangle("_Z3foov\n_Z3barv") == "_Z3foov\n_Z3barv"
        assert coproc.failures == before + 1
        assert coproc.demangle(names[0]) == batch[0]
        # the coprocess dies: the next call starts a new one
        assert coproc._proc is not None
        os.kill(coproc._proc.pid, signal.SIGKILL)
        coproc._proc.wait()
        assert coproc.demangle(names[1]) == batch[1]


def test_bindings_missing_routes_to_the_installed_fallback(
    monkeypatch: pytest.MonkeyPatch, cxx: Corpus, rust_v0: Corpus, rust_legacy: Corpus, go: Corpus
) -> None:
    names = cxx.symbols[:300] + rust_v0.symbols[:300] + rust_legacy.symbols[:300] + go.symbols[:300]
    dm.clear_cache()
    expected = [demangle(n) for n in names]
    with CxxfiltDemangler() as coproc:
        monkeypatch.setattr(dm, "_llvm_itanium", dm._fallback_only)
        monkeypatch.setattr(dm, "_llvm_rust", dm._fallback_only)
        monkeypatch.setattr(dm, "_rustc_demangle", dm._fallback_only)
        dm.install_fallback(None)
        # nothing installed: Rust stays as it is (counted); C++ still has libstdc++'s __cxa_demangle
        before = dm.demangle_stats().failures
        assert demangle(rust_v0.symbols[0]) == rust_v0.symbols[0]
        assert dm.demangle_stats().failures == before + 1
        assert demangle(cxx.symbols[0]) == expected[0]
        dm.clear_cache()
        dm.install_fallback(coproc)
        try:
            assert [demangle(n) for n in names] == expected
        finally:
            dm.install_fallback(None)
            monkeypatch.undo()
            dm.clear_cache()


def test_sample_programs(built: Built) -> None:
    go_names = {demangle(n) for n in defined_function_symbols(built.go) if n.startswith("main.")}
    assert {
        "main.(*List[...]).Push",
        "main.List[...].Len",
        "main.(*List[...]).Len",
        "main.Map[...]",
        "main.(*Server).Handle",
        "main.(*Server).Handle-fm",
        "main.Server.Name",
        "main.main",
        "main.main.func1",
    } <= go_names
    assert all("go.shape" not in n for n in go_names)

    legacy = {demangle(n) for n in defined_function_symbols(built.rust_legacy)}
    assert {
        "stella_sample::main",
        "stella_sample::main::{{closure}}",
        "stella_sample::apply",
        "stella_sample::Point<i64>::norm1",
        "<stella_sample::Point<T> as core::fmt::Display>::fmt",
        "<stella_sample::Circle as stella_sample::Shape>::area",
    } <= legacy

    v0 = {demangle(n) for n in defined_function_symbols(built.rust_v0)}
    assert {
        "stella_sample::main",
        "stella_sample::apply::<stella_sample::main::{closure#0}>",
        "<stella_sample::Point<i64>>::norm1",
        "<stella_sample::Point<i64> as core::fmt::Display>::fmt",
        "<stella_sample::Circle as stella_sample::Shape>::area",
    } <= v0
    assert all("[" not in n.split("::")[0] for n in v0 if n.startswith("stella_sample"))

    cxx_names = {demangle(n) for n in defined_function_symbols(built.cxx)}
    assert {
        "stella::run(int)",
        "stella::Widget::~Widget()",
        "stella::Widget::draw(int) const",
        "stella::(anonymous namespace)::hidden(int)",
        "int stella::call_twice<stella::run(int)::'lambda'(int)>(stella::run(int)::'lambda'(int), int)",
    } <= cxx_names
    # GCC's clones keep their suffix, in LLVM's spelling
    assert any(n.endswith(")") and " (." in n for n in cxx_names)


def test_attribution_helpers_cover_the_real_corpora(rust_v0: Corpus, rust_legacy: Corpus, go: Corpus) -> None:
    for corpus in (rust_v0, rust_legacy):
        missing = [n for n in corpus.symbols if not rust_crate_name(demangle(n))]
        # only inherent impls of primitive types (<[u8]>::repeat, <str>::find) name no crate
        assert all(demangle(n).startswith("<") for n in missing), missing[:5]
        assert len(missing) <= len(corpus.symbols) * 0.005
    paths = {}
    for name in go.symbols:
        path = go_package_path(name)
        if name.startswith(("type.", "type:", "go.", "go:")):
            assert path == ""
            continue
        assert path, name
        paths[name] = path
    # the package path, re-escaped as the linker writes it, is where the name starts (vendor/ aside)
    for name, path in paths.items():
        head, dot, last = path.rpartition("/")
        escaped = head + dot + last.replace(".", "%2e")
        assert escaped in name, (name, path)
    assert paths["github.com/containerd/containerd/api/events.(*ContainerCreate).Marshal"] == (
        "github.com/containerd/containerd/api/events"
    )


_LLVM_HASH = re.compile(r"\.llvm\.[0-9]+(?=\.|$)")


def _rustfilt(names: list[str]) -> list[str]:
    rustfilt = shutil.which("rustfilt")
    assert rustfilt, "rustfilt is not installed (Debian package rustfilt)"
    out = subprocess.run(
        [rustfilt], input="".join(n + "\n" for n in names), capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(out) == len(names)
    return out


def test_rust_agrees_with_rustfilt(rust_v0: Corpus, rust_legacy: Corpus) -> None:
    """rustfilt (rustc-demangle's CLI, Debian) over every Rust name, in one process: the same text,
    once the documented normalisation (every ``.llvm.<digits>`` among the suffixes dropped) is
    applied to the names it reads; without it, the only differences are those LTO hashes."""
    names = rust_v0.symbols + rust_legacy.symbols
    normalised = _rustfilt([strip_symbol_decorations(n) for n in names])
    ours = [demangle(n) for n in names]
    diffs = [(m, o, t) for m, o, t in zip(names, ours, normalised, strict=True) if o != t]
    _report("Rust (v0 + legacy) vs rustfilt", len(names), diffs)
    assert diffs == []
    # the names rule 2 changes, as they are: rustfilt keeps an LTO hash that is not the last suffix
    changed = [(n, o) for n, o in zip(names, ours, strict=True) if strip_symbol_decorations(n) != n]
    raw = _rustfilt([n for n, _ in changed])
    differing = [(m, o, t) for (m, o), t in zip(changed, raw, strict=True) if o != t]
    assert differing, "the corpus has names with an LTO hash among their suffixes"
    assert all(_LLVM_HASH.sub("", t) == o for _, o, t in differing), differing[:3]
    print(f"rustfilt keeps an LTO hash in {len(differing)} of {len(names)} names")


def test_lto_hash_is_dropped_among_any_suffixes(rust_v0: Corpus) -> None:
    """Real ``….llvm.<hash>.cold`` / ``.warm`` names: no hash left, the clone suffix kept, and the
    name the same whatever the hash (the hash changes between builds)."""
    inner = [n for n in rust_v0.symbols if re.search(r"\.llvm\.[0-9]+\.", n)]
    assert len(inner) >= 100, "librustc_driver should have hundreds of .llvm.<hash>.cold names"
    for name in inner:
        ours = demangle(name)
        assert ".llvm." not in ours, (name, ours)
        assert ours.endswith(name[name.rfind(".") :]), (name, ours)  # .cold / .warm / .N kept
        rebuilt = _LLVM_HASH.sub(".llvm.1234567890", name)  # another build's hash
        assert demangle(rebuilt) == ours
        assert strip_symbol_decorations(name) == _LLVM_HASH.sub("", name)
