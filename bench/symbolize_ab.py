"""Before/after comparison of the symbolizer's cold and warm paths: two source trees, alternating processes.

Why it exists: on a shared machine two benchmark runs minutes apart are not
comparable, so a change to the canonicalizer is measured against the code
before it in the same minutes. Each round starts one fresh interpreter per
tree (``PYTHONPATH`` set to that tree's ``operator/``), which

- resolves 10,000 seeded offsets inside functions of the file (those of
  bench/symbolize_batch.py) with ``resolve_file`` on a new ``Symbolizer``:
  cold CPU seconds (``time.process_time``) and wall seconds, first use of
  everything in the process included;
- then resolves them again 7 times: warm µs per call, the best pass.

Rounds alternate the trees so drifting load hits both alike; medians and
minimums over rounds are printed. Usage (the "before" tree from git, e.g.
``git worktree add /tmp/before HEAD`` or ``git archive HEAD operator | tar -x -C /tmp/before``)::

    .venv/bin/python bench/symbolize_ab.py --before /tmp/before/operator [--rounds 9] [FILE ...]
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

from symbolize_batch import TARGETS, pick_addresses

_CHILD = r"""
import gc, json, os, sys, time
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
path, offsets = sys.argv[1], json.load(open(sys.argv[2]))
from stellaops_runtime.canonical.symbolizer import Symbolizer
sym = Symbolizer(file_lines=False, recheck_seconds=3600)
resolve = sym.resolve_file
gc.collect()
c0, t0 = time.process_time(), time.perf_counter()
for off in offsets:
    resolve(path, off)
cold_cpu, cold_wall = time.process_time() - c0, time.perf_counter() - t0
warm = float("inf")
for _ in range(7):
    gc.collect()
    t0 = time.perf_counter()
    for off in offsets:
        resolve(path, off)
    warm = min(warm, time.perf_counter() - t0)
print(json.dumps({"cold_cpu": cold_cpu, "cold_wall": cold_wall, "warm_us": warm / len(offsets) * 1e6}))
"""


def run_child(tree: str, path: str, offsets_file: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": tree}
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
        for key in ("cold_cpu", "cold_wall", "warm_us"):
            vals = [r[key] for r in rs]
            row[f"{key}_median"] = round(statistics.median(vals), 4)
            row[f"{key}_min"] = round(min(vals), 4)
        out[name] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="the operator/ directory of the code before the change")
    ap.add_argument("--after", default=str(Path(__file__).resolve().parent.parent / "operator"))
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("targets", nargs="*")
    args = ap.parse_args()
    for path in args.targets or TARGETS:
        if not Path(path).exists():
            print(f"{path}: missing")
            continue
        res = compare(args.before, args.after, path, args.rounds)
        print(json.dumps({path: res}))
        b, a = res["before"], res["after"]
        cold = (
            f"cold CPU s median (min) {b['cold_cpu_median']:.3f} ({b['cold_cpu_min']:.3f})"
            f" -> {a['cold_cpu_median']:.3f} ({a['cold_cpu_min']:.3f})"
        )
        warm = (
            f"warm us min (median) {b['warm_us_min']:.2f} ({b['warm_us_median']:.2f})"
            f" -> {a['warm_us_min']:.2f} ({a['warm_us_median']:.2f})"
        )
        print(f"  {Path(path).name}: {cold}; {warm}", flush=True)


if __name__ == "__main__":
    main()
