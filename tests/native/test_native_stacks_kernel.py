"""Stacks from the native probes on the real kernel: syscall and TCP state events, kernel and user.

A C program built here makes its system calls itself (inline ``syscall``, no
libc wrapper), so the innermost user frame is the calling function. Every
kernel frame is checked against /proc/kallsyms read here, every user frame
against the program's ELF symbol table read here, and the kernel frames must
get the function IDs the canonicalizer gives the same stack from a Tetragon
kprobe event. Counts stay exact with stacks on and off, and thousands of
distinct stacks (more than any stack-trace map we used to have buckets for)
each arrive with their own frames: stacks travel in the record, nothing can
fill up or hand one event another's frames. Skips, with detect.py's reason, where the kernel or
BCC cannot.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from stellaops_runtime.adapter import from_json
from stellaops_runtime.adapter.common import AdapterStats
from stellaops_runtime.canonical.frames import FrameCanonicalizer
from stellaops_runtime.contracts import tcp_state
from stellaops_runtime.contracts.events import EventKind, RuntimeCallEvent
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.detect import Report, detect
from stellaops_runtime.native.loader import program_text
from stellaops_runtime.native.session import SessionResult, run_session

pytestmark = pytest.mark.bpf

PROGRAM = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The system call is made right here, not in a libc wrapper: the innermost user frame is the
   function using it, the next one (through its frame pointer) that function's caller. */
#define RAW_SYSCALL3(nr, a, b, c) ({ long _r; \
    register long _a __asm__("rdi") = (long)(a); register long _b __asm__("rsi") = (long)(b); \
    register long _c __asm__("rdx") = (long)(c); \
    __asm__ volatile ("syscall" : "=a"(_r) : "0"((long)(nr)), "r"(_a), "r"(_b), "r"(_c) \
                      : "rcx", "r11", "memory"); _r; })

__attribute__((noinline)) long stella_getppid_caller(void) { return RAW_SYSCALL3(SYS_getppid, 0, 0, 0); }

__attribute__((noinline)) long stella_connect_caller(int fd, const struct sockaddr_in *a) {
    return RAW_SYSCALL3(SYS_connect, fd, a, sizeof(*a));
}

/* Paths: stella_path(i) runs down PATH_DEPTH levels, stella_left for a 1 bit of i, stella_right for
   a 0 (the lowest bit outermost), then makes the system call: a different user stack for every i,
   from which the test reads i back. */
#define PATH_DEPTH 13
__attribute__((noinline)) long stella_left(int bits, int d);
__attribute__((noinline)) long stella_right(int bits, int d);
#define STELLA_STEP(bits, d) ((d) == 0 ? stella_getppid_caller() : \
    ((bits) & 1) ? stella_left((bits) >> 1, (d) - 1) : stella_right((bits) >> 1, (d) - 1))
long stella_left(int bits, int d) { return STELLA_STEP(bits, d) + 1; }
long stella_right(int bits, int d) { return STELLA_STEP(bits, d) + 2; }
__attribute__((noinline)) long stella_path(int i) { return STELLA_STEP(i, PATH_DEPTH); }

/* A different user stack at every depth. */
__attribute__((noinline)) long stella_deep(int d) {
    if (d <= 0) return stella_getppid_caller();
    return stella_deep(d - 1) + 1;
}

int main(int argc, char **argv) {
    /* usage: prog getppid|deep|paths|connect N (or loop 0); then it waits for stdin's end, so
       /proc/<pid>/maps stays readable until the test has seen its events */
    int n = atoi(argv[2]);
    long s = 0;
    if (!strcmp(argv[1], "getppid")) for (int i = 0; i < n; i++) s += stella_getppid_caller() > 0;
    if (!strcmp(argv[1], "deep")) for (int i = 0; i < n; i++) s += stella_deep(i) > 0;
    if (!strcmp(argv[1], "paths")) for (int i = 0; i < n; i++) s += stella_path(i) > 0;
    if (!strcmp(argv[1], "loop")) {  /* a call every 10 ms until stdin ends */
        struct pollfd in = {.fd = 0, .events = POLLIN};
        while (poll(&in, 1, 10) == 0) s += stella_getppid_caller() > 0;
        printf("%ld\n", s);
        return 0;
    }
    if (!strcmp(argv[1], "connect")) {
        int l = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);
        if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 256) ||
            getsockname(l, (struct sockaddr *)&a, &len)) return 3;
        for (int i = 0; i < n; i++) {
            int c = socket(AF_INET, SOCK_STREAM, 0);
            if (stella_connect_caller(c, &a)) return 4;
            int x = accept(l, NULL, NULL);
            close(c);
            close(x);
        }
        close(l);
        s = n;
    }
    printf("%ld\n", s);
    fflush(stdout);
    char b;
    while (read(0, &b, 1) > 0) {}
    return 0;
}
"""
SYN_SENT = "2"


@pytest.fixture(scope="module")
def report() -> Report:
    rep = detect(mount_tracefs=True, compile_test=True, cache_dir=str(Path(".cache/native").resolve()))
    if rep.posture < Posture.EBPF_DEEP:
        pytest.skip(f"native probes give {rep.posture} here, stacks need EbpfDeep: {rep.missing}")
    return rep


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("stacks")
    (d / "stella_stacks.c").write_text(PROGRAM)
    out = d / "stella_stacks"
    # -O0: every function keeps its frame pointer, the only unwinder BPF has for user stacks.
    subprocess.run(["gcc", "-O0", "-g", "-o", str(out), str(d / "stella_stacks.c")], check=True)
    return out


@pytest.fixture(scope="module")
def cgroup() -> Iterator[tuple[str, int]]:
    """A cgroup v2 of our own: the probes admit only its processes, so other processes on the machine
    neither add events nor take room in the stack map, and the kernel counters are exactly ours."""
    with open("/proc/self/mounts") as f:
        root = next((line.split()[1] for line in f if line.split()[2] == "cgroup2"), "")
    if not root:
        pytest.skip("no cgroup v2 hierarchy mounted")
    path = os.path.join(root, f"stella-stacks-test-{os.getpid()}")
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


# -- what the test reads itself: kallsyms and the program's ELF symbols ------------------------


@dataclasses.dataclass
class Kallsyms:
    starts: list[int]
    names: dict[int, set[str]]

    def covering(self, address: int) -> tuple[int, set[str]]:
        i = bisect.bisect_right(self.starts, address) - 1
        assert i >= 0, hex(address)
        return self.starts[i], self.names[self.starts[i]]


@pytest.fixture(scope="module")
def kallsyms() -> Kallsyms:
    names: dict[int, set[str]] = {}
    with open("/proc/kallsyms") as f:
        for line in f:
            addr, typ, name = line.split()[:3]
            if typ in "tTwW":
                names.setdefault(int(addr, 16), set()).add(name)
    if not any(names):
        pytest.skip("kallsyms shows no addresses here")
    return Kallsyms(sorted(names), names)


def elf_functions(path: Path) -> tuple[dict[str, tuple[int, int]], list[tuple[int, int, int]]]:
    """({function: (vaddr, size)} from .symtab, [(file offset, vaddr, size)] of PT_LOAD), ELF64 LE."""
    data = path.read_bytes()
    assert data[:6] == b"\x7fELF\x02\x01"
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x36)
    loads = []
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if p_type == 1:
            loads.append((p_offset, p_vaddr, p_filesz))
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    symtab = next(s for s in sections if s[1] == 2)  # SHT_SYMTAB
    strtab_off = sections[symtab[6]][4]
    funcs = {}
    for off in range(symtab[4], symtab[4] + symtab[5], 24):
        name_off, info, _other, _shndx, value, size = struct.unpack_from("<IBBHQQ", data, off)
        if info & 0xF == 2:  # STT_FUNC
            start = strtab_off + name_off
            funcs[data[start : data.index(b"\0", start)].decode()] = (value, size)
    return funcs, loads


def function_at(path: Path, file_offset: int) -> str:
    funcs, loads = elf_functions(path)
    vaddr = next(v + file_offset - o for o, v, n in loads if o <= file_offset < o + n)
    return next((name for name, (start, size) in funcs.items() if start <= vaddr < start + size), "")


# -- running the probes ---------------------------------------------------------------------------


Run = tuple[list[str], Callable[[list[RuntimeCallEvent]], bool]]


def observe(
    cfg: NativeConfig, report: Report, program: Path, cgroup: tuple[str, int], runs: list[Run]
) -> tuple[SessionResult, list[int], list[RuntimeCallEvent]]:
    """Run ``program`` once per (arguments, seen) in ``cgroup``, the only one the probes admit.

    Returns (result, pids, events).

    Each run's process is kept alive (it waits for the end of its stdin) until ``seen`` holds
    for the events of its pid, or 30 s: its records are read, and its user frames resolved
    through /proc/<pid>/maps, while it lives, however loaded the machine is.
    """
    events: list[RuntimeCallEvent] = []
    pids: list[int] = []
    path, cg_id = cgroup
    cfg = dataclasses.replace(cfg, cgroup_allow=(cg_id,))

    def enter() -> None:
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    def workload() -> None:
        for argv, seen in runs:
            p = subprocess.Popen(
                [str(program), *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=enter
            )
            assert p.stdout is not None and p.stdin is not None
            assert p.stdout.readline().strip(), "the program did not finish its work"
            deadline = time.monotonic() + 30
            while (
                not seen([e for e in list(events) if e.process.pid == p.pid]) and time.monotonic() < deadline
            ):
                time.sleep(0.02)
            p.stdin.close()
            assert p.wait(timeout=30) == 0
            p.stdout.close()
            pids.append(p.pid)

    res = asyncio.run(run_session(cfg, seconds=1.0, report=report, during=workload, on_event=events.append))
    assert not res.error, res.error
    return res, pids, events


def syscalls_seen(n: int) -> Callable[[list[RuntimeCallEvent]], bool]:
    return lambda evs: len([e for e in evs if e.kind is EventKind.SYSCALL]) >= n


def connects_seen(n: int) -> Callable[[list[RuntimeCallEvent]], bool]:
    return lambda evs: len(syn_sent(evs)) >= n


def syn_sent(events: list[RuntimeCallEvent]) -> list[RuntimeCallEvent]:
    return [e for e in events if e.kind is EventKind.TRACEPOINT and e.arguments[1].value == SYN_SENT]


def admitted(counters: dict[str, int]) -> int:
    """Events of our cgroup the probe saw (others' are seen, then filtered by cgroup)."""
    return counters["seen"] - counters["cgroup_filtered"]


def mine(events: list[RuntimeCallEvent], pid: int, kind: EventKind) -> list[RuntimeCallEvent]:
    return [e for e in events if e.process.pid == pid and e.kind is kind]


def check_kernel_frames(ev: RuntimeCallEvent, ks: Kallsyms) -> list[str]:
    """Each frame is kallsyms' symbol covering its address and the offset from that symbol's start."""
    assert ev.kernel_stack
    for f in ev.kernel_stack:
        start, names = ks.covering(f.address)
        assert f.symbol in names and f.offset == f.address - start and f.module == "", f
    return [f.symbol for f in ev.kernel_stack]


def same_ids_as_tetragon(ev: RuntimeCallEvent) -> None:
    """The canonicalizer gives the native kernel frames the IDs it gives Tetragon's for the same stack."""
    obj = {
        "process_kprobe": {
            "process": {"pid": ev.process.pid, "binary": ev.process.binary},
            "function_name": "__x64_sys_getppid",
            "kernel_stack_trace": [
                {"address": f.address, "offset": f.offset, "symbol": f.symbol} for f in ev.kernel_stack
            ],
        },
        "node_name": ev.node_name,
    }
    tetragon = from_json.adapt(from_json.decode_line(orjson.dumps(obj)), stats=AdapterStats())
    assert tetragon is not None
    native = dataclasses.replace(
        ev, user_stack=[], kernel_stack=[dataclasses.replace(f) for f in ev.kernel_stack]
    )
    fc = FrameCanonicalizer(proc_root=None)
    fc.canonicalize(native)
    fc.canonicalize(tetragon)
    ids = [f.function_id for f in native.kernel_stack]
    assert ids == [f.function_id for f in tetragon.kernel_stack]
    assert [(f.symbol, f.symbol_offset) for f in native.kernel_stack] == [
        (f.symbol, f.offset) for f in ev.kernel_stack
    ]
    if fc.symbolizer.kernel().build_id():  # the kernel's build-id is readable: every frame has its ID
        assert all(ids), ids


# -- the tests -------------------------------------------------------------------------------------


def test_syscall_and_tcp_events_carry_kernel_and_user_stacks(
    report: Report, program: Path, kallsyms: Kallsyms, cgroup: tuple[str, int]
) -> None:
    n, m = 25, 6
    cfg = NativeConfig(
        exec_events=False, syscalls=("getppid",), kernel_stack_syscalls=("getppid",),
        user_stack_syscalls=("getppid",), tcp_state=True, tcp_kernel_stacks=True, tcp_user_stacks=True,
    )  # fmt: skip
    res, (getppid_pid, connect_pid), events = observe(
        cfg,
        report,
        program,
        cgroup,
        [(["getppid", str(n)], syscalls_seen(n)), (["connect", str(m)], connects_seen(m))],
    )

    calls = mine(events, getppid_pid, EventKind.SYSCALL)
    assert len(calls) == n and all(e.function_name == "__x64_sys_getppid" for e in calls)
    for ev in calls:
        symbols = check_kernel_frames(ev, kallsyms)
        # raw_syscalls:sys_enter runs on the syscall's way in: entry code, do_syscall_64
        assert "do_syscall_64" in symbols and "entry_SYSCALL_64_after_hwframe" in symbols, symbols
        assert not any(s.startswith("__x64_sys_") for s in symbols)  # not called yet at sys_enter
        assert [f.module for f in ev.user_stack[:2]] == [str(program)] * 2
        assert [function_at(program, f.offset) for f in ev.user_stack[:2]] == [
            "stella_getppid_caller",
            "main",
        ]
    same_ids_as_tetragon(calls[0])
    # kernel stacks on: the symbol table was read ahead, in a worker thread, before any event
    assert res.kernel_symbols > 1000

    connects = syn_sent(mine(events, connect_pid, EventKind.TRACEPOINT))
    assert len(connects) == m
    for ev in connects:
        symbols = check_kernel_frames(ev, kallsyms)
        assert {"tcp_v4_connect", "__sys_connect", "__x64_sys_connect"} <= set(symbols), symbols
        assert function_at(program, ev.user_stack[0].offset) == "stella_connect_caller"
    # Only our cgroup is admitted: the counters are exactly our events, none lost a stack.
    k = res.kernel_counters
    assert (admitted(k["syscall"]), k["syscall"]["emitted"], k["syscall"]["stack_lost"]) == (n, n, 0)
    tcp_events = mine(events, connect_pid, EventKind.TRACEPOINT)
    assert (admitted(k["tcp"]), k["tcp"]["emitted"], k["tcp"]["stack_lost"]) == (len(tcp_events),) * 2 + (0,)
    assert all(e.kernel_stack and e.user_stack for e in tcp_events)
    assert res.malformed == {}


PATH_DEPTH = 13


def path_of(program: Path, frames: list, funcs: dict[int, str]) -> int:
    """The ``i`` whose stella_path(i) made this user stack (innermost first), read from its frames."""
    names = [funcs.get(f.offset, "?") for f in frames]
    assert all(f.module == str(program) for f in frames[: len(names) - names[::-1].index("main")]), frames
    inner = names.index("stella_path")
    steps = names[:inner]
    while steps and steps[0] not in ("stella_left", "stella_right"):
        steps.pop(0)  # the frames below the path (stella_getppid_caller), when present
    assert len(steps) == PATH_DEPTH and names[inner + 1] == "main", names
    return sum(1 << k for k, name in enumerate(reversed(steps)) if name == "stella_left")


def frame_names(program: Path) -> Callable[[list[int]], dict[int, str]]:
    """file offset -> function of ``program``, for the offsets asked (the test's own ELF reading)."""
    funcs, loads = elf_functions(program)
    spans = sorted((start, start + size, name) for name, (start, size) in funcs.items() if size)

    def names(offsets: list[int]) -> dict[int, str]:
        out = {}
        for off in set(offsets):
            vaddr = next((v + off - o for o, v, n in loads if o <= off < o + n), -1)
            i = bisect.bisect_right(spans, (vaddr, float("inf"), "")) - 1
            out[off] = spans[i][2] if i >= 0 and spans[i][0] <= vaddr < spans[i][1] else ""
        return out

    return names


@pytest.mark.parametrize(("perf", "n"), [(False, 5000), (True, 1000)], ids=["ring_buffer", "perf_buffer"])
def test_thousands_of_distinct_stacks_each_arrive_with_their_own_frames(
    report: Report, program: Path, kallsyms: Kallsyms, cgroup: tuple[str, int], perf: bool, n: int
) -> None:
    """Every call has a stack of its own (its path), more than the 4,096 buckets of the stack-trace
    map we used to have (which lost stacks from about 90 distinct ones on): none is lost, none
    is another call's."""
    cfg = NativeConfig(
        exec_events=False, syscalls=("getppid",), kernel_stack_syscalls=("getppid",),
        user_stack_syscalls=("getppid",), force_perf_buffer=perf, ring_buffer_pages=1024,
    )  # fmt: skip
    res, (pid,), events = observe(cfg, report, program, cgroup, [(["paths", str(n)], syscalls_seen(n))])
    calls = mine(events, pid, EventKind.SYSCALL)
    assert len(calls) == n
    names = frame_names(program)({f.offset for e in calls for f in e.user_stack})
    assert sorted(path_of(program, e.user_stack, names) for e in calls) == list(range(n))
    for e in calls:
        assert names[e.user_stack[0].offset] == "stella_getppid_caller"
        # innermost: the caller, PATH_DEPTH path levels, stella_path, main (libc's start below)
        assert len(e.user_stack) >= 1 + PATH_DEPTH + 2
    for e in calls[:: max(1, n // 200)]:
        assert "do_syscall_64" in check_kernel_frames(e, kallsyms)
    k = res.kernel_counters["syscall"]
    assert (admitted(k), k["emitted"], k["lost"], k["stack_lost"]) == (n, n, 0, 0)
    assert res.malformed == {} and res.queue_dropped == 0
    if perf:
        assert res.kernel_counters["perf_buffer"]["lost"] == 0


@pytest.mark.parametrize("perf", [False, True], ids=["ring_buffer", "perf_buffer"])
def test_uprobe_calls_carry_their_callers_stack_taken_at_the_return(
    report: Report, program: Path, cgroup: tuple[str, int], perf: bool
) -> None:
    n = 600
    target = UprobeTarget(str(program), "stella_getppid_caller")
    cfg = NativeConfig(exec_events=False, uprobes=(target,), ring_buffer_pages=256, force_perf_buffer=perf)
    text = program_text(cfg, ring_buffer=True)
    assert "BPF_STACK_TRACE" not in text
    res, (pid,), events = observe(
        cfg, report, program, cgroup,
        [(["paths", str(n)], lambda evs: len([e for e in evs if e.kind is EventKind.UPROBE]) >= n)],
    )  # fmt: skip
    calls = mine(events, pid, EventKind.UPROBE)
    assert len(calls) == n and all(e.function_name == "stella_getppid_caller" for e in calls)
    names = frame_names(program)({f.offset for e in calls for f in e.user_stack})
    # the function's own frame is gone at the return: the innermost frame is its direct caller
    assert all(names[e.user_stack[0].offset] in ("stella_left", "stella_right") for e in calls)
    assert sorted(path_of(program, e.user_stack, names) for e in calls) == list(range(n))
    k = res.kernel_counters["uprobe"]
    assert (admitted(k), k["emitted"], k["lost"], k["stack_lost"]) == (n, n, 0, 0)
    assert res.malformed == {}


def test_without_stacks_no_stack_code_no_frames_and_exact_counts(
    report: Report, program: Path, cgroup: tuple[str, int]
) -> None:
    n, m = 25, 6
    cfg = NativeConfig(exec_events=False, syscalls=("getppid",), tcp_state=True)
    text = program_text(cfg, ring_buffer=True)
    assert "bpf_get_stack" not in text and "BPF_STACK_TRACE" not in text
    res, (getppid_pid, connect_pid), events = observe(
        cfg,
        report,
        program,
        cgroup,
        [(["getppid", str(n)], syscalls_seen(n)), (["connect", str(m)], connects_seen(m))],
    )
    calls = mine(events, getppid_pid, EventKind.SYSCALL)
    connects = syn_sent(mine(events, connect_pid, EventKind.TRACEPOINT))
    assert (len(calls), len(connects)) == (n, m)
    assert res.kernel_symbols == 0  # no kernel stack asked for: the symbol table is not read
    assert all(not e.kernel_stack and not e.user_stack for e in calls + connects)
    k = res.kernel_counters
    assert (admitted(k["syscall"]), k["syscall"]["emitted"], k["syscall"]["stack_lost"]) == (n, n, 0)
    assert k["tcp"]["emitted"] == len(mine(events, connect_pid, EventKind.TRACEPOINT))


def test_every_tcp_change_only_the_callers_changes_carry_stacks(
    report: Report, program: Path, cgroup: tuple[str, int]
) -> None:
    m = 4
    cfg = NativeConfig(
        exec_events=False, tcp_state=True, tcp_all_transitions=True, tcp_kernel_stacks=True,
        tcp_user_stacks=True,
    )  # fmt: skip
    _, (pid,), events = observe(cfg, report, program, cgroup, [(["connect", str(m)], connects_seen(m))])
    changes = [e for e in events if e.kind is EventKind.TRACEPOINT and e.process.pid == pid]
    selected: list[RuntimeCallEvent] = []
    others: list[RuntimeCallEvent] = []
    for e in changes:
        old, new = (int(a.value) for a in e.arguments[:2])
        (selected if tcp_state.is_syscall_transition(old, new) else others).append(e)
    assert len(syn_sent(selected)) == m
    assert others  # e.g. SYN_SENT -> ESTABLISHED, made while the SYN-ACK is processed
    assert all(e.kernel_stack and e.user_stack for e in selected)
    assert all(not e.kernel_stack and not e.user_stack for e in others)


def test_probes_run_cli_takes_syscall_stacks_when_asked(
    report: Report, program: Path, kallsyms: Kallsyms, cgroup: tuple[str, int]
) -> None:
    """``stella-runtime probes run --kernel-stack getppid --user-stack getppid`` as a user runs it."""
    path, cg_id = cgroup

    def enter() -> None:
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    # --seconds counts from the attach (native/session.py); the workload calls getppid every 10 ms,
    # so the 3 events come at once and the rest of the run is idle.
    cli = subprocess.Popen(
        [sys.executable, "-m", "stellaops_runtime.cli.main", "probes", "run", "--seconds", "2", "--json",
         "--no-exec", "--kernel-stack", "getppid", "--user-stack", "getppid", "--stack-depth", "2",
         "--cgroup", str(cg_id)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    work = subprocess.Popen([str(program), "loop", "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            preexec_fn=enter)  # fmt: skip
    assert cli.stdout is not None and work.stdin is not None
    seen: list[dict] = []
    for line in cli.stdout:
        obj = orjson.loads(line)
        if obj.get("process", {}).get("pid") == work.pid:
            seen.append(obj)
            if len(seen) == 3:
                break
    work.stdin.close()
    assert work.wait(timeout=30) == 0
    rest, err = cli.communicate(timeout=60)
    assert cli.returncode == 0, err
    assert len(seen) == 3, err
    for ev in seen:
        assert ev["function_name"] == "__x64_sys_getppid"
        assert len(ev["kernel_stack"]) == len(ev["user_stack"]) == 2  # --stack-depth 2: the innermost two
        for f in ev["kernel_stack"]:
            start, names = kallsyms.covering(f["address"])
            assert f["symbol"] in names and f["offset"] == f["address"] - start
        assert [function_at(program, f["offset"]) for f in ev["user_stack"]] == [
            "stella_getppid_caller",
            "main",
        ]
    summary = orjson.loads(rest.strip().splitlines()[-1])["summary"]
    assert summary["kernel"]["syscall"]["stack_lost"] == 0 and summary["kernelSymbols"] > 0
