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
