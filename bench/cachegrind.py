"""Machine instructions a command executes, counted by valgrind's cachegrind.

Why: the A/B benchmarks (pipeline_ab.py, symbolize_ab.py) compare code by
instruction counts as well as by time, because counts do not move with the
machine's load; they all run a child under cachegrind and read its
``I refs`` line. ``valgrind`` must be installed.
"""

from __future__ import annotations

import subprocess


def instructions(cmd: list[str], env: dict[str, str]) -> int:
    """The instructions ``cmd`` executes (no cache simulation, no output file)."""
    proc = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", *cmd],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    refs = [ln for ln in proc.stderr.splitlines() if "I   refs" in ln or "I refs" in ln]
    return int(refs[-1].split(":")[1].replace(",", "").split()[0])
