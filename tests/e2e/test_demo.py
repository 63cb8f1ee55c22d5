"""The README's main command, ``make demo`` (scripts/demo.sh), run as a user runs it.

It must store hot functions with package URLs and print them, run every
step whatever a query answers, and say true things about this machine's
libraries (which of them carry the recorded build-ids).
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess

import pytest

from stellaops_runtime.canonical.elflayout import file_build_id
from tests.e2e import harness as h

pytestmark = pytest.mark.e2e

IMAGE = "sha256:69dc96bd16b8a1c4ad4c601197ed0136bf4027e0717f3f048b4a268d558539db"  # the demo's image


def test_demo_stores_and_prints_hot_functions_with_purls(tmp_path) -> None:
    db = tmp_path / "demo.db"
    env = dict(
        os.environ,
        STELLA_DEMO_GRPC=str(h.free_port()),
        STELLA_DEMO_METRICS=str(h.free_port()),
        STELLA_DEMO_DB=str(db),
    )
    res = subprocess.run(
        ["bash", "scripts/demo.sh"], cwd=h.ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "Traceback" not in out
    assert re.search(r"demo: OK: \d+ hot functions with a package URL", out), out
    # Every step ran and printed its answer.
    assert "-> observed" in out
    assert "crc32" in out and "pkg:deb/debian/zlib1g@" in out
    # The agent stored exactly what the stream holds (nothing lost at shutdown).
    con = sqlite3.connect(db)
    (events,) = con.execute("SELECT SUM(event_count) FROM observation_windows").fetchone()
    (crc32,) = con.execute(
        "SELECT invocation_count FROM hot_symbols WHERE image_digest = ? AND function_name = 'crc32' "
        "AND evidence_kind = 'invoked'",
        (IMAGE,),
    ).fetchone()
    con.close()
    assert events == h.EXPECTED["events"]
    assert crc32 == h.EXPECTED["uprobe_counts"][f"{IMAGE}|/usr/lib/x86_64-linux-gnu/libz.so.1|crc32"] == 110
    # What it says about each library is what this machine has.
    for module, recorded in h.EXPECTED["build_ids"].items():
        with open(module, "rb") as f:
            here = file_build_id(f)[0]
        line = next(line for line in out.splitlines() if line.startswith(f"{module}: "))
        if here == recorded:
            assert f"has the recorded build-id {recorded}" in line, line
        else:
            assert f"recorded build-id {recorded}, this machine's is {here}" in line, line


def test_demo_fails_when_the_agent_cannot_store_anything(tmp_path) -> None:
    """A demo that stored nothing must not look like a success."""
    env = dict(
        os.environ,
        STELLA_DEMO_GRPC=str(h.free_port()),
        STELLA_DEMO_METRICS=str(h.free_port()),
        STELLA_DEMO_DB=str(tmp_path / "no-such-dir" / "demo.db"),
    )
    res = subprocess.run(
        ["bash", "scripts/demo.sh"], cwd=h.ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "demo: OK" not in out
