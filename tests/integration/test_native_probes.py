"""Native BCC probes on the real kernel: exec, uprobes (exact counts, latency, stacks), filters, hostility.

Every test loads real BPF programs through BCC (compiled against our header
tree when the kernel's headers are missing) and drives a C program built here.
They skip, with detect.py's reason, only where the kernel or BCC cannot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stellaops_runtime.contracts.events import EventKind
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.detect import Report, detect
from stellaops_runtime.native.session import SessionResult, run_session

pytestmark = pytest.mark.bpf

PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

__attribute__((noinline)) int stella_target(int x) {
    struct timespec ts = {0, 200000};  /* 200 us: a latency well above zero */
    nanosleep(&ts, NULL);
    return x * 2;
}

__attribute__((noinline)) int stella_recurse(int n) {
    if (n <= 0) return 0;
    return 1 + stella_recurse(n - 1);
}

__attribute__((noinline)) int stella_fast(int x) { return x + 1; }

__attribute__((noinline)) void stella_noreturn(void) { fflush(stdout); _exit(0); }

int main(int argc, char **argv) {
    /* usage: prog MODE N ; then it lingers until its stdin is closed, so /proc/<pid>/maps stays
       readable for stack frames until the session has read its records */
    int n = atoi(argv[2]);
    long s = 0;
    if (!strcmp(argv[1], "calls")) for (int i = 0; i < n; i++) s += stella_target(i);
    if (!strcmp(argv[1], "fast")) for (int i = 0; i < n; i++) s += stella_fast(i);
    if (!strcmp(argv[1], "recurse")) s = stella_recurse(n);
    if (!strcmp(argv[1], "recurse_then_exit")) { printf("%d\n", stella_recurse(n)); stella_noreturn(); }
    if (!strcmp(argv[1], "syscalls")) for (int i = 0; i < n; i++) s += syscall(SYS_getpgid, 0) > 0;
    printf("%ld\n", s);
    fflush(stdout);
    while (getchar() != EOF) {}
    return 0;
}
"""


@pytest.fixture(scope="module")
def report() -> Report:
    return detect(mount_tracefs=True, compile_test=True, cache_dir=str(Path(".cache/native").resolve()))


def need(report: Report, posture: Posture) -> None:
    if report.posture < posture:
        pytest.skip(f"native probes give {report.posture} here, this test needs {posture}: {report.missing}")


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("native")
    src = d / "stella_probe_target.c"
    src.write_text(PROGRAM)
    out = d / "stella_probe_target"
    subprocess.run(["gcc", "-O1", "-g", "-fno-omit-frame-pointer", "-o", str(out), str(src)], check=True)
    return out


def run(cfg: NativeConfig, report: Report, argv: list[str], **popen: object) -> tuple[SessionResult, int]:
    pids: list[int] = []

    procs: list[subprocess.Popen[bytes]] = []

    def workload() -> None:  # until it printed its result: every call made, the process still there
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, **popen)  # type: ignore[call-overload]
        procs.append(p)
        pids.append(p.pid)
        assert p.stdout is not None and p.stdout.readline(), "it printed nothing"

    try:
        res = asyncio.run(run_session(cfg, seconds=1.0, report=report, during=workload))
    finally:
        for p in procs:  # its records read while it lived (frames resolve through its maps): it exits
            p.communicate(timeout=60)
            assert p.returncode == 0, p.returncode
    assert not res.error, res.error
    return res, pids[0]


def uprobe_events(res: SessionResult, pid: int, symbol: str) -> list:
    return [
        e
        for e in res.events
        if e.kind is EventKind.UPROBE and e.process.pid == pid and e.function_name == symbol
    ]


def test_exec_of_a_built_program_is_seen_with_pid_comm_and_path(report: Report, program: Path) -> None:
    need(report, Posture.PASSIVE)
    res, pid = run(NativeConfig(), report, [str(program), "none", "0"])
    execs = [e for e in res.events if e.kind is EventKind.EXEC and e.process.pid == pid]
    assert len(execs) == 1, [(e.process.pid, e.process.binary) for e in res.events][:20]
    ev = execs[0]
    assert ev.process.binary == str(program)
    assert ev.module == str(program)
    assert ev.source == "bcc"
    assert ev.process.exec_id  # Tetragon's form: base64 of node:ktime:pid
    assert abs(ev.timestamp_ns - time.time_ns()) < 60 * 10**9  # wall clock, not boot time
    assert res.kernel_counters["exec"]["emitted"] >= 1


@pytest.mark.parametrize("how", ["fexecve", "proc-self-exe"])
def test_an_exec_through_a_descriptor_names_the_file_not_the_descriptor(report: Report, how: str) -> None:
    """fexecve/execveat give the kernel /dev/fd/N as the path, a runtime executing itself again
    /proc/self/exe: before, that was the process's binary, on its exec and every later event.
    The file is named through /proc/<pid>/exe when the record is read, so the process stays alive
    (reading its stdin) until the session has read it: it exited at once before, and on a loaded
    machine its record was read after that (the test then saw /proc/self/exe)."""
    import sys

    need(report, Posture.PASSIVE)
    cat = shutil.which("cat") or "/bin/cat"
    if how == "fexecve":  # cat, run through a descriptor of it (as glibc's fexecve does)
        code = (
            f"import os; fd = os.open({cat!r}, os.O_RDONLY); os.set_inheritable(fd, True); "
            "os.execve(fd, ['cat'], dict(os.environ))"
        )
        want = os.path.realpath(cat)
    else:  # Python executing itself again
        again = "import sys; sys.stdin.read()"
        code = f"import os, sys; os.execv('/proc/self/exe', [sys.executable, '-c', {again!r}])"
        want = os.path.realpath(sys.executable)
    procs: list[subprocess.Popen[bytes]] = []

    def execd(pid: int) -> bool:  # it runs its last image: cat, or python's second command line
        if how == "fexecve":
            return os.readlink(f"/proc/{pid}/exe") == want
        return Path(f"/proc/{pid}/cmdline").read_bytes().endswith(b"sys.stdin.read()\0")

    def workload() -> None:  # started, and waited for until it runs its last image
        p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        procs.append(p)
        deadline = time.monotonic() + 60
        while not execd(p.pid):
            assert time.monotonic() < deadline and p.poll() is None, "it never exec'd"
            time.sleep(0.01)

    try:
        res = asyncio.run(run_session(NativeConfig(), seconds=1.0, report=report, during=workload))
    finally:
        for p in procs:
            p.communicate(timeout=60)  # its stdin closed: it exits
    assert not res.error, res.error
    execs = [e for e in res.events if e.kind is EventKind.EXEC and e.process.pid == procs[0].pid]
    assert [e.process.binary for e in execs][-1] == want, [e.process.binary for e in execs]
    assert execs[-1].module == want


def test_uprobe_counts_exactly_the_calls_with_latency_and_stack(report: Report, program: Path) -> None:
    need(report, Posture.EBPF_DEEP)
    n = 37
    cfg = NativeConfig(exec_events=False, uprobes=(UprobeTarget(str(program), "stella_target"),))
    res, pid = run(cfg, report, [str(program), "calls", str(n)])
    evs = uprobe_events(res, pid, "stella_target")
    assert len(evs) == n
    assert res.kernel_counters["uprobe"]["seen"] == n
    assert res.kernel_counters["uprobe"]["emitted"] == n
    assert all(e.latency_ns is not None and e.latency_ns >= 150_000 for e in evs)  # it sleeps 200 us
    assert all(e.module == str(program) and e.process.binary == str(program) for e in evs)
    # The caller's stack: the innermost frame is the call site in main, inside the program's file.
    assert all(e.user_stack and e.user_stack[0].module == str(program) for e in evs)
    assert all(e.user_stack[0].offset > 0 for e in evs)


def test_recursive_calls_count_exactly_and_a_call_that_never_returns_emits_nothing(
    report: Report, program: Path
) -> None:
    need(report, Posture.EBPF_DEEP)
    depth = 25  # stella_recurse(25) calls itself down to 0: 26 calls, nested
    targets = (UprobeTarget(str(program), "stella_recurse"), UprobeTarget(str(program), "stella_noreturn"))
    cfg = NativeConfig(exec_events=False, user_stacks=False, uprobes=targets)
    res, pid = run(cfg, report, [str(program), "recurse_then_exit", str(depth)])
    assert len(uprobe_events(res, pid, "stella_recurse")) == depth + 1
    assert uprobe_events(res, pid, "stella_noreturn") == []  # it exits inside: no return, no event
    k = res.kernel_counters["uprobe"]
    assert (k["seen"], k["emitted"]) == (depth + 2, depth + 1)


def test_rate_limit_drops_above_budget_and_counts_every_drop(report: Report, program: Path) -> None:
    need(report, Posture.EBPF_DEEP)
    n = 200
    cfg = NativeConfig(
        user_stacks=False, rate_per_second=1, burst=10, uprobes=(UprobeTarget(str(program), "stella_fast"),),
    )  # fmt: skip
    res, pid = run(cfg, report, [str(program), "fast", str(n)])
    got = len(uprobe_events(res, pid, "stella_fast"))
    k = res.kernel_counters["uprobe"]
    assert 10 <= got <= 11  # the burst, plus at most one token refilled while it runs (< 1 s)
    assert k["seen"] == n
    assert k["rate_limited"] == n - got
    assert k["emitted"] == got
    # Exec events are lifecycle: never limited, even in a cgroup over its budget.
    assert [e.process.binary for e in res.events if e.kind is EventKind.EXEC and e.process.pid == pid] == [
        str(program)
    ]
    assert res.kernel_counters["exec"]["rate_limited"] == 0


def test_without_a_ring_buffer_the_perf_buffer_is_used(report: Report, program: Path) -> None:
    need(report, Posture.EBPF_DEEP)
    no_ringbuf = dataclasses.replace(
        report,
        checks=[c if c.name != "ring buffer" else dataclasses.replace(c, ok=False) for c in report.checks],
    )
    cfg = NativeConfig(exec_events=False, uprobes=(UprobeTarget(str(program), "stella_fast"),))
    res, pid = run(cfg, no_ringbuf, [str(program), "fast", "7"])
    assert "perf_buffer" in res.kernel_counters
    assert len(uprobe_events(res, pid, "stella_fast")) == 7


def test_perf_buffer_counts_exactly_too(report: Report, program: Path) -> None:
    need(report, Posture.EBPF_DEEP)
    n = 23
    cfg = NativeConfig(
        exec_events=False, force_perf_buffer=True, uprobes=(UprobeTarget(str(program), "stella_target"),)
    )
    res, pid = run(cfg, report, [str(program), "calls", str(n)])
    assert len(uprobe_events(res, pid, "stella_target")) == n
    assert res.kernel_counters["perf_buffer"]["lost"] == 0


def test_missing_symbol_binary_and_non_elf_are_reported_and_others_keep_working(
    report: Report, program: Path, tmp_path: Path
) -> None:
    need(report, Posture.EBPF_DEEP)
    not_elf = tmp_path / "not-an-elf"
    not_elf.write_bytes(b"#!/bin/sh\n\x00\xff garbage")
    cfg = NativeConfig(
        exec_events=False, user_stacks=False,
        uprobes=(
            UprobeTarget(str(program), "no_such_function"),
            UprobeTarget("/nonexistent/stella/bin", "main"),
            UprobeTarget(str(not_elf), "main"),
            UprobeTarget(str(program), "stella_target"),
        ),
    )  # fmt: skip
    res, pid = run(cfg, report, [str(program), "calls", "5"])
    failed = dict(res.failed)
    assert failed[f"{program}:no_such_function"] == f"symbol no_such_function not found in {program}"
    assert failed["/nonexistent/stella/bin:main"] == "binary /nonexistent/stella/bin not found"
    assert str(not_elf) in failed[f"{not_elf}:main"]
    assert res.attached == [f"uprobe {program}:stella_target"]
    assert len(uprobe_events(res, pid, "stella_target")) == 5


def _cgroup2_root() -> str:
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if parts[2] == "cgroup2":
                return parts[1]
    return ""


@pytest.fixture
def cgroup() -> Iterator[tuple[str, int]]:
    root = _cgroup2_root()
    if not root:
        pytest.skip("no cgroup v2 hierarchy mounted: cgroup ids cannot be tested")
    path = os.path.join(root, f"stella-native-test-{os.getpid()}")
    os.mkdir(path)
    try:
        yield path, os.stat(path).st_ino
    finally:
        for _ in range(50):
            try:
                os.rmdir(path)
                break
            except OSError:  # its last process is still exiting
                time.sleep(0.05)


def test_cgroup_allow_map_passes_only_listed_cgroups(
    report: Report, program: Path, cgroup: tuple[str, int]
) -> None:
    need(report, Posture.EBPF_DEEP)
    path, cg_id = cgroup
    n = 9

    def enter() -> None:
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    target = (UprobeTarget(str(program), "stella_fast"),)
    other = NativeConfig(
        exec_events=False, user_stacks=False, cgroup_allow=(cg_id + 1_000_000,), uprobes=target
    )
    res, pid = run(other, report, [str(program), "fast", str(n)], preexec_fn=enter)
    assert uprobe_events(res, pid, "stella_fast") == []
    assert res.kernel_counters["uprobe"]["cgroup_filtered"] == n
    mine = NativeConfig(exec_events=False, user_stacks=False, cgroup_allow=(cg_id,), uprobes=target)
    res, pid = run(mine, report, [str(program), "fast", str(n)], preexec_fn=enter)
    evs = uprobe_events(res, pid, "stella_fast")
    assert len(evs) == n
    assert res.kernel_counters["uprobe"]["cgroup_filtered"] == 0


def test_syscalls_from_the_policy_list_with_sampling_counted(report: Report, program: Path) -> None:
    need(report, Posture.ACTIVE_TRACING)
    n = 40
    cfg = NativeConfig(exec_events=False, syscalls=("getpgid",), syscall_sample_every=4)
    res, pid = run(cfg, report, [str(program), "syscalls", str(n)])
    mine = [e for e in res.events if e.process.pid == pid]
    assert mine and all(e.kind is EventKind.SYSCALL and e.function_name == "__x64_sys_getpgid" for e in mine)
    assert all(e.arguments[0].label == "sample_every" and e.arguments[0].value == "4" for e in mine)
    k = res.kernel_counters["syscall"]
    assert k["seen"] >= n  # other processes may call getpgid too
    assert k["seen"] < n + 1000  # the machine makes far more syscalls than that: others are not even seen
    assert k["seen"] == k["sampled_out"] + k["emitted"] + k["lost"] + k["rate_limited"] + k["cgroup_filtered"]
    # One in four per CPU: our 40 calls give 10, give or take one per CPU's counter phase.
    assert abs(len(mine) - n // 4) <= os.cpu_count()  # type: ignore[operator]
    assert k["emitted"] == len([e for e in res.events if e.kind is EventKind.SYSCALL])


def test_source_that_cannot_load_reports_why_and_waits_instead_of_looping(
    report: Report, tmp_path: Path
) -> None:
    """A kernel header tree that does not exist: BCC fails; the source says why, waits, stops on time."""
    need(report, Posture.PASSIVE)
    from stellaops_runtime.native.source import NativeProbeSource
    from stellaops_runtime.sources.queue import EventQueue

    async def scenario() -> NativeProbeSource:
        src = NativeProbeSource(
            NativeConfig(), queue=EventQueue(10), kernel_source=str(tmp_path / "no-headers"), retry_seconds=60
        )
        stop = asyncio.Event()
        task = asyncio.create_task(src.run(stop))
        await asyncio.wait_for(src.ready.wait(), 60)
        await asyncio.sleep(0.3)  # a crash loop would fail again within this time
        stop.set()
        await asyncio.wait_for(task, 10)
        return src

    src = asyncio.run(scenario())
    assert src.stats.connects == 0 and not src.stats.connected
    assert src.stats.connect_failures == 1
    assert src.stats.last_error.startswith(
        "BCC could not compile or load the probes: Failed to compile BPF module"
    )
    assert "Unable to find kernel headers" in src.stats.last_error  # BCC's own words, from its stdout
    assert f"chdir({tmp_path / 'no-headers'}): No such file or directory" in src.stats.last_error


@pytest.mark.parametrize("perf", [False, True], ids=["ring-buffer", "perf-buffer"])
def test_a_full_output_buffer_loses_records_and_counts_every_one(
    report: Report, program: Path, perf: bool
) -> None:
    """One page of buffer and a burst of calls far faster than the 100 ms poll: losses, all counted."""
    need(report, Posture.EBPF_DEEP)
    n = 20_000
    cfg = NativeConfig(
        exec_events=False, user_stacks=False, ring_buffer_pages=1, force_perf_buffer=perf,
        uprobes=(UprobeTarget(str(program), "stella_fast"),),
    )  # fmt: skip
    res, pid = run(cfg, report, [str(program), "fast", str(n)])
    got = len(uprobe_events(res, pid, "stella_fast"))
    k = res.kernel_counters["uprobe"]
    assert k["seen"] == n
    assert k["lost"] == n - got > 0  # refused in the kernel (no room), counted there
    assert k["emitted"] == got
    if perf:  # the perf ring also tells its reader, late and by its own count: a cross-check only
        assert res.kernel_counters["perf_buffer"]["lost"] > 0
