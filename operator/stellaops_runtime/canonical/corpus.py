"""Symbol corpora taken from real binaries on this machine, for the demangling tests and benchmark.

Agreement with c++filt and rustc-demangle, and demangling speed, only mean something on names real
compilers emitted, so nothing here is synthetic: C++ comes from libstdc++, Debian's libLLVM and
the Rust toolchain's libLLVM, Rust v0 from the toolchain's own libraries, Rust legacy from a small
program built with rustc's default mangling (plus rustup's symbol table), Go from Debian's
containerd and a small generic Go program. Symbols are read with binutils' ``nm``. A source that
is missing on the machine is skipped and named in :attr:`Corpus.missing`, so callers can report
(or fail on) it.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stellaops_runtime.canonical.demangle import is_legacy_rust

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
_CARGO_BIN = Path("/root/.cargo/bin")
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


def find_tool(name: str) -> str | None:
    """A tool from PATH, or from rustup's ~/.cargo/bin where the Rust toolchain lives here."""
    found = shutil.which(name)
    if found:
        return found
    candidate = _CARGO_BIN / name
    return str(candidate) if candidate.exists() else None


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


CXX_SAMPLE_SOURCE = """\
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace stella {
template <typename T> struct Vec2 {
  T x, y;
  Vec2 operator+(const Vec2 &o) const { return {x + o.x, y + o.y}; }
  bool operator<(const Vec2 &o) const { return x < o.x; }
};
class Widget {
public:
  explicit Widget(std::string n) : name_(std::move(n)) {}
  virtual ~Widget() { std::printf("bye %s\\n", name_.c_str()); }
  virtual int draw(int v) const { return v + (int)name_.size(); }
  int operator()(int a) const { return a * 2; }
private:
  std::string name_;
};
namespace {
__attribute__((noinline)) int hidden(int v) { return v * 7; }
}
struct { int a; } unnamed_global;
__attribute__((noinline)) static int scale(const std::vector<int> &v, int factor) {
  int s = 0;
  for (int x : v) s += x * factor;
  if (__builtin_expect(s < 0, 0)) { std::fprintf(stderr, "negative %d\\n", s); std::abort(); }
  return s;
}
struct Big { long a, b, c, d; };
__attribute__((noinline)) static long sum_big(Big b) { return b.a + b.d; }
template <typename F> __attribute__((noinline)) int call_twice(F f, int v) { return f(f(v)); }
__attribute__((noinline)) int run(int argc) {
  auto add = [argc](int v) { return v + argc; };
  auto mul = [](int v) { return v * 3; };
  auto gen = [](auto v) { return v + v; };
  std::map<std::string, std::vector<Vec2<double>>> m;
  m["a"].push_back(Vec2<double>{1, 2} + Vec2<double>{3, 4});
  std::function<int(int)> fn = [&](int v) { return add(v) + mul(v); };
  Widget w("w");
  int r = call_twice(add, argc) + call_twice(mul, argc) + fn(argc) + gen(argc) + (int)gen(1.5) + w(argc);
  r += scale({1, 2, 3}, 4) + scale({1}, argc) + (int)sum_big(Big{1, 2, 3, 4}) + hidden(argc);
  if (argc > 100) throw std::runtime_error("too many");
  return r + w.draw(1) + (int)m.size() + unnamed_global.a;
}
// unique_ptr's storage inherits its base's constructor (an inheriting constructor, "CI1", at -O0)
__attribute__((noinline)) int owned(int v) {
  std::unique_ptr<Vec2<int>> p(new Vec2<int>{v, v + 1});
  return p->x + p->y;
}
}  // namespace stella
int main(int argc, char **) { return (stella::run(argc) + stella::owned(argc)) & 1; }
"""


def build_cxx_sample(*, workdir: Path, opt: str = "-O2", debug: bool = False) -> Path:
    """Compile CXX_SAMPLE_SOURCE with g++ (-O2: templates, lambdas, ctors/dtors, an anonymous
    namespace, and GCC clones ``.cold``, ``.isra.0``, ``.constprop.0``; -O0 keeps the library's
    template instantiations out of line, such as inheriting constructors); ``debug`` adds -g."""
    gxx = shutil.which("g++")
    if gxx is None:
        raise RuntimeError("g++ is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    src = workdir / "stella_sample.cpp"
    src.write_text(CXX_SAMPLE_SOURCE)
    out = workdir / f"stella_sample_cxx{opt}{'-g' if debug else ''}"
    cmd = [gxx, opt, *(["-g"] if debug else []), "-std=c++20", "-o", str(out), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"g++ failed: {proc.stderr.strip()[:1000]}")
    return out


RUST_SAMPLE_SOURCE = """\
use std::collections::HashMap;
use std::fmt;

pub struct Point<T> { pub x: T, pub y: T }

impl<T: fmt::Display> fmt::Display for Point<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { write!(f, "({}, {})", self.x, self.y) }
}

pub trait Shape { fn area(&self) -> f64; }
pub struct Circle(pub f64);
impl Shape for Circle {
    #[inline(never)]
    fn area(&self) -> f64 { 3.5 * self.0 * self.0 }
}

impl Point<i64> {
    #[inline(never)]
    pub fn norm1(&self) -> i64 { self.x.abs() + self.y.abs() }
}

#[inline(never)]
fn apply<F: Fn(i32) -> i32>(f: F, v: i32) -> i32 { f(v) }

fn main() {
    let p = Point { x: 1i64, y: -2 };
    let mut m: HashMap<String, Vec<u8>> = HashMap::new();
    m.insert(format!("{}", p), vec![1, 2]);
    let shapes: Vec<Box<dyn Shape>> = vec![Box::new(Circle(2.0))];
    let k = std::env::args().count() as i32;
    println!("{} {} {} {}", p.norm1(), apply(move |v| v * k, 7), shapes[0].area(), m.len());
}
"""


def build_rust_sample(*, workdir: Path, v0: bool = False) -> Path:
    """Compile RUST_SAMPLE_SOURCE with rustc (default = legacy mangling for the crate, or v0)."""
    rustc = find_tool("rustc")
    if rustc is None:
        raise RuntimeError("rustc is not installed (looked in PATH and /root/.cargo/bin)")
    workdir.mkdir(parents=True, exist_ok=True)
    src = workdir / "stella_sample.rs"
    src.write_text(RUST_SAMPLE_SOURCE)
    out = workdir / ("stella_sample_v0" if v0 else "stella_sample_legacy")
    cmd = [rustc, "-C", "opt-level=0", "-o", str(out), str(src)]
    if v0:
        cmd[1:1] = ["-C", "symbol-mangling-version=v0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=workdir)
    if proc.returncode != 0:
        raise RuntimeError(f"rustc failed: {proc.stderr.strip()[:1000]}")
    return out


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
    rustup = _CARGO_BIN / "rustup"
    if rustup.exists():
        try:
            corpus.add(str(rustup), filter(is_legacy_rust, defined_function_symbols(rustup)))
        except RuntimeError as exc:
            corpus.missing.append(str(exc))
    else:
        corpus.missing.append(str(rustup))
    return corpus.shuffled()


GO_SAMPLE_SOURCE = """\
package main

import (
\t"fmt"
\t"os"
\t"strings"
)

type List[T any] struct{ items []T }

//go:noinline
func (l *List[T]) Push(v T) { l.items = append(l.items, v) }

//go:noinline
func (l List[T]) Len() int { return len(l.items) }

type Pair[K comparable, V any] struct {
\tKey K
\tVal V
}

//go:noinline
func Map[T, U any](xs []T, f func(T) U) []U {
\tout := make([]U, 0, len(xs))
\tfor _, x := range xs {
\t\tout = append(out, f(x))
\t}
\treturn out
}

type Server struct{ name string }

//go:noinline
func (s *Server) Handle(w string) string { return s.name + w }

//go:noinline
func (s Server) Name() string { return s.name }

func main() {
\tvar l List[int]
\tl.Push(1)
\tvar ls List[string]
\tls.Push("a")
\tp := []Pair[string, []int]{{"a", []int{1}}}
\ts := &Server{name: "x"}
\th := s.Handle
\tout := Map(os.Args, func(a string) int { return len(a) })
\tstrs := Map(p, func(q Pair[string, []int]) string { return strings.ToUpper(q.Key) })
\tgo func() { fmt.Println("bg") }()
\tdefer fmt.Println("done")
\tfmt.Println(l.Len(), ls.Len(), out, strs, h("y"), s.Name())
}
"""


def build_go_sample(*, workdir: Path) -> Path:
    """Build GO_SAMPLE_SOURCE (generics, methods, closures, method values) with the Go toolchain."""
    go = shutil.which("go") or ("/usr/bin/go" if Path("/usr/bin/go").exists() else None)
    if go is None:
        raise RuntimeError("go is not installed")
    src = workdir / "gosample"
    src.mkdir(parents=True, exist_ok=True)
    (src / "go.mod").write_text("module example.com/stellasample\n\ngo 1.18\n")
    (src / "main.go").write_text(GO_SAMPLE_SOURCE)
    env = dict(os.environ)
    env.update(
        GOCACHE=str(workdir / "gocache"), GOPATH=str(workdir / "gopath"), GOFLAGS="-mod=mod", GOPROXY="off"
    )
    out = workdir / "stella_gosample"
    proc = subprocess.run(
        [go, "build", "-o", str(out), "."], capture_output=True, text=True, check=False, cwd=src, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(f"go build failed: {proc.stderr.strip()[:1000]}")
    return out


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
