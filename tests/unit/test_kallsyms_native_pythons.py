"""canonical/_kallsyms.c builds on every Python the package supports and hashes names as it does.

The extension hashes each name as Python's ``hash(bytes)`` (the table's name index is looked up
with ``hash`` later); the C API for it moved: ``_Py_HashBytes`` up to 3.12, internal in 3.13,
``Py_HashBuffer`` from 3.14. setup.py's extensions are optional, so a source that does not compile
on one of them (Python 3.13 called ``Py_HashBuffer``, which it does not have) installs without a
word, and the kernel symbol table then loads in Python. Here the sources are compiled with
setup.py's flags against each other Python found (``python3.12``, ``python3.13``, ``python3.14``
on PATH or installed by pyenv) and the module's hashes are compared with that interpreter's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CANONICAL = ROOT / "operator" / "stellaops_runtime" / "canonical"
_FLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"]  # setup.py's
_CHECK = """
import os, sys
sys.path.insert(0, sys.argv[1])
import _kallsyms
path = os.path.join(sys.argv[1], "kallsyms")
with open(path, "wb") as f:
    some = [b"", b"a", b"ab", b"_x", b"caf\\xc3\\xa9", b"bad\\xe9", b"x" * 300]
    names = some + [b"fn_%d" % i for i in range(500)]
    f.write(b"".join(b"ffffffff81%06x t %s\\n" % (i, n) for i, n in enumerate(names)))
fd = os.open(path, os.O_RDONLY)
addrs, names, off, hashes, mods, fields = _kallsyms.rows(fd)
got = memoryview(hashes).cast("I").tolist()
want = [hash(n) & 0xFFFFFFFF for n in names.split(b"\\n")[:-1]]
print("same" if got == want and len(want) == 506 else "differ", len(want))
"""


def _pythons() -> list[str]:
    """One interpreter of each other minor version: on PATH, else installed by pyenv."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = []
    for minor in (12, 13, 14):
        if sys.version_info[:2] == (3, minor):
            continue
        candidates = [
            shutil.which(f"python3.{minor}"),
            *sorted(map(str, pyenv.glob(f"3.{minor}.*/bin/python3.{minor}"))),
        ]
        runnable = [
            c for c in candidates if c and subprocess.run([c, "-c", ""], capture_output=True).returncode == 0
        ]
        found += runnable[:1]
    return found


@pytest.mark.parametrize("python", _pythons() or [pytest.param(None, marks=pytest.mark.skip("none"))])
def test_the_extension_builds_and_hashes_as_python_does(python: str, tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("no C compiler")
    info = subprocess.run(
        [
            python,
            "-c",
            "import sysconfig as s; print(s.get_path('include')); print(s.get_config_var('EXT_SUFFIX'))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if info.returncode != 0:
        pytest.skip(f"{python} does not run: {info.stderr[-300:]}")
    include, suffix = info.stdout.split()
    if not (Path(include) / "Python.h").exists():
        pytest.skip(f"no Python.h for {python}")
    sources = [str(CANONICAL / "_kallsyms.c"), str(CANONICAL / "_kallsyms_table.c")]
    out = tmp_path / f"_kallsyms{suffix}"
    build = subprocess.run(
        ["gcc", "-shared", "-fPIC", *_FLAGS, f"-I{include}", *sources, "-lz", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    res = subprocess.run([python, "-c", _CHECK, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == ["same", "506"]
