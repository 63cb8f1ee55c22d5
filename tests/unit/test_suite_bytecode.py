"""The suite caches compiled modules although the checkouts set ``PYTHONDONTWRITEBYTECODE=1``.

tests/conftest.py clears it before the workers start: each CLI or agent subprocess of the suite
would otherwise compile from source every package module it imports (0.26 s CPU of an agent's
0.6 s start), and each worker would rewrite every test module's asserts again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_a_subprocess_of_a_test_writes_the_compiled_module_it_imports(tmp_path: Path) -> None:
    (tmp_path / "compiled_once.py").write_text("VALUE = 1\n")
    r = subprocess.run([sys.executable, "-c", "import compiled_once"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert [p.name for p in (tmp_path / "__pycache__").glob("compiled_once.*.pyc")], r.stderr


def test_the_test_process_itself_writes_compiled_modules() -> None:
    assert "PYTHONDONTWRITEBYTECODE" not in os.environ
    assert sys.dont_write_bytecode is False


def test_a_same_size_rewrite_in_the_same_second_runs_the_old_module_unless_bytecode_is_off(
    tmp_path: Path,
) -> None:
    """The limit docs/development.md names: a ``.pyc`` records its source's mtime in whole seconds
    and its size, so a test that rewrites a module it already ran, at the same size within the same
    second, runs the old code; one that runs it with ``PYTHONDONTWRITEBYTECODE=1`` from the first
    run on (or writes a new file) runs the new. The second is pinned with ``os.utime``."""

    def run(src: Path, env: dict[str, str]) -> str:
        r = subprocess.run([sys.executable, "-c", "import edited; print(edited.VALUE)"], cwd=src.parent,
                           env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    for off, expected in ((False, "1"), (True, "2")):
        src = tmp_path / ("off" if off else "on") / "edited.py"
        src.parent.mkdir()
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1") if off else dict(os.environ)
        src.write_text("VALUE = 1\n")
        stamp = src.stat().st_mtime_ns
        assert run(src, env) == "1"
        src.write_text("VALUE = 2\n")
        os.utime(src, ns=(stamp, stamp))  # the rewrite lands in the same second
        assert run(src, env) == expected, f"PYTHONDONTWRITEBYTECODE={'1' if off else 'unset'}"
