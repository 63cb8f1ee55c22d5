"""Native probes benchmark: what a stack costs per traced call (syscalls and uprobes).

A C program built here times itself (clock_gettime around the loop, so
process start-up is not counted) making N ``getppid`` system calls, or N calls
of a uprobe'd function, through a chain of frames a frame-pointer walk
follows. Each configuration is loaded once and the program run ``--runs``
times under it; reported: the median ns per call and the ns it adds to the
same loop run without probes (median too), with the in-kernel counters (lost
and stack_lost must be 0 for a figure to mean anything: a lost record is
cheaper than a delivered one). The records are read between runs, not during
them: this is the cost the probes add to the traced program (on a 2-core
machine a reader running meanwhile would compete with it for a CPU); what
the reader and decoder cost is bench/native_probes_bench.py's events/s.

Configurations: syscall traced with no stack, kernel stack, user stack, both
(one program, the case switched run by run through its want map, so the
cases alternate); uprobe+uretprobe with no stack, with the caller's user stack
(one program each). Stacks are
walked with ``bpf_get_stack`` into the record (native/probes/prelude.py).

Run as root: ``python bench/native_stack_bench.py [--calls N] [--runs R]``;
prints JSON. The figures are in docs/benchmarks.md ("Native probes: stacks").
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.contracts.syscalls import X86_64
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.detect import detect
from stellaops_runtime.native.loader import load
from stellaops_runtime.native.probes import syscalls
from stellaops_runtime.native.session import default_cache_dir

PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

__attribute__((noinline)) long stella_call(void) {
    long r;
    __asm__ volatile ("syscall" : "=a"(r) : "0"((long)SYS_getppid) : "rcx", "r11", "memory");
    return r;
}
__attribute__((noinline)) long stella_fast(long x) { __asm__ volatile(""); return x + 1; }
/* a few frames above the call, as real code has */
__attribute__((noinline)) long stella_c(int sys, long i) { return sys ? stella_call() : stella_fast(i); }
__attribute__((noinline)) long stella_b(int sys, long i) { return stella_c(sys, i) + 1; }
__attribute__((noinline)) long stella_a(int sys, long i) { return stella_b(sys, i) + 1; }

int main(int argc, char **argv) {
    int sys = !strcmp(argv[1], "syscall");
    long n = atol(argv[2]), s = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++) s += stella_a(sys, i);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%.1f %ld\n", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / n, s);
    return 0;
}
"""


def _ns_per_call(binary: Path, mode: str, calls: int) -> float:
    out = subprocess.run([str(binary), mode, str(calls)], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[0])


def _runs(binary: Path, mode: str, calls: int, runs: int) -> list[float]:
    return [_ns_per_call(binary, mode, calls) for _ in range(runs)]


def _uprobe_configs(binary: Path) -> list[tuple[str, NativeConfig]]:
    target = UprobeTarget(str(binary), "stella_fast")
    # 8192 pages: a uprobe record with a stack is reserved whole (about 1 KiB, native-probes.md)
    up: dict[str, Any] = {"exec_events": False, "ring_buffer_pages": 8192, "uprobes": (target,)}
    return [
        ("no_stack", NativeConfig(**up, user_stacks=False)),
        ("user_stack", NativeConfig(**up, user_stacks=True)),
    ]


# The syscall cases share one loaded program: what getppid's events carry is its value in the
# want map (native/probes/syscalls.py), changed between runs, so the cases alternate run by run
# and a busy spell of the machine weighs on all of them alike.
SYSCALL_CASES = (
    ("attached_not_wanted", 0),  # the tracepoint runs, finds getppid unwanted: no record
    ("no_stack", syscalls.WANT),
    ("kernel_stack", syscalls.WANT | syscalls.KERNEL_STACK),
    ("user_stack", syscalls.WANT | syscalls.USER_STACK),
    ("kernel_and_user_stacks", syscalls.WANT | syscalls.KERNEL_STACK | syscalls.USER_STACK),
)


def _syscall_cases(rep: Any, binary: Path, calls: int, runs: int, base: float) -> dict[str, Any]:
    cfg = NativeConfig(
        exec_events=False, syscalls=("getppid",), kernel_stack_syscalls=("getppid",),
        user_stack_syscalls=("getppid",), ring_buffer_pages=4096,
    )  # fmt: skip
    ps = load(cfg, kernel_source=rep.kernel_source, ring_buffer=rep.ok("ring buffer"))
    want = ps.bpf[b"stella_syscall_want"]
    took: dict[str, list[float]] = {name: [] for name, _ in SYSCALL_CASES}
    records = 0
    try:
        for _ in range(runs):
            for name, bits in SYSCALL_CASES:
                want[ctypes.c_int(X86_64["getppid"])] = ctypes.c_uint8(bits)
                took[name].append(_ns_per_call(binary, "syscall", calls))
                while batch := ps.poll(0):
                    records += len(batch)
        k = ps.counters()["syscall"]
    finally:
        ps.close()
    out: dict[str, Any] = {}
    for name, values in took.items():
        median = statistics.median(values)
        out[name] = {"ns_per_call": round(median, 1), "ns_added_per_call": round(median - base, 1)}
    out["counters"] = {"emitted": k["emitted"], "lost": k["lost"], "stack_lost": k["stack_lost"]}
    out["records_read"] = records
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20_000, help="calls per run (each one a record)")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    rep = detect(mount_tracefs=True, cache_dir=default_cache_dir())
    if rep.posture < Posture.EBPF_DEEP:
        print(json.dumps({"skipped": f"posture {rep.posture}: {rep.missing}"}))
        return 0
    with tempfile.TemporaryDirectory() as d:
        src, binary = Path(d) / "calls.c", Path(d) / "calls"
        src.write_text(PROGRAM)
        subprocess.run(["gcc", "-O1", "-fno-omit-frame-pointer", "-o", str(binary), str(src)], check=True)
        base = {
            mode: statistics.median(_runs(binary, mode, args.calls, args.runs))
            for mode in ("syscall", "call")
        }
        out: dict[str, Any] = {
            "calls_per_run": args.calls,
            "runs": args.runs,
            "ring_buffer": rep.ok("ring buffer"),
            "no_probe_ns_per_call": {
                "syscall": round(base["syscall"], 1),
                "uprobe_function": round(base["call"], 1),
            },
        }
        out["syscall"] = _syscall_cases(rep, binary, args.calls, args.runs, base["syscall"])
        for name, cfg in _uprobe_configs(binary):
            ps = load(cfg, kernel_source=rep.kernel_source, ring_buffer=rep.ok("ring buffer"))
            took: list[float] = []
            records = 0
            try:
                for _ in range(args.runs):
                    took.append(_ns_per_call(binary, "call", args.calls))
                    while batch := ps.poll(0):
                        records += len(batch)
                k = ps.counters()["uprobe"]
            finally:
                ps.close()
            median = statistics.median(took)
            out.setdefault("uprobe", {})[name] = {
                "ns_per_call": round(median, 1),
                "ns_added_per_call": round(median - base["call"], 1),
                "emitted": k["emitted"],
                "lost": k["lost"],
                "stack_lost": k["stack_lost"],
                "records_read": records,
            }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
