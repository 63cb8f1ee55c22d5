"""tests/pg_watch.py: a test process killed before its teardown leaves no PostgreSQL cluster behind.

A child process sets up a real private cluster (tests/pg.py), tears one down normally (its watcher
ends with it), sets up another and is then SIGKILLed: the second cluster's postmaster stops and its
directory goes.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pg import find_bindir

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import sys
from tests.pg import make_server

first = make_server()
first.setup()
watcher = getattr(first, "_watcher", None)
first.teardown()
print(watcher is not None and watcher.poll() is not None, flush=True)
server = make_server()
server.setup()
print(server.port, server._tmp, getattr(getattr(server, "_watcher", None), "pid", 0), flush=True)
sys.stdin.read()  # until killed
"""


def _await_exit(pid: int, seconds: float) -> None:
    """Return once process ``pid`` (not a child of ours) has exited, or after ``seconds``."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [], seconds)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


@pytest.mark.skipif(find_bindir() is None or bool(os.environ.get("STELLA_TEST_PG_URL")), reason="local")
def test_a_killed_owner_s_cluster_is_stopped_and_its_directory_removed() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    tmp: Path | None = None
    postmaster = 0
    try:
        ended_with_teardown = child.stdout.readline().strip()
        port_text, tmp_text, watcher_text = child.stdout.readline().split()
        port, tmp, watcher = int(port_text), Path(tmp_text), int(watcher_text)
        postmaster = int((tmp / "data" / "postmaster.pid").read_text().split()[0])
        assert _alive(postmaster) and not _refused(port)
        child.kill()
        child.wait()
        _await_exit(postmaster, 30)
        assert not _alive(postmaster), "the killed owner's postmaster still runs"
        assert _refused(port)
        if watcher:
            _await_exit(watcher, 30)  # it removes the directory after the postmaster's stop, then exits
        assert not tmp.exists(), "the killed owner's cluster directory is still there"
        assert ended_with_teardown == "True", "a normal teardown left its watcher running"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if postmaster and _alive(postmaster):
            os.kill(postmaster, signal.SIGQUIT)  # immediate shutdown of what the test left
        if tmp is not None:
            if postmaster:
                _await_exit(postmaster, 10)
            subprocess.run(["rm", "-rf", str(tmp)], check=False)
