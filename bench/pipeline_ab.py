"""Before/after comparison of the pipeline's throughput: two source trees, alternating processes.

Why it exists: on a shared machine two runs of ``bench/run.py --only pipeline``
minutes apart are not comparable, so a change to the adapter, the privacy
filter or the pipeline glue is measured against the code before it in the
same minutes. Each round starts one fresh interpreter per tree
(``PYTHONPATH`` set to that tree's ``operator/``, pinned to one core) that
runs the corpora of bench/run.py (written once by this process, so both
trees see the same bytes) through ``Pipeline.process_proto`` in batches of
512, as bench/run.py does, after one untimed warm-up pass:

- ``never repeating``: stacks that never repeat (bench/run.py ``unique_stacks``),
  fast path on (the default) and off;
- ``fixture mix``: the synthetic stream cycled (bench/run.py ``corpus``), fast
  path on and off;
- ``adapter only``: ``from_proto.decode`` and ``adapt`` alone on both corpora;
- ``decode only``: upb decoding of the fixture mix (the baseline).

Rounds alternate the trees (and which goes first) so drifting load hits both
alike; each case reports events per CPU second (``time.process_time``) and
per wall second, median over rounds, and after/before ratios. Usage (the
"before" tree from git, e.g. ``git archive HEAD operator | tar -x -C /tmp/before``)::

    .venv/bin/python bench/pipeline_ab.py --before /tmp/before/operator [--rounds 5] [--events 30000]

Two more modes measure what load cannot move, or where the time goes:

- ``--instructions``: machine instructions per event (valgrind's cachegrind,
  ``valgrind`` must be installed) of the never-repeating stream through the
  pipeline (fast path on and off) and through the adapter alone, and of the
  fixture mix through the pipeline (fast path on; a new pipeline, so in 3,000
  events most are first or second sights) and, ``mix_warm``, through a
  pipeline that has processed the same events three times already (mostly
  repeats, as in bench/run.py's 60,000 events), counted as
  the difference between a child that processes ``--events`` events after
  its warm-up pass and one that processes none (``PYTHONHASHSEED=0``: the
  same run twice gives the same count). Where the cyclic garbage collector's
  full passes fall (inside the counted events or not) can move one tree's
  count against another's by far more than a change of a few per cent in
  the work per event (the fixture mix by up to 25 %): given as
  ``--before <tree>:<dir>`` and ``--after <tree>:<dir>``, where ``<dir>``
  holds a ``sitecustomize.py`` that calls ``gc.disable()``, the counts
  leave the collector out. One run per tree and case; slow
  (about a minute each at 3,000 events).
- ``--profile``: cProfile over the pipeline (fast path on) on the
  never-repeating stream of the "after" tree, and the share of the time in
  each stage: the adapter (decode and adapt), the fast path's own work
  (keys, sampling, remembering), the opt-out check, the privacy filter, the
  canonicalizer, the aggregator, and the pipeline's glue (the rest).
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

ROOT = Path(__file__).resolve().parents[1]

# The corpora as the children read them: length-prefixed payloads (written by ``_write``).
_READ = r"""def read(path):
    data = open(path, "rb").read()
    out, i = [], 0
    while i < len(data):
        (n,) = struct.unpack_from("<I", data, i)
        out.append(data[i + 4 : i + 4 + n])
        i += 4 + n
    return out
"""

_CHILD = (
    r"""
import gc, json, os, struct, sys, time
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
"""
    + _READ
    + r"""from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.wire.tetragon import events_pb2
cfg = parse_config({"hotSymbols": {"aggregationWindowSeconds": 60}})
corpora = {"never repeating": read(sys.argv[1]), "fixture mix": read(sys.argv[2])}
out = {}
def timed(fn):
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - t0
for name, payloads in corpora.items():
    items = [(p, 1) for p in payloads]
    for fast in (True, False):
        def run():
            pipe = Pipeline(cfg, node_name="bench", fast_path=fast)
            pipe.warm_up()
            if pipe.canonicalizer is not None:  # kallsyms, loaded by the first kernel frame: untimed
                pipe.canonicalizer.symbolizer.kernel()
            def go():
                for i in range(0, len(items), 512):
                    pipe.process_proto(items[i : i + 512])
                assert pipe.processed == len(items)
            return go
        run()()  # warm-up pass: imports, first sights of files
        cpu, wall = timed(run())
        out[f"{name}, fast path {'on' if fast else 'off'}"] = (len(items) / cpu, len(items) / wall)
from stellaops_runtime.adapter import common, from_proto
for name, payloads in corpora.items():
    def adapter(payloads=payloads):
        st = common.AdapterStats()
        for p in payloads:
            from_proto.adapt(from_proto.decode(p, st), received_ns=1, stats=st)
    adapter()
    cpu, wall = timed(adapter)
    out[f"{name}, adapter only (decode and adapt)"] = (len(payloads) / cpu, len(payloads) / wall)
parse = events_pb2.GetEventsResponse.FromString
mix = corpora["fixture mix"]
def dec():
    for p in mix:
        parse(p)
dec()
cpu, wall = timed(dec)
out["decode only"] = (len(mix) / cpu, len(mix) / wall)
print(json.dumps(out))
"""
)


# One case of --instructions: after the warm-up pass, ``n`` events (0: none) of the case's corpus.
_COUNT_CHILD = (
    r"""
import struct, sys
"""
    + _READ
    + r"""from stellaops_runtime.adapter import common, from_proto
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
payloads, case, n = read(sys.argv[1]), sys.argv[2], int(sys.argv[3])
items = [(p, 1) for p in payloads]
# Under valgrind the child runs ~50x slower, and two things of the canonicalizer depend on the
# wall clock: a batch's wait for a parse (symbols.parseWaitMilliseconds, 200 ms: frames came out
# parse_pending, then resolved in a later pass) and how long a file is trusted before it is checked
# again (1 s: stat and identity read again every few events). Both made counts move with the load by
# more than the events' own; here every batch waits for its parses and a file is trusted an hour, as
# in the few seconds of a run outside valgrind.
cfg = parse_config(
    {"hotSymbols": {"aggregationWindowSeconds": 60}, "symbols": {"parseWaitMilliseconds": 60_000}}
)
# And the binaries are parsed on this thread (no parse worker): with a second thread the
# interpreter's switches between the two follow the wall clock too.
import importlib
from stellaops_runtime.canonical.parseworker import InlineGate
for _name in ("stellaops_runtime.agent.canonicalizer_setup", "stellaops_runtime.agent.pipeline"):
    try:  # where make_canonicalizer is (agent/pipeline.py in older trees)
        _m = importlib.import_module(_name)
    except ImportError:
        continue
    if hasattr(_m, "ParseWorker"):
        _m.ParseWorker = lambda wait: InlineGate()
def prepare(pipe):
    pipe.warm_up()
    if pipe.canonicalizer is not None:  # kallsyms, loaded by the first kernel frame: untimed
        pipe.canonicalizer.symbolizer.kernel()
        pipe.canonicalizer.symbolizer.recent.recheck_seconds = 3600.0
    return pipe
def pipeline(items, fast):
    pipe = prepare(Pipeline(cfg, node_name="bench", fast_path=fast))
    for i in range(0, len(items), 512):
        pipe.process_proto(items[i : i + 512])
def adapter(payloads):
    st = common.AdapterStats()
    for p in payloads:
        from_proto.adapt(from_proto.decode(p, st), received_ns=1, stats=st)
if case == "adapter":
    adapter(payloads)
    adapter(payloads[:n])
elif case == "mix_warm":  # the measured events go through a pipeline that has seen the stream 3 times
    pipe = prepare(Pipeline(cfg, node_name="bench", fast_path=True))
    for chunk in (items, items, items, items[:n]):
        for i in range(0, len(chunk), 512):
            pipe.process_proto(chunk[i : i + 512])
else:
    pipeline(items, case in ("on", "mix_on"))
    pipeline(items[:n], case in ("on", "mix_on"))
"""
)
COUNT_CASES = {
    "on": "never repeating, fast path on",
    "off": "never repeating, fast path off",
    "adapter": "never repeating, adapter only (decode and adapt)",
    "mix_on": "fixture mix, fast path on",
    "mix_warm": "fixture mix, fast path on, after three passes (mostly repeats)",
}


def _instructions(tree: str, corpus: Path, case: str, n: int) -> int:
    env = {**os.environ, "PYTHONPATH": tree, "PYTHONHASHSEED": "0"}
    # ``n`` at one width: a child's count depends on its memory layout (a few per cent of the whole
    # run's), and an argument one character longer moved the stack and with it every address.
    return instructions_of([sys.executable, "-c", _COUNT_CHILD, str(corpus), case, f"{n:09d}"], env)


def count_instructions(
    trees: dict[str, str], events: int, cases: list[str] | None = None
) -> dict[str, dict[str, int | float]]:
    """Instructions per event, per case and tree (see the module docstring), and after/before."""
    sys.path.insert(0, str(ROOT / "bench"))
    import run as bench

    out: dict[str, dict[str, int | float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        uniq, mix = Path(tmp) / "uniq.bin", Path(tmp) / "mix.bin"
        _write(uniq, bench.unique_stacks(events))
        _write(mix, bench.corpus(events)[0])
        for case, label in COUNT_CASES.items():
            if cases and case not in cases:
                continue
            row: dict[str, int | float] = {}
            corpus = mix if case.startswith("mix") else uniq
            for t, tree in trees.items():
                none, some = (_instructions(tree, corpus, case, n) for n in (0, events))
                row[f"{t}_instructions_per_event"] = round((some - none) / events)
                print(f"{label}, {t}: {row[f'{t}_instructions_per_event']}", file=sys.stderr, flush=True)
            row["after_vs_before"] = round(
                row["after_instructions_per_event"] / row["before_instructions_per_event"], 3
            )
            out[label] = row
    return out


# Stages of --profile: the functions whose cumulative time is each stage's (file suffix, function name).
_TABLE = "agent/fastpath_table.py"
STAGES = {
    "adapter (decode and adapt)": [
        ("adapter/from_proto.py", "decode"), ("adapter/from_proto.py", "adapt"),
        ("adapter/from_proto.py", "adapt_payload"),
    ],
    "fast path (keys, sampling, remembering)": [
        ("adapter/rawkey.py", "proto_key"), (_TABLE, "_sample"), (_TABLE, "_store"), (_TABLE, "_not_kept"),
    ],
    "opt-out check": [("privacy/optout.py", "drops")],
    "privacy filter": [("privacy/filter.py", "apply")],
    "canonicalizer": [("canonical/frames.py", "canonicalize"), ("canonical/frames.py", "_canonicalize")],
    "aggregator": [("hotsymbols/aggregate.py", "observe"), ("hotsymbols/gaps.py", "note")],
}  # fmt: skip


def profile(events: int) -> dict[str, float]:
    """Shares of the pipeline's time per stage (cProfile, fast path on, never-repeating stream)."""
    import cProfile
    import pstats

    sys.path.insert(0, str(ROOT / "bench"))
    import run as bench

    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.contracts.config import parse_config

    items = [(p, 1) for p in bench.unique_stacks(events)]
    cfg = parse_config({"hotSymbols": {"aggregationWindowSeconds": 60}})

    def run() -> None:
        pipe = Pipeline(cfg, node_name="bench", fast_path=True)
        pipe.warm_up()
        if pipe.canonicalizer is not None:  # kallsyms, loaded by the first kernel frame: untimed
            pipe.canonicalizer.symbolizer.kernel()
        for i in range(0, len(items), 512):
            pipe.process_proto(items[i : i + 512])

    run()  # warm-up: imports, first sights of files
    prof = cProfile.Profile()
    prof.runcall(run)
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    cum: dict[tuple[str, str], float] = {}
    total = 0.0
    for (file, _, name), (_, _, _, ct, _) in stats.items():
        for suffix, fn in (x for parts in STAGES.values() for x in parts):
            if file.endswith(suffix) and name == fn:
                cum[(suffix, fn)] = cum.get((suffix, fn), 0.0) + ct
        if name == "process_proto" and file.endswith("agent/pipeline.py"):
            total += ct
    shares = {stage: sum(cum.get(p, 0.0) for p in parts) / total for stage, parts in STAGES.items()}
    shares["pipeline glue (the rest)"] = 1 - sum(shares.values())
    return {k: round(v, 3) for k, v in shares.items()}


def _write(path: Path, payloads: list[bytes]) -> None:
    with path.open("wb") as f:
        for p in payloads:
            f.write(len(p).to_bytes(4, "little"))
            f.write(p)


def _child(tree: str, uniq: Path, mix: Path, extra: dict[str, str]) -> dict[str, tuple[float, float]]:
    env = dict(os.environ, PYTHONPATH=tree, **extra)
    r = subprocess.run(
        [sys.executable, "-c", _CHILD, str(uniq), str(mix)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return {k: tuple(v) for k, v in json.loads(r.stdout.strip().splitlines()[-1]).items()}  # type: ignore[misc]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="the 'before' tree's operator/ directory")
    ap.add_argument("--after", default=str(ROOT / "operator"), help="the 'after' tree (default: this one)")
    ap.add_argument(
        "--after-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set in the 'after' children's environment only (e.g. PYTHONMALLOC=malloc); repeatable",
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--instructions", action="store_true", help="count instructions with valgrind instead")
    ap.add_argument("--profile", action="store_true", help="shares of the time per stage (the after tree)")
    ap.add_argument(
        "--cases", default="", help=f"with --instructions: some of {','.join(COUNT_CASES)} (default: all)"
    )
    args = ap.parse_args()
    if args.profile:
        sys.path.insert(0, args.after)
        print(json.dumps({"events": args.events, "shares": profile(args.events)}, indent=2))
        return 0
    if args.instructions:
        cases = [c for c in args.cases.split(",") if c]
        unknown = set(cases) - set(COUNT_CASES)
        if unknown:
            ap.error(f"unknown --cases {sorted(unknown)}: choose from {', '.join(COUNT_CASES)}")
        counts = count_instructions({"before": args.before, "after": args.after}, args.events, cases)
        print(json.dumps({"events": args.events, "instructions": counts}, indent=2))
        return 0
    sys.path.insert(0, str(ROOT / "bench"))
    import run as bench  # the corpora exactly as bench/run.py makes them

    trees = {"before": args.before, "after": args.after}
    envs: dict[str, dict[str, str]] = {"before": {}, "after": dict(e.split("=", 1) for e in args.after_env)}
    got: dict[str, dict[str, list[tuple[float, float]]]] = {t: {} for t in trees}
    with tempfile.TemporaryDirectory() as tmp:
        uniq, mix = Path(tmp) / "uniq.bin", Path(tmp) / "mix.bin"
        _write(uniq, bench.unique_stacks(args.events))
        _write(mix, bench.corpus(args.events)[0])
        for r in range(args.rounds):
            order = list(trees) if r % 2 == 0 else list(reversed(trees))
            for t in order:
                for case, v in _child(trees[t], uniq, mix, envs[t]).items():
                    got[t].setdefault(case, []).append(v)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    report: dict[str, dict[str, float]] = {}
    for case in got["before"]:
        b_cpu = statistics.median(v[0] for v in got["before"][case])
        a_cpu = statistics.median(v[0] for v in got["after"][case])
        b_wall = statistics.median(v[1] for v in got["before"][case])
        a_wall = statistics.median(v[1] for v in got["after"][case])
        report[case] = {
            "before_ev_per_cpu_s": round(b_cpu),
            "after_ev_per_cpu_s": round(a_cpu),
            "after_vs_before_cpu": round(a_cpu / b_cpu, 3),
            "before_ev_per_wall_s": round(b_wall),
            "after_ev_per_wall_s": round(a_wall),
            "after_vs_before_wall": round(a_wall / b_wall, 3),
        }
    out = {"events": args.events, "rounds": args.rounds, "after_env": envs["after"], "cases": report}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
