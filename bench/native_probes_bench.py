"""Native probes benchmark: added cost per call of a uprobe'd function, and records/s into the decoder.

A C program built here calls a tiny function N times; it runs without probes,
then with uprobe+uretprobe (with and without user stacks). Reported: ns per
call and ns added, plus records the kernel emitted and the decoder turned into
events per second (the rest are counted as queue drops, never silent).
Run as root: ``python bench/native_probes_bench.py [--calls N]``; prints JSON.
Not yet a section of bench/run.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.detect import detect
from stellaops_runtime.native.session import default_cache_dir, run_session

PROGRAM = r"""
#include <stdlib.h>
__attribute__((noinline)) int stella_fast(int x) { __asm__ volatile(""); return x + 1; }
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    long s = 0;
    for (int i = 0; i < n; i++) s += stella_fast(i);
    return s == 42;
}
"""


def _timed(binary: Path, calls: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([str(binary), str(calls)], check=False)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200_000)
    args = ap.parse_args()
    rep = detect(mount_tracefs=True, cache_dir=default_cache_dir())
    if rep.posture < Posture.EBPF_DEEP:
        print(json.dumps({"skipped": f"posture {rep.posture}: {rep.missing}"}))
        return 0
    with tempfile.TemporaryDirectory() as d:
        src, binary = Path(d) / "fast.c", Path(d) / "fast"
        src.write_text(PROGRAM)
        subprocess.run(["gcc", "-O1", "-fno-omit-frame-pointer", "-o", str(binary), str(src)], check=True)
        base = _timed(binary, args.calls)
        out: dict[str, object] = {
            "calls": args.calls,
            "no_probe_ns_per_call": round(base / args.calls * 1e9, 1),
        }
        for stacks in (False, True):
            cfg = NativeConfig(
                exec_events=False, user_stacks=stacks, ring_buffer_pages=4096,
                uprobes=(UprobeTarget(str(binary), "stella_fast"),),
            )  # fmt: skip
            took: list[float] = []

            def workload(into: list[float] = took) -> None:
                into.append(_timed(binary, args.calls))

            t0 = time.perf_counter()
            res = asyncio.run(
                run_session(
                    cfg, seconds=1.0, report=rep, during=workload, on_event=lambda _e: None,
                    queue_capacity=1_000_000,
                )
            )  # fmt: skip
            wall = time.perf_counter() - t0
            key = "with_stacks" if stacks else "without_stacks"
            out[key] = {
                "ns_per_call": round(took[0] / args.calls * 1e9, 1),
                "ns_added_per_call": round((took[0] - base) / args.calls * 1e9, 1),
                "kernel": res.kernel_counters.get("uprobe", {}),
                "decoded": res.decoded,
                "queue_dropped": res.queue_dropped,
                "decoded_per_second": round(res.decoded / wall),
            }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
