"""Make the kernel hand a freed pid to a process of the test's choosing (root only).

Writing ``N - 1`` to ``/proc/sys/kernel/ns_last_pid`` makes the next fork get
``N`` if it is free. A helper interpreter does that and forks a child without
exec (a worker forked by a server), retrying while other processes of the
machine take the pid first. Tests use it to reuse the pid of a process they
watched die, and compare what a cache or a resolver answers with what /proc
says of the newcomer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LAST_PID = Path("/proc/sys/kernel/ns_last_pid")

# Forks (no exec) until the child has pid argv[1], prints it (0 when it never did), then waits.
HELPER = r"""
import os, sys, time
want = int(sys.argv[1])
for _ in range(500):
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(want - 1))
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    if pid == want:
        print(pid, flush=True)
        os.waitpid(pid, 0)
        sys.exit(0)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
print(0, flush=True)
"""


def can_pick_pids() -> bool:
    return os.geteuid() == 0 and os.access(LAST_PID, os.W_OK)


def fork_into(pid: int) -> subprocess.Popen[str] | None:
    """A helper whose forked child holds ``pid`` (end it with ``release``); None when others took it."""
    helper = subprocess.Popen([sys.executable, "-c", HELPER, str(pid)], stdout=subprocess.PIPE, text=True)
    assert helper.stdout is not None
    if int(helper.stdout.readline() or 0) == pid:
        return helper
    release(helper, 0)
    return None


def release(helper: subprocess.Popen[str], pid: int) -> None:
    """Kill the helper's child ``pid`` (0: none) and wait for the helper."""
    if pid:
        os.kill(pid, 9)  # the helper reaps it and exits
    else:
        helper.kill()
    helper.wait(timeout=30)
