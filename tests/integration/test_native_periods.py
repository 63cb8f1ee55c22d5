"""A policy's rateLimit on the real kernel, as Tetragon applies it: one event per thread, probe and period.

A C program built here runs two threads; each calls a function and a
syscall N times within one period. With the period on, each thread gives
exactly one event per probe and the rest are counted as ``period_limited``;
without it, every call is an event.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from stellaops_runtime.contracts.events import EventKind
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.detect import Report, detect
from stellaops_runtime.native.session import SessionResult, run_session

pytestmark = pytest.mark.bpf

N = 50
PROGRAM = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
__attribute__((noinline)) int stella_period_fn(int x) { __asm__ volatile(""); return x + 1; }
static void *work(void *arg) {
    long n = (long)arg, s = 0;
    for (long i = 0; i < n; i++) { s += stella_period_fn(i); s += syscall(SYS_getpgid, 0) > 0; }
    return (void *)s;
}
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    pthread_t t;
    pthread_create(&t, NULL, work, (void *)n);
    work((void *)n);
    pthread_join(t, NULL);
    puts("ok");
    return 0;
}
"""


@pytest.fixture(scope="module")
def report() -> Report:
    rep = detect(mount_tracefs=True, compile_test=True, cache_dir=str(Path(".cache/native").resolve()))
    if rep.posture < Posture.EBPF_DEEP:
        pytest.skip(f"native probes give {rep.posture} here, this test needs EbpfDeep: {rep.missing}")
    return rep


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("periods")
    (d / "p.c").write_text(PROGRAM)
    subprocess.run(["gcc", "-O1", "-pthread", "-o", str(d / "p"), str(d / "p.c")], check=True)
    return d / "p"


def _run(cfg: NativeConfig, report: Report, program: Path) -> tuple[SessionResult, int]:
    pids: list[int] = []

    def work() -> None:
        p = subprocess.Popen([str(program), str(N)], stdout=subprocess.PIPE)
        pids.append(p.pid)
        assert p.communicate(timeout=60)[0] == b"ok\n"

    res = asyncio.run(run_session(cfg, seconds=1.0, report=report, during=work))
    assert not res.error, res.error
    return res, pids[0]


def _per_thread(res: SessionResult, pid: int, kind: EventKind) -> dict[int, int]:
    out: dict[int, int] = {}
    for e in res.events:
        if e.kind is kind and e.process.pid == pid:
            out[e.process.tid] = out.get(e.process.tid, 0) + 1
    return out


def test_period_gives_one_event_per_thread_and_probe(report: Report, program: Path) -> None:
    target = UprobeTarget(str(program), "stella_period_fn")
    cfg = NativeConfig(
        exec_events=False,
        syscalls=("getpgid",),
        uprobes=(target,),
        user_stacks=False,
        syscall_periods=(("getpgid", 60),),
        uprobe_periods=((target.label(), 60),),
    )
    res, pid = _run(cfg, report, program)
    ups = _per_thread(res, pid, EventKind.UPROBE)
    assert len(ups) == 2 and set(ups.values()) == {1}, ups
    sys = _per_thread(res, pid, EventKind.SYSCALL)
    assert len(sys) == 2 and set(sys.values()) == {1}, sys
    k = res.kernel_counters["uprobe"]
    assert (k["seen"], k["period_limited"], k["emitted"]) == (2 * N, 2 * (N - 1), 2), k
    s = res.kernel_counters["syscall"]
    assert s["period_limited"] >= 2 * (N - 1)  # other processes' getpgid calls may add to it
    assert s["seen"] == s["period_limited"] + s["emitted"] + s["lost"] + s["cgroup_filtered"], s


def test_without_period_every_call_is_an_event(report: Report, program: Path) -> None:
    target = UprobeTarget(str(program), "stella_period_fn")
    cfg = NativeConfig(exec_events=False, uprobes=(target,), user_stacks=False)
    res, pid = _run(cfg, report, program)
    assert sum(_per_thread(res, pid, EventKind.UPROBE).values()) == 2 * N
    assert res.kernel_counters["uprobe"]["period_limited"] == 0
