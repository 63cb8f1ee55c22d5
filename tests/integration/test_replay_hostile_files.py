"""The replay server's loader against hostile export files (probe s31/h7).

``load_events`` promises that bad lines are reported with their line numbers, never
fatal. One line that was not UTF-8 failed the whole file ("cannot read ...: 'utf-8'
codec can't decode", the file was read as text), and one line nested deeper than
Python's recursion limit ended ``stella-runtime tetragon-replay`` with an internal
error. Each is now that line's error; every good line around it is served.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stellaops_runtime.replay.events import load_events

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "tetragon"
GOOD = (FIX / "events.jsonl").read_bytes().splitlines()[:4]
HOSTILE = [
    b'{"process_exec":{"process":{"binary":"/bin/\xff\xfe"}}}',  # not UTF-8
    b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # nested past any recursion limit
    b'{"process_exec":{"process":{"binary":"/bin/sh\\u0000x"}},"node_name":"\xc0\x80"}',  # overlong NUL
    b"\x00" * 64,
]


def _file(tmp_path: Path, gz: bool) -> tuple[Path, list[int]]:
    lines: list[bytes] = []
    bad: list[int] = []
    for i, h in enumerate(HOSTILE):
        lines.append(GOOD[i % len(GOOD)])
        lines.append(h)
        bad.append(len(lines))
    lines.append(GOOD[0])
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / ("hostile.jsonl.gz" if gz else "hostile.jsonl")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path, bad


@pytest.mark.parametrize("gz", [False, True], ids=["jsonl", "gz"])
def test_a_hostile_line_is_that_lines_error(tmp_path: Path, gz: bool) -> None:
    path, bad = _file(tmp_path, gz)
    loaded = load_events(path)
    assert [n for n, _ in loaded.errors] == bad
    assert len(loaded.events) == len(HOSTILE) + 1  # every good line around them
    assert "nested too deep" in loaded.errors[1][1]


def test_the_cli_serves_a_file_with_hostile_lines(tmp_path: Path) -> None:
    path, _ = _file(tmp_path, False)
    cli = [sys.executable, "-m", "stellaops_runtime.cli.main", "tetragon-replay"]
    proc = subprocess.Popen(
        [*cli, str(path), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # "listening on ..." once it serves, or EOF if it failed
        assert first.startswith("listening on"), (first, proc.poll())
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "internal error" not in err and "cannot read" not in err, err
    assert f"{path}:2: skipped" in err and f"{path}:4: skipped: nested too deep" in err, err


@pytest.mark.parametrize("name", ["export.jsonl", "export.jsonl.gz"])
def test_a_fifo_is_refused_at_once_not_waited_on(tmp_path: Path, name: str) -> None:
    """A FIFO nobody writes to made ``tetragon-replay`` wait in ``open`` for ever (brief H8)."""
    fifo = tmp_path / name
    os.mkfifo(fifo)
    cli = [sys.executable, "-m", "stellaops_runtime.cli.main", "tetragon-replay"]
    argv = [*cli, str(fifo), "--listen", "127.0.0.1:0"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r
    assert f"cannot read {fifo}" in r.stderr and "not a regular file (a FIFO)" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
