"""Stops a test PostgreSQL cluster whose owner died without running its teardown.

A test process killed in the middle of a run (a SIGKILL, pytest-timeout's ``os._exit``, the OOM
killer, a crashed pytest-xdist worker) never runs tests/pg.py's teardown: its postmaster, reparented,
kept running and its cluster kept its ~70 MB of ``/dev/shm`` until someone removed them by hand.
:meth:`tests.pg.PgServer.setup` starts this file as a small process of its own session (a signal to
the owner's process group does not take it along), which waits for the owner's exit (a pidfd: no
polling, and a pid reused after the owner's exit is never mistaken for it), then stops the cluster
(``pg_ctl -m immediate``) and removes its directory. A normal teardown ends the watcher first.

Run as ``python pg_watch.py <owner pid> <cluster directory> <stop command as JSON>``; it imports
nothing of the repository.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys


def start(owner: int, directory: str, stop: list[str]) -> subprocess.Popen[bytes]:
    """The watcher of the cluster in ``directory``, owned by process ``owner`` (normally this one)."""
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), str(owner), directory, json.dumps(stop)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd="/",
    )


def wait_for_exit(owner: int) -> None:
    """Return once process ``owner`` has exited (at once if it already has)."""
    try:
        fd = os.pidfd_open(owner)
    except ProcessLookupError:
        return
    try:
        # The pid may have been reused between the owner's exit and pidfd_open: then the watcher,
        # started by the owner, has been reparented and its parent is no longer ``owner``.
        if os.getppid() == owner:
            select.select([fd], [], [])  # readable once the process has exited
    finally:
        os.close(fd)


def main(argv: list[str]) -> None:
    owner, directory, stop = int(argv[1]), argv[2], json.loads(argv[3])
    wait_for_exit(owner)
    if os.path.isdir(directory):
        subprocess.run(stop, capture_output=True, cwd="/", timeout=120, check=False)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv)
