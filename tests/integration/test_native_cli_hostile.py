"""``stella-runtime probes run`` prints a hostile file name escaped, never raw.

Any user of the node chooses the names of the files it executes, and the
text output prints each exec's binary. A newline in the name forged a line
of its own (an event that did not happen) and an escape sequence reached the
operator's terminal. The CLI runs as a subprocess while the test executes a
copy of ``/bin/true`` under such a name; the truth is that name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.detect import detect

pytestmark = pytest.mark.bpf

CACHE = str(Path(".cache/native").resolve())
FORGED = "exec pid=1 tid=1 binary=forged forged"  # no "/": one file name
NAME = f"evil\n{FORGED}\x1b[2J\x1b]0;owned\x07"


def test_an_executed_file_name_with_controls_is_one_escaped_line(tmp_path: Path) -> None:
    rep = detect(mount_tracefs=True, compile_test=True, cache_dir=CACHE)
    if rep.posture < Posture.PASSIVE:
        pytest.skip(f"native probes give {rep.posture} here: {rep.missing}")
    evil = tmp_path / NAME
    shutil.copy("/bin/true", evil)
    # --seconds counts from the attach (native/session.py): the file is executed every 50 ms until the end
    cli = subprocess.Popen(
        [sys.executable, "-m", "stellaops_runtime.cli.main", "probes", "run", "--seconds", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, STELLA_CACHE_DIR=CACHE),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while cli.poll() is None:  # exec the file until the run ends (the probes attach meanwhile)
        assert time.monotonic() < deadline, "probes run did not end"
        subprocess.run([str(evil)], check=True)
        time.sleep(0.05)
    out, err = cli.communicate()
    assert cli.returncode == 0, err
    assert [c for c in out if not c.isprintable() and c != "\n"] == []
    escaped = str(tmp_path) + "/evil\\n" + FORGED + "\\x1b[2J\\x1b]0;owned\\x07"
    mine = [line for line in out.splitlines() if escaped in line]
    assert mine and all(line.startswith("exec pid=") for line in mine)
    assert not any(line.startswith(FORGED) for line in out.splitlines())  # no forged event line
