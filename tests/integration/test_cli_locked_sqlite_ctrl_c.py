"""Ctrl-C ends a question waiting for a SQLite store another process holds locked (exit 130, at once).

Before, the question sat in SQLite's busy wait (``store.statementTimeout``,
30 s), where neither the SIGINT handler nor ``sqlite3.Connection.interrupt``
reaches: exit 130 came about 30 s after the start. The question now runs on a
daemon thread (store/threads.py ``call_interruptibly``) and the main thread
waits for it, so the signal takes effect at once. A question writes nothing:
the store is left as it was.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from stellaops_runtime.store.engine import open_store

ROOT = Path(__file__).resolve().parents[2]


def _has_open(pid: int, path: Path) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def test_ctrl_c_on_a_question_at_a_locked_sqlite_store_exits_130_at_once(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    open_store(f"sqlite:///{db}", migrate=True).close()
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # a writer holds the store: every reader waits
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stellaops_runtime.cli.main", "query", "images", "--store", f"sqlite:///{db}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not _has_open(proc.pid, db) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.5)  # inside the busy wait (the file is open before the first read)
        proc.send_signal(signal.SIGINT)
        # SQLite's busy timeout is 30 s: an exit well before it is Ctrl-C taking effect.
        out, err = proc.communicate(timeout=15)
    finally:
        lock.rollback()
        lock.close()
    assert proc.returncode == 130, (proc.returncode, out, err)
    assert "Traceback" not in err, err
