"""Build the native test programs once per test session, and run them.

The symbolizer tests need real binaries of each language and build flavour:
gcc with and without ``-g`` (plus a stripped copy and a copy with DWARF but no
``.symtab``), g++, rustc with legacy and with v0 symbol mangling, and Go with
and without ``-ldflags="-s -w"`` (plus a copy whose section header table is
gone, as ``sstrip`` leaves it). Everything is built in parallel into one tmp
dir the first time a test asks, and memoized for the rest of the session.
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
