"""Run the real ``stella-runtime`` CLI as a subprocess and read its JSON answer.

The answer tests ask the CLI what a user would (``evidence``, ``query observed``) over a store
they filled; each had its own copy of this runner. A traceback on stderr fails the test: the CLI
must answer with an exit code and a clear message, never a crash.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def cli_json(*args: str, timeout: float = 180) -> tuple[int, Any]:
    """Exit code and parsed stdout (None when empty) of ``stella-runtime <args>``."""
    r = subprocess.run([sys.executable, "-m", "stellaops_runtime.cli.main", *args], capture_output=True,
                       text=True, timeout=timeout, cwd=ROOT)  # fmt: skip
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout) if r.stdout.strip() else None
