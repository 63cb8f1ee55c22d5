"""A command that crashes exits 2 ("error, no answer"), never 1, which the answering commands define as "no".

Python exits 1 on an uncaught exception, and ``query observed`` and ``evidence`` document exit 1
as "not observed": a script reading exit codes took every crash for a "no". The store here is
damaged the way a hand-edited or half-restored database can be (an observation window whose time
is not a time), so reading it raises deep inside the query; the real CLI as a subprocess must
then say so and exit 2. Before the fix each command below exited 1 with a bare traceback.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from stellaops_runtime.cli import exitcodes
from tests.integration.test_vex import IMG, ROOT, VULNS, store, vex_cli

FN = ("--image", IMG, "--function")
# (the command's words, its options after --store)
ASKS = {
    "query observed (a function that did not run)": (("query", "observed"), (*FN, "inflate")),
    "query observed (one that ran)": (("query", "observed"), (*FN, "crc32")),
    "evidence": (("evidence",), (*FN, "inflate", "--purl", "pkg:deb/debian/zlib1g")),
}


def _damaged(tmp: Path) -> str:
    url = store(tmp, range(5))
    db = sqlite3.connect(tmp / "hot.db")
    with db:
        # the message quotes the value: a secret in it must not reach the output in clear
        db.execute("UPDATE observation_windows SET window_start = 'not a time password=hunter2xyz ' || id")
    db.close()
    return url


@pytest.mark.parametrize("ask", list(ASKS))
def test_a_crash_is_an_error_not_an_answer(tmp_path: Path, ask: str) -> None:
    url = _damaged(tmp_path)
    words, options = ASKS[ask]
    argv = [*words, "--store", url, *options]
    r = subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", *argv],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == exitcodes.ERROR, (r.returncode, r.stderr[-2000:])
    assert "internal error, no answer: ValueError" in r.stderr
    assert "hunter2xyz" not in r.stderr and "Traceback" not in r.stderr and "line " in r.stderr  # frames
    assert r.stdout == ""  # nothing a reader could take for an answer


def test_vex_on_a_damaged_store_writes_no_document(tmp_path: Path) -> None:
    url = _damaged(tmp_path)
    out = tmp_path / "vex.json"
    r = vex_cli(tmp_path, url, VULNS, "--out", str(out), process=True)
    assert r.returncode == exitcodes.ERROR, (r.returncode, r.stderr[-2000:])
    assert "internal error, no answer" in r.stderr and not out.exists()
    assert "hunter2xyz" not in r.stderr
