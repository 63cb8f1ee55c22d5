"""``probes run --syscall`` traces the syscalls Linux added after 6.1, on the real kernel.

Before, ``stella-runtime probes run --syscall cachestat`` on the project's
6.18 kernel exited 2 ("native.syscalls: unknown on x86_64: cachestat"): the
table was Linux 6.1's. Here a process calls ``cachestat`` (451) and
``mseal`` (462) by number in a loop while the real CLI runs the probes; their
events carry the kernel's names (``__x64_sys_cachestat``, ``__x64_sys_mseal``)
under that process's pid, and nothing is dropped or malformed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.detect import detect
from tests.integration.test_native_cli import CACHE, cli

WORKLOAD = """
import ctypes, os, sys, time
lib = ctypes.CDLL(None)
stop = sys.argv[1]
end = time.monotonic() + 120
while not os.path.exists(stop) and time.monotonic() < end:
    lib.syscall(451, -1, 0, 0, 0)  # cachestat(-1, ...): EBADF, seen at the entry all the same
    lib.syscall(462, -1, 0, 0)  # mseal(-1, 0, 0): EINVAL
    time.sleep(0.01)
"""


@pytest.mark.bpf
def test_probes_run_traces_cachestat_and_mseal(tmp_path: Path) -> None:
    if detect(mount_tracefs=True, cache_dir=CACHE).posture < Posture.ACTIVE_TRACING:
        pytest.skip("native syscall probes cannot run here (stella-runtime probes detect says why)")
    if int(Path("/proc/sys/kernel/osrelease").read_text().split(".")[0]) < 6:
        pytest.skip("the kernel predates cachestat and mseal")
    stop = tmp_path / "stop"
    work = subprocess.Popen([sys.executable, "-c", WORKLOAD, str(stop)])
    try:
        r = cli(
            "run", "--seconds", "1", "--json", "--no-exec", "--syscall", "cachestat", "--syscall", "mseal"
        )
    finally:
        stop.touch()
        work.wait(timeout=30)
    assert r.returncode == 0, r.stderr
    lines = [orjson.loads(line) for line in r.stdout.splitlines()]
    summary = lines.pop()["summary"]
    assert summary["attached"] == ["raw_syscalls:sys_enter (cachestat, mseal)"]
    names = {ev["function_name"] for ev in lines if ev["process"]["pid"] == work.pid}
    assert names == {"__x64_sys_cachestat", "__x64_sys_mseal"}, names
    k = summary["kernel"]["syscall"]
    assert k["seen"] == k["emitted"] and k["lost"] == 0
    assert summary["malformed"] == {} and summary["events"] == len(lines)
