"""A C test program for the native probes: compiled, installed where they target it, replaced, run, asked.

The native-probe tests (tests/integration/test_native_*.py, tests/e2e/test_agent_native_*.py)
each compiled a small program with gcc, put it at ``<tmp>/bin/app`` as a package would,
replaced it as dpkg does, ran it as a long-running process that calls its function when
asked, and skipped with detect.py's reason where BCC cannot run. One copy of each, here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.detect import Report, detect


def native_report(least: Posture, what: str) -> Report:
    """This machine's native-probe report; skips the test when ``least`` is out of reach, or without gcc."""
    rep = detect(mount_tracefs=True, compile_test=True, cache_dir=str(Path(".cache/native").resolve()))
    if rep.posture < least:
        pytest.skip(f"{what} cannot run here: {rep.missing}")
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed")
    return rep


def compile_c(d: Path, name: str, source: str) -> Path:
    """``source`` compiled with gcc -O1 to ``d/name``."""
    (d / f"{name}.c").write_text(source)
    out = d / name
    subprocess.run(["gcc", "-O1", "-o", str(out), str(d / f"{name}.c")], check=True)
    return out


def installed(tmp_path: Path, make: Callable[[Path, str], Path]) -> tuple[Path, Path]:
    """(the build directory, ``<tmp_path>/bin/app``): ``make(built, "v1")`` copied to the app's path."""
    built = tmp_path / "built"
    built.mkdir()
    app = tmp_path / "bin" / "app"
    app.parent.mkdir()
    shutil.copy2(make(built, "v1"), app)
    return built, app


def replace(path: Path, new: Path) -> None:
    """As a package manager does: the new file under a temporary name, renamed over the old."""
    tmp = path.with_name(path.name + ".dpkg-new")
    shutil.copy2(new, tmp)
    os.rename(tmp, path)


def serve(path: Path) -> subprocess.Popen[str]:
    """The program as a long-running process, calling the function when asked (``ask``)."""
    return subprocess.Popen([str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def ask(proc: subprocess.Popen[str], n: int) -> None:
    """``n`` calls of the served program's function; returns once it says they are done."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{n}\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "done\n"


def stop(proc: subprocess.Popen[str]) -> None:
    """The served program ends at the end of its input."""
    if proc.stdin is not None:
        proc.stdin.close()
    proc.wait(30)
