"""Benchmark of frame canonicalization: cold (first sight of a binary) and warm, and symbol table loads.

What it measures, on one core (the process pins itself to its first allowed CPU):

1. cold: the time to canonicalize ONE Tetragon user frame (module + file offset,
   build-id from a process_loader event, host-root lookup) with a fresh
   FrameCanonicalizer, i.e. build-id check + section headers + symbol table
   load + index + lookup + demangle, for libc.so.6, libstdc++.so.6,
   /usr/bin/containerd (117k-record .dynsym) and /usr/sbin/runc (stripped Go:
   resolved from .gopclntab);
2. warm: per-frame time once the (build-id, file offset) result is cached,
   over frames into the same libraries (the agent's steady state), and the
   Symbolizer's own warm path without the frame cache (stat-keyed build-id +
   bisect + memoized name);
3. whole-table loads of containerd: pyelftools ``iter_symbols()`` over
   ``.dynsym`` (the baseline, measured in the same run) against our
   ``struct.iter_unpack`` reader, and the ``.gopclntab`` parse;
4. cold batch against llvm-symbolizer (bench/symbolize_batch.py): 10,000
   in-function offsets of libstdc++, containerd and libLLVM, first sight,
   llvm-symbolizer (Debian's ``llvm``) as the baseline in the same run, with
   CPU times beside the wall times, and a restart that loads the tables from
   the index cache (canonical/indexcache.py).

Machines here are shared and noisy: compare ratios within one run. Usage::

    .venv/bin/python bench/symbolize_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from elftools.elf.elffile import ELFFile
from symbolize_batch import bench_cold_batch, print_cold_batch  # bench/ (run.py puts it on sys.path)

from stellaops_runtime.canonical import gopclntab
from stellaops_runtime.canonical.demangle import clear_cache
from stellaops_runtime.canonical.frames import FrameCanonicalizer
from stellaops_runtime.canonical.symbolizer import Symbolizer
from stellaops_runtime.canonical.symtab import function_symbols, read_sections
from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent, StackFrame

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
LIBSTDCXX = "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"
CONTAINERD = "/usr/bin/containerd"
RUNC = "/usr/sbin/runc"
COLD_TARGETS = [LIBC, LIBSTDCXX, CONTAINERD, RUNC]


def pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def _timed(fn: Callable[[], object]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _function_offsets(path: str, n: int) -> list[int]:
    """File offsets inside ``n`` functions of ``path`` (entry + 4), spread over its table."""
    sym = Symbolizer()
    b = sym.binary(path)
    table = max(b.load_all(), key=len)
    step = max(1, len(table) // n)
    out = []
    for i in range(0, len(table), step):
        off = b.layout.offset_of(table.starts[i] + 4)
        if off is not None and table.ends[i] > table.starts[i] + 4:
            out.append(off)
    sym.close()
    return out[:n]


def _frame_event(exec_id: str, frames: list[StackFrame]) -> RuntimeCallEvent:
    return RuntimeCallEvent(
        EventKind.SYSCALL, 0, "bench", ProcessInfo(exec_id=exec_id, pid=0), user_stack=frames
    )


def bench_cold(paths: list[str], runs: int) -> dict[str, Any]:
    """ms to canonicalize the first frame of a binary never seen before."""
    out: dict[str, Any] = {}
    for path in paths:
        if not Path(path).exists():
            out[path] = "missing"
            continue
        bid = Symbolizer().file_build_id(path)[0]
        offset = _function_offsets(path, 50)[25]
        times = []
        sources = set()
        for _ in range(runs):
            clear_cache()
            fc = FrameCanonicalizer(proc_root=None, host_root="/")
            fc.remember_build_id("bench", path, bid)
            frame = StackFrame(module=path, offset=offset)
            times.append(_timed(lambda fc=fc, frame=frame: fc.canonicalize(_frame_event("bench", [frame]))))
            sources.add(str(frame.source))
            fc.symbolizer.close()
        out[path] = {"ms": round(statistics.median(times) * 1e3, 2), "source": ",".join(sorted(sources))}
    return out


def bench_warm(runs: int) -> dict[str, Any]:
    """us per frame with warm caches: FrameCanonicalizer (frame cache) and Symbolizer (no frame cache)."""
    libs = [p for p in (LIBC, LIBSTDCXX, CONTAINERD) if Path(p).exists()]
    fc = FrameCanonicalizer(proc_root=None, host_root="/")
    sym = Symbolizer()
    offsets = {p: _function_offsets(p, 200) for p in libs}
    for p in libs:
        fc.remember_build_id("bench", p, sym.file_build_id(p)[0])
    # One event shape like Tetragon's: 8 frames each, across the libraries.
    flat = [(p, off) for p in libs for off in offsets[p]]
    events = []
    for i in range(0, len(flat) - 8, 8):
        events.append([StackFrame(module=p, offset=o) for p, o in flat[i : i + 8]])
    nframes = sum(len(e) for e in events)

    def canonicalize_all() -> None:
        for frames in events:
            fc.canonicalize(_frame_event("bench", frames))

    def symbolize_all() -> None:
        for p, off in flat:
            sym.resolve_file(p, off)

    canonicalize_all()  # warm-up: loads and caches everything
    symbolize_all()
    assert all(f.source in ("symtab", "dynsym", "gopclntab") for e in events for f in e)
    fc_times, sym_times = [], []
    for _ in range(runs):
        fc_times.append(_timed(canonicalize_all))
        sym_times.append(_timed(symbolize_all))
    return {
        "frames": nframes,
        "frame_canonicalizer_us_per_frame": round(statistics.median(fc_times) / nframes * 1e6, 2),
        "symbolizer_resolve_file_us_per_frame": round(statistics.median(sym_times) / len(flat) * 1e6, 2),
    }


def bench_tables(runs: int) -> dict[str, Any]:
    """Whole-table loads of containerd: pyelftools iter_symbols (baseline) vs struct reader, pclntab."""
    if not Path(CONTAINERD).exists():
        return {"skipped": f"{CONTAINERD} missing"}

    def pyelftools_all() -> int:
        with open(CONTAINERD, "rb") as f:
            sec = ELFFile(f).get_section_by_name(".dynsym")
            n = 0
            for s in sec.iter_symbols():
                if s["st_info"]["type"] == "STT_FUNC" and s["st_shndx"] != "SHN_UNDEF":
                    n += 1
            return n

    def struct_all() -> int:
        with open(CONTAINERD, "rb") as f:
            sections = read_sections(ELFFile(f))
            return len(function_symbols(sections, f, ".dynsym", is64=True, little=True))

    def pclntab_all() -> int:
        with open(CONTAINERD, "rb") as f:
            sec = next(s for s in read_sections(ELFFile(f)) if s.name == ".gopclntab")
            f.seek(sec.offset)
            return len(gopclntab.parse_functions(f.read(sec.size), little=True)[1])

    counts = {"pyelftools": pyelftools_all(), "struct": struct_all(), "gopclntab": pclntab_all()}
    times: dict[str, list[float]] = {k: [] for k in counts}
    cases = {"pyelftools": pyelftools_all, "struct": struct_all, "gopclntab": pclntab_all}
    for _ in range(runs):
        for k, fn in cases.items():
            times[k].append(_timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "functions": counts,
        "ms": {k: round(v * 1e3, 1) for k, v in med.items()},
        "speedup_struct_vs_pyelftools": round(med["pyelftools"] / med["struct"], 1),
    }


def run(*, runs: int = 5) -> dict[str, Any]:
    pin_one_core()
    return {
        "runs": runs,
        "cold_first_frame": bench_cold(COLD_TARGETS, runs),
        "warm": bench_warm(runs),
        "containerd_table_load": bench_tables(runs),
        "cold_batch_vs_llvm_symbolizer": bench_cold_batch(runs),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = ap.parse_args(argv)
    res = run(runs=args.runs)
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    print(f"frame canonicalization (median of {args.runs} runs, one core)")
    print(f"{'cold, first frame of':<44} {'ms':>9}  source")
    for path, v in res["cold_first_frame"].items():
        if isinstance(v, dict):
            print(f"  {path:<42} {v['ms']:>9.2f}  {v['source']}")
        else:
            print(f"  {path:<42} {v:>9}")
    w = res["warm"]
    for label, key in (
        ("warm, FrameCanonicalizer (frame cache)", "frame_canonicalizer_us_per_frame"),
        ("warm, Symbolizer.resolve_file (no frame cache)", "symbolizer_resolve_file_us_per_frame"),
    ):
        print(f"{label:<46} {w[key]:>7.2f} us/frame")
    t = res["containerd_table_load"]
    if "ms" in t:
        print("containerd whole-table load (functions)")
        for k, v in t["ms"].items():
            print(f"  {k:<42} {v:>9.1f} ms  ({t['functions'][k]} functions)")
        print(f"  struct reader vs pyelftools iter_symbols: {t['speedup_struct_vs_pyelftools']}x faster")
    else:
        print(t)
    print_cold_batch(res["cold_batch_vs_llvm_symbolizer"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
