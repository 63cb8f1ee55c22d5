"""Before/after comparison of the symbolizer's cold and warm paths: two source trees, alternating processes.

Why it exists: on a shared machine two benchmark runs minutes apart are not
comparable, so a change to the canonicalizer is measured against the code
before it in the same minutes. Each round starts one fresh interpreter per
tree (``PYTHONPATH`` set to that tree's ``operator/``), which

- resolves 10,000 seeded offsets inside functions of the file (those of
  bench/symbolize_batch.py) with ``resolve_file`` on a new ``Symbolizer``:
  cold CPU seconds (``time.process_time``) and wall seconds, first use of
  everything in the process included;
- then resolves them again 7 times: warm µs per call, the best pass;
- then gives the same offsets to a ``FrameCanonicalizer`` (the agent's
  per-frame path) as Tetragon user frames, 8 per event, once the file is
  indexed with every lazy source loaded: µs per frame on first sight of each
  frame (its frame cache misses: the file's loaded tables answer) and on
  second sight (the frame cache answers), the best of 3 passes each.

Rounds alternate the trees so drifting load hits both alike; medians and
minimums over rounds are printed. Usage (the "before" tree from git, e.g.
``git worktree add /tmp/before HEAD`` or ``git archive HEAD operator | tar -x -C /tmp/before``)::

    .venv/bin/python bench/symbolize_ab.py --before /tmp/before/operator [--rounds 9] [FILE ...]

``--instructions`` measures instead what load cannot move: the machine
instructions one warm ``resolve_file`` call and one frame of each kind
execute, counted by valgrind's cachegrind (``valgrind`` must be installed)
as the difference between a child that makes 2 warm passes over 2,000
offsets and one that makes none, per call. One run per tree; slow (about a
minute per file and tree).

``--cold-instructions`` counts the cold batch the same way, per phase
(millions of instructions): children that stop after imports, after
``Symbolizer.binary()`` (identity and index), after the 10,000
``resolve_file`` calls of bench/symbolize_batch.py (``--batch``: one
``resolve_file_many`` call) and after 10,000 more; each phase is the
difference between two of them. Four valgrind runs per file and tree. Each
child ends with ``os._exit``: before 2026-12-05 they ended normally, so each
phase also counted freeing what it made at the interpreter's exit (and the
exit's collection), e.g. 19 M of the 196 M counted for indexing libLLVM-14.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from cachegrind import instructions as instructions_of
from symbolize_batch import TARGETS, pick_addresses

_CHILD = r"""
import gc, json, os, sys, time
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
path, offsets = sys.argv[1], json.load(open(sys.argv[2]))
mode = sys.argv[3] if len(sys.argv) > 3 else "time"
passes = int(sys.argv[4]) if len(sys.argv) > 4 else 7
from stellaops_runtime.canonical.frames import FrameCanonicalizer
from stellaops_runtime.canonical.symbolizer import Symbolizer
from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent, StackFrame
sym = Symbolizer(file_lines=False, recheck_seconds=3600)
resolve = sym.resolve_file
gc.collect()
c0, t0 = time.process_time(), time.perf_counter()
for off in offsets:
    resolve(path, off)
cold_cpu, cold_wall = time.process_time() - c0, time.perf_counter() - t0
warm = float("inf")
collect = gc.collect if mode == "time" else (lambda: 0)  # counting: no full collection per pass
if mode != "time":  # counting: what exists now is never scanned again, so a collection costs only
    gc.freeze()     # what the lookups themselves allocate (else the heap's size decides the count)
for _ in range(passes if mode == "time" else passes * (mode == "resolve_file")):
    collect()
    t0 = time.perf_counter()
    for off in offsets:
        resolve(path, off)
    warm = min(warm, time.perf_counter() - t0)
fc = FrameCanonicalizer(proc_root=None, host_root="/")
fc.remember_build_id("ab", path, sym.binary(path).build_id)
proc = ProcessInfo(exec_id="ab", pid=0)
def frames(shift):
    moved = [o + shift for o in offsets]
    return [[StackFrame(module=path, offset=o) for o in moved[i : i + 8]] for i in range(0, len(moved), 8)]
def run(events):
    canonicalize = fc.canonicalize
    collect()
    t0 = time.perf_counter()
    for fs in events:
        canonicalize(RuntimeCallEvent(EventKind.SYSCALL, 0, "ab", proc, user_stack=fs))
    return time.perf_counter() - t0
run([frames(0)[0][:1]])  # indexes the file in the canonicalizer's own Symbolizer
fc.symbolizer.binary(path).load_all()  # lazy sources too: first sight of a frame is then a lookup
if mode != "time":
    gc.freeze()
first = second = float("inf")
if mode == "frame_second":  # seen once, outside what is counted
    run(frames(1))
rounds = {"time": 3, "frame_first": passes, "frame_second": passes}.get(mode, 0)
for k in range(rounds):
    shift = 1 if mode == "frame_second" else k + 1
    evs = frames(shift)  # offsets moved by a few bytes: frames never seen (nearly all in the same functions)
    if mode != "frame_second":
        first = min(first, run(evs))
    if mode != "frame_first":
        second = min(second, run(frames(shift)))  # new StackFrame objects, the same frames again
n = len(offsets)
print(json.dumps({"cold_cpu": cold_cpu, "cold_wall": cold_wall, "warm_us": warm / n * 1e6,
                  "frame_first_us": first / n * 1e6, "frame_second_us": second / n * 1e6}))
"""

KEYS = ("cold_cpu", "cold_wall", "warm_us", "frame_first_us", "frame_second_us")

# --cold-instructions: a child that stops after a stage (0 imports and a new Symbolizer, 1 the file
# identified and indexed, 2 the 10,000 offsets resolved cold, 3 resolved again warm); the
# difference between two stages is what the later one costs.
_COLD_CHILD = r"""
import gc, json, sys
path, offsets, stage, batch = sys.argv[1], json.load(open(sys.argv[2])), int(sys.argv[3]), sys.argv[4] == "1"
from stellaops_runtime.canonical.demangle import clear_cache
from stellaops_runtime.canonical.symbolizer import Symbolizer
sym = Symbolizer(file_lines=False, recheck_seconds=3600)
clear_cache()
gc.collect()
if stage >= 1:
    sym.binary(path)
if stage >= 2:
    if batch:
        answers = sym.resolve_file_many(path, offsets)
    else:
        answers = [sym.resolve_file(path, off) for off in offsets]  # kept, as bench/symbolize_batch.py does
if stage >= 3:
    for off in offsets:
        sym.resolve_file(path, off)
import os
os._exit(0)  # no interpreter teardown: freeing what a stage made (and the exit's collection) is no phase
"""
COLD_STAGES = ("index", "first_lookups", "warm_lookups")


def _pythonpath(tree: str) -> str:
    """The children's module path: ``tree`` first, then this process's own ``PYTHONPATH`` if any (so
    another interpreter, e.g. the image's Debian python3 given the venv's site-packages, works too)."""
    inherited = os.environ.get("PYTHONPATH", "")
    return f"{tree}{os.pathsep}{inherited}" if inherited else tree


def cold_instructions(tree: str, path: str, offsets_file: str, batch: bool) -> dict[str, float]:
    """Millions of machine instructions (cachegrind) of each phase of the cold batch: identifying and
    indexing the file, the first lookups of the offsets (names decoded and demangled), the same
    lookups warm; ``cold`` is the first two. ``batch``: one ``resolve_file_many`` call for the
    first lookups instead of a ``resolve_file`` call per offset."""
    env = {**os.environ, "PYTHONPATH": _pythonpath(tree), "PYTHONHASHSEED": "0"}
    child = [sys.executable, "-c", _COLD_CHILD, path, offsets_file]
    counts = [instructions_of([*child, str(stage), str(int(batch))], env) for stage in range(4)]
    out = {name: round((counts[k + 1] - counts[k]) / 1e6, 1) for k, name in enumerate(COLD_STAGES)}
    out["cold"] = round((counts[2] - counts[0]) / 1e6, 1)
    return out


def run_child(tree: str, path: str, offsets_file: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": _pythonpath(tree)}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, path, offsets_file],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def compare(before: str, after: str, path: str, rounds: int) -> dict[str, dict[str, float]]:
    _, offsets = pick_addresses(path)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(offsets, f)
    try:
        runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
        for _ in range(rounds):
            for name, tree in (("before", before), ("after", after)):
                runs[name].append(run_child(tree, path, f.name))
    finally:
        os.unlink(f.name)
    out: dict[str, dict[str, float]] = {}
    for name, rs in runs.items():
        row: dict[str, float] = {}
        for key in KEYS:
            vals = [r[key] for r in rs]
            row[f"{key}_median"] = round(statistics.median(vals), 4)
            row[f"{key}_min"] = round(min(vals), 4)
        out[name] = row
    return out


def instructions(tree: str, path: str, offsets_file: str, n: int) -> dict[str, int]:
    """Machine instructions per warm call / frame (cachegrind): 2 passes minus none, per item."""
    out: dict[str, int] = {}
    env = {**os.environ, "PYTHONPATH": _pythonpath(tree), "PYTHONHASHSEED": "0"}  # same run twice: same count
    for mode in ("resolve_file", "frame_first", "frame_second"):
        counts = []
        for passes in (0, 2):
            cmd = [sys.executable, "-c", _CHILD, path, offsets_file, mode, str(passes)]
            counts.append(instructions_of(cmd, env))
        out[mode] = round((counts[1] - counts[0]) / (2 * n))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="the operator/ directory of the code before the change")
    ap.add_argument("--after", default=str(Path(__file__).resolve().parent.parent / "operator"))
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--instructions", action="store_true", help="count instructions with valgrind instead")
    ap.add_argument(
        "--cold-instructions",
        action="store_true",
        help="count the cold batch's instructions per phase with valgrind (index, first lookups, warm)",
    )
    ap.add_argument(
        "--batch", action="store_true", help="with --cold-instructions: one resolve_file_many call"
    )
    ap.add_argument("targets", nargs="*")
    args = ap.parse_args()
    for path in args.targets or TARGETS:
        if not Path(path).exists():
            print(f"{path}: missing")
            continue
        if args.cold_instructions:
            _, offsets = pick_addresses(path)
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump(offsets, f)
            try:
                cold = {
                    name: cold_instructions(tree, path, f.name, args.batch)
                    for name, tree in (("before", args.before), ("after", args.after))
                }
            finally:
                os.unlink(f.name)
            print(json.dumps({path: cold}))
            b, a = cold["before"], cold["after"]
            phases = ", ".join(f"{k} {b[k]} -> {a[k]}" for k in (*COLD_STAGES, "cold"))
            print(f"  {Path(path).name}: millions of instructions, {phases}", flush=True)
            continue
        if args.instructions:
            _, offsets = pick_addresses(path, 2000)
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump(offsets, f)
            try:
                counts = {
                    name: instructions(tree, path, f.name, len(offsets))
                    for name, tree in (("before", args.before), ("after", args.after))
                }
            finally:
                os.unlink(f.name)
            print(json.dumps({path: counts}))
            b, a = counts["before"], counts["after"]
            print(
                f"  {Path(path).name}: instructions per warm resolve_file {b['resolve_file']} -> "
                f"{a['resolve_file']}; per frame, first sight {b['frame_first']} -> {a['frame_first']}, "
                f"second sight {b['frame_second']} -> {a['frame_second']}",
                flush=True,
            )
            continue
        res = compare(args.before, args.after, path, args.rounds)
        print(json.dumps({path: res}))
        b, a = res["before"], res["after"]
        cold = (
            f"cold CPU s median (min) {b['cold_cpu_median']:.3f} ({b['cold_cpu_min']:.3f})"
            f" -> {a['cold_cpu_median']:.3f} ({a['cold_cpu_min']:.3f})"
        )
        warm = "; ".join(
            f"{label} us median (min) {b[k + '_median']:.2f} ({b[k + '_min']:.2f})"
            f" -> {a[k + '_median']:.2f} ({a[k + '_min']:.2f})"
            for k, label in (
                ("warm_us", "warm resolve_file"),
                ("frame_first_us", "frame first sight"),
                ("frame_second_us", "frame second sight"),
            )
        )
        print(f"  {Path(path).name}: {cold}; {warm}", flush=True)


if __name__ == "__main__":
    main()
