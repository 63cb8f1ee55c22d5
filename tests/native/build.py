"""Build the native test programs once per test session, and run them.

The symbolizer tests need real binaries of each language and build flavour:
gcc with and without ``-g`` (plus a stripped copy and a copy with DWARF but no
``.symtab``), g++, rustc with legacy and with v0 symbol mangling, and Go with
and without ``-ldflags="-s -w"`` (plus a copy whose section header table is
gone, as ``sstrip`` leaves it). Everything is built in parallel into one tmp
dir the first time a test asks, and memoized for the rest of the session.
:func:`build_go_variants` builds the Go program as distributions ship it
(position-independent, internally and externally linked, stripped) with
Go's build cache kept under ``.cache/go-build``.
A toolchain that is missing makes only its own programs unavailable; tests
that need them skip with the reason.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent

_lock = threading.Lock()
_built: Programs | None = None


@dataclass
class Programs:
    dir: Path
    paths: dict[str, Path] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> Path:
        import pytest

        if name not in self.paths:
            pytest.skip(f"test program {name} unavailable: {self.errors.get(name, 'not built')}")
        return self.paths[name]


def find_rustc() -> str | None:
    return shutil.which("rustc") or (
        "/root/.cargo/bin/rustc" if os.access("/root/.cargo/bin/rustc", os.X_OK) else None
    )


def _commands(out: Path) -> dict[str, list[str]]:
    c = str(HERE / "stella_c.c")
    cmds: dict[str, list[str]] = {}
    if shutil.which("gcc"):
        cmds["c_dbg"] = ["gcc", "-O0", "-g", "-o", str(out / "c_dbg"), c]
        cmds["c_nodbg"] = ["gcc", "-O0", "-o", str(out / "c_nodbg"), c]
    if shutil.which("g++"):
        cmds["cpp"] = ["g++", "-O0", "-o", str(out / "cpp"), str(HERE / "stella_cpp.cpp")]
    rustc = find_rustc()
    if rustc:
        rs = str(HERE / "stella_rs.rs")
        # rustc's default is legacy mangling (naming it explicitly needs -Z unstable-options).
        cmds["rs_legacy"] = [rustc, "-o", str(out / "rs_legacy"), rs]
        cmds["rs_v0"] = [rustc, "-C", "symbol-mangling-version=v0", "-o", str(out / "rs_v0"), rs]
    go = shutil.which("go") or ("/usr/bin/go" if os.access("/usr/bin/go", os.X_OK) else None)
    if go:
        g = str(HERE / "stella_go.go")
        cmds["go_full"] = [go, "build", "-o", str(out / "go_full"), g]
        cmds["go_stripped"] = [go, "build", "-ldflags=-s -w", "-o", str(out / "go_stripped"), g]
    return cmds


def _env(out: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GOCACHE=str(out / "gocache"),
        GOPATH=str(out / "gopath"),
        GOFLAGS="",
        GO111MODULE="auto",
        CGO_ENABLED="0",
        GOTOOLCHAIN="local",
    )
    return env


def drop_section_headers(src: Path, dst: Path) -> None:
    """Copy an ELF64 file with e_shoff/e_shnum/e_shstrndx zeroed (what ``sstrip`` leaves)."""
    data = bytearray(src.read_bytes())
    struct.pack_into("<Q", data, 0x28, 0)  # e_shoff
    struct.pack_into("<HHH", data, 0x3A, 0, 0, 0)  # e_shentsize, e_shnum, e_shstrndx
    dst.write_bytes(bytes(data))
    dst.chmod(0o755)


def build_programs(out: Path) -> Programs:
    """Build every program whose toolchain exists (in parallel); memoized per session."""
    global _built
    with _lock:
        if _built is not None:
            return _built
        out.mkdir(parents=True, exist_ok=True)
        progs = Programs(out)
        env = _env(out)
        procs = {
            name: subprocess.Popen(
                cmd, cwd=out, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            for name, cmd in _commands(out).items()
        }
        for name, p in procs.items():
            output, _ = p.communicate(timeout=300)
            if p.returncode == 0:
                progs.paths[name] = out / name
            else:
                progs.errors[name] = f"build failed ({p.returncode}): {output[-2000:]}"
        if "c_nodbg" in progs.paths and shutil.which("strip"):
            shutil.copy(progs.paths["c_nodbg"], out / "c_stripped")
            subprocess.run(["strip", str(out / "c_stripped")], check=True)
            progs.paths["c_stripped"] = out / "c_stripped"
        if "c_dbg" in progs.paths and shutil.which("strip"):
            # DWARF but no .symtab (objcopy -R .symtab does not drop it from an executable).
            subprocess.run(
                [
                    "strip",
                    "--strip-all",
                    "--wildcard",
                    "--keep-section=.debug_*",
                    "-o",
                    str(out / "c_dwarfonly"),
                    str(progs.paths["c_dbg"]),
                ],
                check=True,
            )
            progs.paths["c_dwarfonly"] = out / "c_dwarfonly"
        if "go_stripped" in progs.paths:
            drop_section_headers(progs.paths["go_stripped"], out / "go_noshdr")
            progs.paths["go_noshdr"] = out / "go_noshdr"
        _built = progs
        return progs


# -- Go position-independent builds (issue 12) --------------------------------------------

REPO = HERE.parent.parent
GO_CACHE = REPO / ".cache" / "go-build"  # Go's build cache: safe to share, makes rebuilds ~1 s
_go_lock = threading.Lock()
_go_built: dict[Path, Programs] = {}


def find_go() -> str | None:
    return shutil.which("go") or ("/usr/bin/go" if os.access("/usr/bin/go", os.X_OK) else None)


def _go_variant_commands(go: str, out: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    g = str(HERE / "stella_go.go")
    pie = [go, "build", "-buildmode=pie"]
    cmds = {
        "go_exe": ([go, "build", "-o", str(out / "go_exe"), g], {"CGO_ENABLED": "0"}),
        "go_pie_int": (
            [*pie, "-ldflags=-linkmode=internal", "-o", str(out / "go_pie_int"), g],
            {"CGO_ENABLED": "0"},
        ),
        "gosym_ref": ([go, "build", "-o", str(out / "gosym_ref"), str(HERE / "gosym_ref.go")], {}),
    }
    if shutil.which("gcc"):  # external linking runs the C toolchain (and links runtime/cgo)
        cmds["go_pie_ext"] = (
            [*pie, "-ldflags=-linkmode=external", "-o", str(out / "go_pie_ext"), g],
            {"CGO_ENABLED": "1"},
        )
    return cmds


def build_go_variants(out: Path) -> Programs:
    """Go builds of stella_go.go as distributions ship them; memoized per output dir.

    ``go_exe`` (ordinary executable), ``go_pie_int`` / ``go_pie_ext``
    (``-buildmode=pie``, internally / externally linked), each with a ``strip``-ped
    copy (``<name>_stripped``) and a stripped copy without section headers
    (``<name>_noshdr``); ``go_exe_dwarfonly`` (DWARF but no ``.symtab``); plus
    ``gosym_ref`` (gosym_ref.go, the debug/gosym reference).
    """
    with _go_lock:
        if out in _go_built:
            return _go_built[out]
        out.mkdir(parents=True, exist_ok=True)
        progs = Programs(out)
        go = find_go()
        if go is None:
            progs.errors = {n: "no go toolchain" for n in ("go_exe", "go_pie_int", "go_pie_ext", "gosym_ref")}
            _go_built[out] = progs
            return progs
        GO_CACHE.mkdir(parents=True, exist_ok=True)
        cmds = _go_variant_commands(go, out)
        # Two processes compiling one package at once both compile it (the cache is only read
        # before each compile), so builds of one standard-library flavour run one after another:
        # the executables (gosym_ref reuses go_exe's packages), and the PIEs (go_pie_ext reuses
        # go_pie_int's); the two chains run side by side.
        chains = [["go_exe", "gosym_ref"], ["go_pie_int", "go_pie_ext"]]

        failures: list[BaseException] = []

        def run_chain(names: list[str]) -> None:
            try:
                build_chain(names)
            except BaseException as e:  # re-raised below, as a build that raised did before
                failures.append(e)

        def build_chain(names: list[str]) -> None:
            for name in names:
                if name not in cmds:
                    continue
                cmd, extra = cmds[name]
                env = {**_env(out), "GOCACHE": str(GO_CACHE), **extra}
                p = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=600)
                if p.returncode == 0:
                    progs.paths[name] = out / name
                else:
                    output = p.stdout + p.stderr
                    progs.errors[name] = f"build failed ({p.returncode}): {output[-2000:]}"

        threads = [threading.Thread(target=run_chain, args=(c,)) for c in chains]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            raise failures[0]
        for name in ("go_exe", "go_pie_int", "go_pie_ext"):
            if name not in progs.paths:
                continue
            if not shutil.which("strip"):
                progs.errors[f"{name}_stripped"] = "no strip"
                continue
            stripped = out / f"{name}_stripped"
            subprocess.run(["strip", "-o", str(stripped), str(progs.paths[name])], check=True)
            progs.paths[stripped.name] = stripped
            drop_section_headers(stripped, out / f"{name}_noshdr")
            progs.paths[f"{name}_noshdr"] = out / f"{name}_noshdr"
        if "go_exe" in progs.paths and shutil.which("strip"):  # DWARF, no .symtab
            dwarf = out / "go_exe_dwarfonly"
            keep = ["--keep-section=.debug_*", "--keep-section=.zdebug_*"]
            subprocess.run(
                ["strip", "--strip-all", "--wildcard", *keep, "-o", str(dwarf), str(progs.paths["go_exe"])],
                check=True,
            )
            progs.paths[dwarf.name] = dwarf
        _go_built[out] = progs
        return progs


# -- optimised builds with DWARF, and their DWARF-only copies (issue 12) -------------------

_dwarf_lock = threading.Lock()
_dwarf_built: dict[Path, Programs] = {}


def dwarf_only_copy(src: Path, dst: Path) -> None:
    """``dst``: ``src`` with every symbol table and non-allocated section gone but ``.debug_*``.

    ``strip --strip-all`` drops ``.symtab``/``.strtab`` (``objcopy -R .symtab`` does not
    remove it from an executable); ``--keep-section`` keeps the DWARF. ``.dynsym`` stays, as
    in any stripped file, so the symbolizer reads DWARF for what ``.dynsym`` does not cover.
    """
    subprocess.run(
        ["strip", "--strip-all", "--wildcard", "--keep-section=.debug_*", "-o", str(dst), str(src)],
        check=True,
    )


def build_dwarf_variants(out: Path) -> Programs:
    """``cpp_o2g`` (g++ -O2 -g stella_cpp.cpp: GCC's ``.cold`` parts), ``c_o2g`` (gcc -O2 -g
    stella_split.c: a ``.part.0`` clone beside its origin) and ``rs_v0_g`` (rustc -O -g, v0
    mangling, with std's own DWARF), each with a ``<name>_dwarfonly`` copy; memoized per dir."""
    with _dwarf_lock:
        if out in _dwarf_built:
            return _dwarf_built[out]
        out.mkdir(parents=True, exist_ok=True)
        progs = Programs(out)
        cmds: dict[str, list[str]] = {}
        if shutil.which("gcc"):
            cmds["c_o2g"] = ["gcc", "-O2", "-g", "-o", str(out / "c_o2g"), str(HERE / "stella_split.c")]
        else:
            progs.errors["c_o2g"] = "no gcc"
        if shutil.which("g++"):
            cmds["cpp_o2g"] = ["g++", "-O2", "-g", "-o", str(out / "cpp_o2g"), str(HERE / "stella_cpp.cpp")]
        else:
            progs.errors["cpp_o2g"] = "no g++"
        rustc = find_rustc()
        if rustc:
            rs = str(HERE / "stella_rs.rs")
            v0 = ["-C", "symbol-mangling-version=v0"]
            cmds["rs_v0_g"] = [rustc, "-O", "-g", *v0, "-o", str(out / "rs_v0_g"), rs]
        else:
            progs.errors["rs_v0_g"] = "no rustc"
        procs = {
            name: subprocess.Popen(cmd, cwd=out, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for name, cmd in cmds.items()
        }
        for name, p in procs.items():
            output, _ = p.communicate(timeout=600)
            if p.returncode != 0:
                progs.errors[name] = f"build failed ({p.returncode}): {output[-2000:]}"
                continue
            progs.paths[name] = out / name
            if shutil.which("strip"):
                dwarf_only_copy(out / name, out / f"{name}_dwarfonly")
                progs.paths[f"{name}_dwarfonly"] = out / f"{name}_dwarfonly"
            else:
                progs.errors[f"{name}_dwarfonly"] = "no strip"
        _dwarf_built[out] = progs
        return progs


@dataclass
class Running:
    """A started test program: its process and the values it printed before "ready"."""

    proc: subprocess.Popen[str]
    lines: list[str]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def address(self, name: str) -> int:
        return int(self.fields(name)[1], 16)

    def fields(self, name: str) -> list[str]:
        for line in self.lines:
            parts = line.split()
            if parts and parts[0] == name:
                return parts
        raise KeyError(f"program printed no {name!r} line: {self.lines}")


@contextmanager
def running(path: Path) -> Iterator[Running]:
    """Start ``path``, wait for its "ready" line; on exit close its stdin and reap it."""
    proc = subprocess.Popen(
        [str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            if line.strip() == "ready":
                break
            lines.append(line.rstrip("\n"))
        else:
            raise RuntimeError(
                f"{path} exited before it was ready: {lines} {proc.stderr.read() if proc.stderr else ''}"
            )
        yield Running(proc, lines)
    finally:
        if proc.poll() is None:
            proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
