"""Small programs built from source in tests and benchmarks: C++, Rust and Go samples, and their builders.

Why this module exists: split from canonical/corpus.py (which re-exports
everything here), it holds the sample programs themselves, so that the
demangling corpora, the DWARF and llvm-symbolizer comparisons and the
benchmarks all test names that real compilers emitted for the same source.
Each builder compiles into a caller-given directory and raises RuntimeError,
with the compiler's message, when the toolchain is missing or fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = [
    "CXX_SAMPLE_SOURCE",
    "GO_SAMPLE_SOURCE",
    "RUST_SAMPLE_SOURCE",
    "build_cxx_sample",
    "build_go_sample",
    "build_rust_sample",
    "find_tool",
]

CARGO_BIN = Path("/root/.cargo/bin")


def find_tool(name: str) -> str | None:
    """A tool from PATH, or from rustup's ~/.cargo/bin where the Rust toolchain lives here."""
    found = shutil.which(name)
    if found:
        return found
    candidate = CARGO_BIN / name
    return str(candidate) if candidate.exists() else None


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
