"""Build the programs the llvm-symbolizer comparison reads, in every shape they are shipped in.

Why this module exists: tests/integration/test_llvm_symbolizer_compare.py
compares our function IDs with llvm-symbolizer's functions on real binaries,
and checks that every copy of one build (symbol table, separate debug file,
DWARF only, Go's own table) gives the same IDs. It needs, built here:

- C++ (compare_cpp.cpp) ``-O2 -g`` (hot/cold split functions) and ``-O0 -g``
  (out-of-line inheriting constructors of ``std::unique_ptr``);
- Rust (stella_rs.rs) ``-C opt-level=2 -g``, legacy and v0 mangling;
- Go (stella_go.go): an executable linked internally and externally, and
  ``-buildmode=pie`` linked internally and externally;

and of each: the original; for C++ and Rust a ``strip``-ped copy with its
separate debug file (``.gnu_debuglink``) and a DWARF-only copy; for Go a
``strip``-ped copy (only Go's own function table is left). Outputs are cached
under ``.cache/compare`` per source, flags and toolchain, so only the first
run pays for the builds (tens of seconds on a busy 2-core machine).

Go's build cache is the one the other Go test programs use (tests/native/build.py
``GO_CACHE``): the first ``-buildmode=pie`` build compiles the standard library
for PIE (~9 s CPU), and tests/integration/test_go_pie.py's builds need the same
packages. The Go builds run one after another on one of the two build threads,
so the PIE standard library is compiled once, not by two cold builds at once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.native.build import GO_CACHE, find_rustc
from tests.native.debuglink import dwarf_only, split_binary

HERE = Path(__file__).resolve().parent
CACHE = HERE.parent.parent / ".cache" / "compare"


@dataclass(frozen=True)
class Recipe:
    name: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    source: Path = HERE
    variants: tuple[str, ...] = ()  # "debuglink", "dwarfonly", "stripped"


@dataclass
class Built:
    """name -> path of every program built; name -> why for those that could not be."""

    paths: dict[str, Path] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    original: dict[str, str] = field(default_factory=dict)  # variant name -> the original it was made from


def _tool_version(tool: str) -> str:
    try:
        flag = "version" if Path(tool).name == "go" else "--version"
        out = subprocess.run([tool, flag], capture_output=True, text=True, timeout=60)
        return out.stdout.splitlines()[0] if out.stdout else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _go() -> str | None:
    return shutil.which("go") or ("/usr/bin/go" if os.access("/usr/bin/go", os.X_OK) else None)


def recipes() -> tuple[list[Recipe], dict[str, str]]:
    """What to build (for the toolchains present) and why the others are missing."""
    out: list[Recipe] = []
    missing: dict[str, str] = {}
    cpp = HERE / "compare_cpp.cpp"
    if shutil.which("g++"):
        for opt in ("O2", "O0"):
            out.append(
                Recipe(
                    f"cpp_{opt}g",
                    ["g++", f"-{opt}", "-g", "-o", "{out}", str(cpp)],
                    source=cpp,
                    variants=("debuglink", "dwarfonly"),
                )
            )
    else:
        missing.update(cpp_O2g="no g++", cpp_O0g="no g++")
    if shutil.which("clang++"):  # DWARF 5 as clang writes it: indexed addresses and range lists
        out.append(
            Recipe(
                "cpp_clang_O2g",
                ["clang++", "-O2", "-g", "-o", "{out}", str(cpp)],
                source=cpp,
                variants=("debuglink", "dwarfonly"),
            )
        )
    else:
        missing["cpp_clang_O2g"] = "no clang++"
    rustc = find_rustc()
    rs = HERE / "stella_rs.rs"
    for mangling in ("legacy", "v0"):
        name = f"rs_{mangling}"
        if rustc is None:
            missing[name] = "no rustc"
            continue
        flags = ["-C", "opt-level=2", "-g"] + (
            ["-C", "symbol-mangling-version=v0"] if mangling == "v0" else []
        )
        out.append(
            Recipe(
                name, [rustc, *flags, "-o", "{out}", str(rs)], source=rs, variants=("debuglink", "dwarfonly")
            )
        )
    go = _go()
    g = HERE / "stella_go.go"
    go_builds = {
        "go_exe": (["build"], "0"),
        "go_exe_ext": (["build", "-ldflags=-linkmode=external"], "1"),
        "go_pie": (["build", "-buildmode=pie", "-ldflags=-linkmode=internal"], "0"),
        "go_pie_ext": (["build", "-buildmode=pie", "-ldflags=-linkmode=external"], "1"),
    }
    for name, (args, cgo) in go_builds.items():
        if go is None or (cgo == "1" and not shutil.which("gcc")):
            missing[name] = "no go toolchain" if go is None else "no gcc for external linking"
            continue
        env = {
            "CGO_ENABLED": cgo,
            "GOCACHE": str(GO_CACHE),
            "GOPATH": str(CACHE / "gopath"),
            "GOFLAGS": "",
            "GO111MODULE": "auto",
            "GOTOOLCHAIN": "local",
        }
        out.append(
            Recipe(name, [go, *args, "-o", "{out}", str(g)], env=env, source=g, variants=("stripped",))
        )
    return out, missing


def _key(r: Recipe) -> str:
    h = hashlib.sha256(r.source.read_bytes())
    h.update(" ".join(r.cmd[1:]).encode())
    h.update(_tool_version(r.cmd[0]).encode())
    h.update(repr(sorted((k, v) for k, v in r.env.items() if k == "CGO_ENABLED")).encode())
    return h.hexdigest()[:16]


def _build_one(r: Recipe) -> tuple[dict[str, Path], str]:
    d = CACHE / f"{r.name}-{_key(r)}"
    done = d / ".done"
    names = [r.name] + [f"{r.name}_{v}" for v in r.variants]
    if done.exists():
        return {n: d / n for n in names}, ""
    tmp = d.with_name(d.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cmd = [c.replace("{out}", str(tmp / r.name)) for c in r.cmd]
    p = subprocess.run(cmd, cwd=tmp, env={**os.environ, **r.env}, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        return {}, f"{' '.join(cmd)} failed ({p.returncode}): {(p.stdout + p.stderr)[-2000:]}"
    full = tmp / r.name
    for v in r.variants:
        if v == "debuglink":
            _, stripped = split_binary(full, tmp)
            stripped.rename(tmp / f"{r.name}_debuglink")
            # the link names "<name>.debug": it stays next to the stripped copy
        elif v == "dwarfonly":
            dwarf_only(full, tmp / f"{r.name}_dwarfonly")
        elif v == "stripped":
            subprocess.run(["strip", "-o", str(tmp / f"{r.name}_stripped"), str(full)], check=True)
    (tmp / ".done").write_text("ok\n")
    shutil.rmtree(d, ignore_errors=True)
    tmp.rename(d)
    return {n: d / n for n in names}, ""


def _build_chain(chain: list[Recipe]) -> list[tuple[dict[str, Path], str]]:
    return [_build_one(r) for r in chain]


def build_all() -> Built:
    """Build (or take from the cache) every comparison program; two builds at a time.

    The Go builds form one chain, started first: they share Go's build cache, and two
    cold ``-buildmode=pie`` builds at once would both compile the standard library.
    """
    rs, missing = recipes()
    built = Built(errors=dict(missing))
    go = [r for r in rs if "GOCACHE" in r.env]
    chains = ([go] if go else []) + [[r] for r in rs if "GOCACHE" not in r.env]
    GO_CACHE.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = [res for chain in pool.map(_build_chain, chains) for res in chain]
        order = [r for chain in chains for r in chain]
        for r, (paths, err) in zip(order, results, strict=True):
            if err:
                built.errors[r.name] = err
                for v in r.variants:
                    built.errors[f"{r.name}_{v}"] = f"original failed: {r.name}"
                continue
            built.paths.update(paths)
            for v in r.variants:
                built.original[f"{r.name}_{v}"] = r.name
    return built


def all_names() -> list[str]:
    """Every program name the comparison expects, whether or not its toolchain is here."""
    names = []
    for base, variants in (
        ("cpp_O2g", ("debuglink", "dwarfonly")),
        ("cpp_O0g", ("debuglink", "dwarfonly")),
        ("cpp_clang_O2g", ("debuglink", "dwarfonly")),
        ("rs_legacy", ("debuglink", "dwarfonly")),
        ("rs_v0", ("debuglink", "dwarfonly")),
        ("go_exe", ("stripped",)),
        ("go_exe_ext", ("stripped",)),
        ("go_pie", ("stripped",)),
        ("go_pie_ext", ("stripped",)),
    ):
        names.append(base)
        names += [f"{base}_{v}" for v in variants]
    return names
