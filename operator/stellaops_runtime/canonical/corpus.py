"""Symbol corpora taken from real binaries on this machine, for the demangling tests and benchmark.

Agreement with c++filt and rustc-demangle, and demangling speed, only mean something on names real
compilers emitted, so nothing here is synthetic: C++ comes from libstdc++, Debian's libLLVM and
the Rust toolchain's libLLVM, Rust v0 from the toolchain's own libraries, Rust legacy from a small
program built with rustc's default mangling (plus rustup's symbol table), Go from Debian's
containerd and a small generic Go program. Symbols are read with binutils' ``nm``. A source that
is missing on the machine is skipped and named in :attr:`Corpus.missing`, so callers can report
(or fail on) it. The sample programs and their builders live in canonical/samples.py (re-exported).
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stellaops_runtime.canonical.demangle import is_legacy_rust
from stellaops_runtime.canonical.samples import (
    CARGO_BIN,
    CXX_SAMPLE_SOURCE,
    GO_SAMPLE_SOURCE,
    RUST_SAMPLE_SOURCE,
    build_cxx_sample,
    build_go_sample,
    build_rust_sample,
    find_tool,
)

__all__ = [
    "CXX_SAMPLE_SOURCE",
    "GO_SAMPLE_SOURCE",
    "LIBSTDCXX",
    "RUST_SAMPLE_SOURCE",
    "Corpus",
    "build_cxx_sample",
    "build_go_sample",
    "build_rust_sample",
    "cxx_corpus",
    "debian_libllvm",
    "defined_function_symbols",
    "find_tool",
    "go_corpus",
    "mangled_names",
    "mixed_corpus",
    "rust_legacy_corpus",
    "rust_sysroot",
    "rust_v0_corpus",
]

_DEBIAN_LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
LIBSTDCXX = _DEBIAN_LIBDIR / "libstdc++.so.6"
CONTAINERD = Path("/usr/bin/containerd")
_FUNCTION_TYPES = frozenset("TtWwi")


@dataclass(slots=True)
class Corpus:
    """Deduplicated symbols of one kind, in a fixed shuffled order, and where they came from."""

    name: str
    symbols: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def add(self, source: str, names: Iterable[str]) -> None:
        before = len(self.symbols)
        seen = set(self.symbols)
        for n in names:
            if n not in seen:
                seen.add(n)
                self.symbols.append(n)
        self.sources.append(f"{source} ({len(self.symbols) - before})")

    def shuffled(self, *, seed: int = 1) -> Corpus:
        out = list(self.symbols)
        random.Random(seed).shuffle(out)
        return Corpus(self.name, out, list(self.sources), list(self.missing))


def defined_function_symbols(path: Path, *, dynamic: bool = False) -> list[str]:
    """Names of the defined function symbols (nm types T t W w i) of an ELF file, without versions.

    ``dynamic`` reads ``.dynsym`` instead of ``.symtab``. Raises RuntimeError when nm fails.
    """
    cmd = ["nm", "--defined-only", "--without-symbol-versions"]
    if dynamic:
        cmd.append("--dynamic")
    cmd.append(str(path))
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"nm failed on {path}: {proc.stderr.strip()[:300]}")
    names = []
    for line in proc.stdout.splitlines():
        # "<value> <type> <name>"; Go names may contain spaces (go.shape.struct { ... })
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in _FUNCTION_TYPES and parts[2]:
            names.append(parts[2])
    return names


def rust_sysroot() -> Path | None:
    rustc = find_tool("rustc")
    if rustc is None:
        return None
    proc = subprocess.run([rustc, "--print", "sysroot"], capture_output=True, text=True, check=False)
    return Path(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else None


def _libllvm() -> Path | None:
    sysroot = rust_sysroot()
    if sysroot is None:
        return None
    found = sorted(p for p in (sysroot / "lib").glob("libLLVM.so*") if p.stat().st_size > 4096)
    return found[0] if found else None


def mangled_names(path: Path) -> list[str]:
    """Every Itanium-mangled name (``_Z``) of an ELF file's ``.dynsym``, without versions: defined
    and undefined, functions and data (vtables, typeinfo, guard variables). RuntimeError when nm
    fails."""
    cmd = ["nm", "--dynamic", "--without-symbol-versions", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"nm failed on {path}: {proc.stderr.strip()[:300]}")
    names = (line.rsplit(" ", 1)[-1] for line in proc.stdout.splitlines())
    return [n for n in names if n[:2] == "_Z"]


def debian_libllvm() -> list[Path]:
    """Debian's libLLVM builds (package ``libllvm14``, pulled in by ``llvm`` on bookworm), if any."""
    return sorted(p for p in _DEBIAN_LIBDIR.glob("libLLVM-*.so.1") if p.is_file() and not p.is_symlink())


def cxx_corpus(*, include_llvm: bool = True) -> Corpus:
    """Itanium C++ names: every mangled name of libstdc++'s and Debian's libLLVM's dynsym (functions
    and data), and the function names of the Rust toolchain's libLLVM; the libLLVMs if asked."""
    corpus = Corpus("cxx")
    if LIBSTDCXX.exists():
        corpus.add(str(LIBSTDCXX), mangled_names(LIBSTDCXX))
    else:
        corpus.missing.append(str(LIBSTDCXX))
    if include_llvm:
        debian = debian_libllvm()
        if not debian:
            corpus.missing.append(f"{_DEBIAN_LIBDIR}/libLLVM-*.so.1 (Debian package libllvm14)")
        for lib in debian:
            corpus.add(str(lib), mangled_names(lib))
        llvm = _libllvm()
        if llvm is None:
            corpus.missing.append("libLLVM.so (Rust toolchain)")
        else:
            corpus.add(str(llvm), (n for n in defined_function_symbols(llvm, dynamic=True) if n[:2] == "_Z"))
    return corpus.shuffled()


def rust_v0_corpus() -> Corpus:
    """Rust v0 names from the toolchain's librustc_driver and libstd (.symtab)."""
    corpus = Corpus("rust_v0")
    sysroot = rust_sysroot()
    if sysroot is None:
        corpus.missing.append("rustc (for its sysroot)")
        return corpus
    libs = sorted((sysroot / "lib").glob("librustc_driver-*.so"))
    libs += sorted((sysroot / "lib" / "rustlib" / "x86_64-unknown-linux-gnu" / "lib").glob("libstd-*.so"))
    if not libs:
        corpus.missing.append(f"{sysroot}/lib/librustc_driver-*.so, libstd-*.so")
    for lib in libs:
        corpus.add(str(lib), (n for n in defined_function_symbols(lib) if n[:2] == "_R"))
    return corpus.shuffled()


def rust_legacy_corpus(*, workdir: Path) -> Corpus:
    """Legacy Rust names (``_ZN...17h<hash>E``): the sample program built with default mangling,
    plus rustup's own .symtab when it has one."""
    corpus = Corpus("rust_legacy")
    try:
        sample = build_rust_sample(workdir=workdir)
    except RuntimeError as exc:
        corpus.missing.append(f"rust sample program: {exc}")
    else:
        corpus.add(
            f"rustc-built sample {sample.name}", filter(is_legacy_rust, defined_function_symbols(sample))
        )
    rustup = CARGO_BIN / "rustup"
    if rustup.exists():
        try:
            corpus.add(str(rustup), filter(is_legacy_rust, defined_function_symbols(rustup)))
        except RuntimeError as exc:
            corpus.missing.append(str(exc))
    else:
        corpus.missing.append(str(rustup))
    return corpus.shuffled()


def go_corpus(*, binaries: Sequence[Path] = (CONTAINERD,)) -> Corpus:
    """Go function names from the dynsym of Debian's Go binaries (containerd: ~51k functions)."""
    corpus = Corpus("go")
    for path in binaries:
        if not path.exists():
            corpus.missing.append(str(path))
            continue
        names = [
            n for n in defined_function_symbols(path, dynamic=True) if "." in n and not n.startswith("_cgo_")
        ]
        corpus.add(str(path), names)
    return corpus.shuffled()


def mixed_corpus(
    corpora: Mapping[str, Sequence[str]], *, counts: Mapping[str, int], seed: int = 1
) -> list[str]:
    """A shuffled mix: ``counts[kind]`` names sampled (without replacement) from ``corpora[kind]``."""
    rng = random.Random(seed)
    out: list[str] = []
    for kind, count in counts.items():
        pool = corpora.get(kind, ())
        out.extend(rng.sample(list(pool), min(count, len(pool))))
    rng.shuffle(out)
    return out
