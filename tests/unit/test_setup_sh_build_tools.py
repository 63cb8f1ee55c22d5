"""scripts/setup.sh installs what the C extensions' build needs and builds them once it is there.

setup.py's extensions are optional: a build that cannot find a header is skipped without a word
and the Python path is used. _kallsyms (the kernel symbol table's load) needs zlib's headers, which
Debian's python3-dev brings but a Python of pyenv's (its own Python.h) does not: such a machine
built without it, and ``setup.sh --server`` (which checked only Python.h) never said so. It now
asks the compiler for zlib.h and installs zlib1g-dev when it is missing, and the install's stamp
covers what the build needs, so an install made without a header is made again, once, when the
header comes; with nothing changed it does nothing (idempotent, no network).

The script runs for real on a copy of the files its stamp reads, with apt-get, id and the
venv's python replaced by scripts that record their arguments.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_STAMPED = [
    "pyproject.toml",
    "setup.py",
    "scripts/setup.sh",
    *(f"operator/stellaops_runtime/canonical/{n}" for n in ("_symindex.c", "_kallsyms.c")),
    *(f"operator/stellaops_runtime/canonical/{n}" for n in ("_kallsyms_table.c", "_kallsyms.h")),
]


def _script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    for name in _STAMPED:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, repo / name)
    log = tmp_path / "log"
    _script(tmp_path / "bin" / "apt-get", f'echo "apt-get $*" >> {log}\n')
    _script(tmp_path / "bin" / "id", "echo 0\n")  # root: apt-get (the stub) may run
    _script(tmp_path / "bin" / "no-zlib-cc", "exit 1\n")  # a compiler that finds no zlib.h
    _script(repo / ".venv" / "bin" / "python", f'echo "python $*" >> {log}\n')
    return repo


def _run(repo: Path, cc: str) -> list[str]:
    log = repo.parent / "log"
    log.unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{repo.parent / 'bin'}:{os.environ['PATH']}", "CC": cc}
    res = subprocess.run(
        ["bash", str(repo / "scripts" / "setup.sh"), "--server"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return log.read_text().splitlines() if log.exists() else []


def _installs(lines: list[str]) -> list[str]:
    return [w for line in lines if line.startswith("apt-get install") for w in line.split()]


def _pip_installed(lines: list[str]) -> bool:
    return "python -m pip install -q -e .[test]" in lines


def test_zlib_headers_missing_are_installed_and_the_build_made_again_once_they_are(checkout: Path) -> None:
    no_zlib = str(checkout.parent / "bin" / "no-zlib-cc")
    first = _run(checkout, no_zlib)
    assert "zlib1g-dev" in _installs(first) and _pip_installed(first)
    again = _run(checkout, no_zlib)  # apt-get (a stub) did not bring it: asked again, no new install
    assert "zlib1g-dev" in _installs(again) and not _pip_installed(again)
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler here to find zlib.h")
    probe = subprocess.run(
        [compiler, "-E", "-x", "c", "-"], input=b"#include <zlib.h>\n", capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip("zlib's headers are not installed here")
    found = _run(checkout, compiler)  # the header came: the extensions are built again, once
    assert "zlib1g-dev" not in _installs(found) and _pip_installed(found)
    assert not _pip_installed(_run(checkout, compiler))
