"""A reused pid is never given the facts of the dead process that held it (native/procinfo.py).

The native probes see exec but neither fork nor exit. A process forked
without an exec (a server's worker) that gets the pid of a process gone was
given that process's binary, exec time (so its exec id) and mappings, its
stack frames resolved against another program's files. The test makes the
reuse happen for real: the kernel is told which pid to hand out next
(``/proc/sys/kernel/ns_last_pid``, root only) and a helper forks a child,
without exec, into the dead process's pid. The truth is what /proc says of
the child.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stellaops_runtime.native.procinfo import ProcCache
from tests import pid_reuse


@pytest.fixture
def can_pick_pids() -> None:
    if not pid_reuse.can_pick_pids():
        pytest.skip("choosing the next pid needs root (/proc/sys/kernel/ns_last_pid)")


def _first_mapping(pid: int, needle: str) -> tuple[int, str]:
    """(start address, file) of the first mapping of ``pid`` whose file contains ``needle``
    (waiting for it: Popen returns while the kernel may still be mapping the new program)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 6 and needle in parts[-1]:
                return int(parts[0].split("-")[0], 16), parts[-1]
        time.sleep(0.01)
    raise AssertionError(f"no mapping of {needle} in {pid}")


def _learn_then_reuse() -> tuple[ProcCache, int, int, subprocess.Popen[str]] | None:
    """A cache that learned ``sleep`` (exec seen, frames read) at pid P, then a helper whose forked
    child holds P: (cache, P, the time of sleep's record, the helper); None when another process
    took P first."""
    sleeper = subprocess.Popen(["sleep", "60"])
    pid = sleeper.pid
    cache = ProcCache()
    exec_at = time.monotonic_ns()  # after the exec: Popen returns once it succeeded
    cache.exec_seen(pid, "/usr/bin/sleep", exec_at)
    start, path = _first_mapping(pid, "sleep")
    assert cache.binary(pid, exec_at) == ("/usr/bin/sleep", exec_at)
    assert cache.frames(pid, [start + 0x10], exec_at)[0][2] == path
    sleeper.kill()
    sleeper.wait()
    time.sleep(0.05)  # /proc gives start times in 10 ms ticks: let the child start ticks after sleep
    helper = pid_reuse.fork_into(pid)
    return None if helper is None else (cache, pid, exec_at, helper)


@pytest.fixture
def reused(can_pick_pids: None) -> Iterator[tuple[ProcCache, int, int, int]]:
    """(cache, P, the time of sleep's record, the time of the forked child's record)."""
    for _ in range(5):  # other processes of the machine may take the pid first
        got = _learn_then_reuse()
        if got is not None:
            break
    else:
        pytest.skip("the freed pid was taken by other processes five times in a row")
    cache, pid, exec_at, helper = got
    try:
        child_at = time.monotonic_ns()
        cache.begin_batch()  # the source's next poll
        yield cache, pid, exec_at, child_at
    finally:
        pid_reuse.release(helper, pid)


def test_a_forked_process_in_a_dead_ones_pid_gets_its_own_binary_and_frames(
    reused: tuple[ProcCache, int, int, int],
) -> None:
    cache, pid, _, child_at = reused
    truth = os.readlink(f"/proc/{pid}/exe")
    assert cache.binary(pid, child_at) == (truth, 0)  # not /usr/bin/sleep, not sleep's exec id
    start, path = _first_mapping(pid, os.path.basename(truth))
    assert cache.frames(pid, [start + 0x10], child_at)[0][2] == path
    assert cache.stats.pid_reused == 1


def test_a_record_of_the_dead_process_read_after_the_reuse_gets_nothing_from_proc(
    reused: tuple[ProcCache, int, int, int],
) -> None:
    cache, pid, exec_at, child_at = reused
    truth = os.readlink(f"/proc/{pid}/exe")
    # sleep's record, still in the buffer when the child took its pid: no facts of the child
    assert cache.binary(pid, exec_at) == ("", 0)
    assert cache.frames(pid, [0x1000], exec_at) == [(0x1000, 0, "")]
    assert cache.stats.stale_records == 1
    assert cache.binary(pid, child_at)[0] == truth  # the child's own records are its own
