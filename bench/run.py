"""The project's benchmark (`make bench`): medians and ratios measured in one run.

What it measures, on one core (the process pins itself to CPU 0):

1. pipeline throughput: decode -> adapter -> privacy -> frame canonicalizer ->
   aggregation over the synthetic Tetragon stream's real event mix, as
   serialized protobuf (the gRPC path) and as JSON export lines, against upb
   decode-only as the baseline measured in the same run, with the fast path for
   repeated events (agent/fastpath.py) on and off, and on a stream whose user
   stacks never repeat; the privacy filter's
   overhead (the same pipeline with redaction off) and the canonicalizer's
   (resolving libc/libz frames against this machine's files vs switched off);
2. capture latency: the real agent fed by the real replay server over gRPC
   on loopback at a fixed rate, the server in its own process as on a node
   (bench/capture_latency.py); P95 from arrival to in-memory hot-symbol
   record (bucket upper bound of the agent's own histogram), in the steady
   state and over the whole run from the agent's start;
3. memory: RSS growth of the aggregator holding 100,000 distinct hot keys;
4. store: upsert rate into a private PostgreSQL as a ratio to raw binary COPY
   into the same table shape (bench/store_bench.py), measured in the same run;
   and a fleet of 50 agents flushing 2,000 overlapping keys every 10 s for
   2 minutes into one PostgreSQL (bench/store_fleet.py, ``store_fleet``);
5. later stages, each in its own module (SECTIONS below): demangling
   (bench/demangle_bench.py), symbolization (bench/symbolize_bench.py), package
   attribution (bench/attribute_bench.py), the operator's pure rendering,
   posture and rollout (bench/operator_pure_bench.py) and the operator against
   kmock under real kopf (bench/operator_bench.py).

``--only SECTION...`` runs a subset.

Machines here are shared and noisy: compare ratios within one run, not
absolute numbers across runs. Results go to stdout (a table) and to
bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from google.protobuf import json_format

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.pg (the private PostgreSQL helper)

from stellaops_runtime.agent.pipeline import Pipeline  # noqa: E402
from stellaops_runtime.contracts.config import parse_config  # noqa: E402
from stellaops_runtime.contracts.events import (  # noqa: E402
    ContainerInfo,
    EventKind,
    ProcessInfo,
    RuntimeCallEvent,
)
from stellaops_runtime.hotsymbols.aggregate import HotSymbolAggregator  # noqa: E402
from stellaops_runtime.wire.tetragon import events_pb2  # noqa: E402

STREAM = ROOT / "tests" / "fixtures" / "tetragon" / "synthetic" / "stream-a.jsonl.gz"


# Benchmarks of later stages, each its own module under bench/ with run(*, runs) -> dict.
SECTIONS = {
    "demangle": "demangle_bench",
    "symbolize": "symbolize_bench",
    "operator_pure": "operator_pure_bench",
    "attribute": "attribute_bench",
    "operator": "operator_bench",
    "agent_memory": "agent_memory_bench",
}


def _section(module: str) -> Any:
    sys.path.insert(0, str(ROOT / "bench"))
    return importlib.import_module(module)


def pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def corpus(n: int) -> tuple[list[bytes], list[bytes]]:
    with gzip.open(STREAM) as f:
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    protos = [json_format.Parse(ln, events_pb2.GetEventsResponse()).SerializeToString() for ln in lines]
    reps = n // len(lines) + 1
    return (protos * reps)[:n], (lines * reps)[:n]


def unique_stacks(n: int) -> list[bytes]:
    """A stream whose user stacks never repeat: the fixture's syscall kprobes (kernel and user stacks),
    with the exec, loader and exit events of their processes, cycled to ``n`` events; every kprobe's two
    innermost user frames are moved by a different number of bytes, so no two stacks are alike."""
    with gzip.open(STREAM) as f:
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    msgs = [json_format.Parse(ln, events_pb2.GetEventsResponse()) for ln in lines]
    msgs = [m for m in msgs if m.WhichOneof("event") != "process_uprobe"]
    out: list[bytes] = []
    i = 0
    while len(out) < n:
        for m in msgs:
            if len(out) >= n:
                break
            stack = m.process_kprobe.user_stack_trace if m.WhichOneof("event") == "process_kprobe" else None
            if stack:
                c = type(m)()
                c.CopyFrom(m)
                frames = c.process_kprobe.user_stack_trace
                frames[0].offset += i % 1021
                if len(frames) > 1:
                    frames[1].offset += (i // 1021) % 1019
                i += 1
                out.append(c.SerializeToString())
            else:
                out.append(m.SerializeToString())
    return out


def _time(fn) -> float:
    """Seconds ``fn()`` takes; a ``fn.setup()`` (untimed) runs first and its result is passed in."""
    setup = getattr(fn, "setup", None)
    state = setup() if setup else None
    gc.collect()
    t0 = time.perf_counter()
    fn(state) if setup else fn()
    return time.perf_counter() - t0


def bench_pipeline(n: int, runs: int) -> dict[str, Any]:
    protos, lines = corpus(n)
    now = time.monotonic_ns()
    p_items = [(p, now) for p in protos]
    j_items = [(ln, now) for ln in lines]
    u_items = [(p, now) for p in unique_stacks(n)]
    on = parse_config({"hotSymbols": {"aggregationWindowSeconds": 60}})
    off = parse_config({"privacy": {"redactArguments": False, "useDefaultRedactionPatterns": False}})
    # The frame canonicalizer resolving libc/libz frames against this machine's files
    # (their build-ids match the stream's), and switched off, for its overhead.
    resolved = parse_config({"hotSymbols": {"aggregationWindowSeconds": 60}, "symbols": {"hostRoot": "/"}})
    nosym = parse_config({"hotSymbols": {"aggregationWindowSeconds": 60}, "symbols": {"enabled": False}})
    batch = 512

    def run_decode() -> None:
        parse = events_pb2.GetEventsResponse.FromString
        for p in protos:
            parse(p)

    fast_stats: dict[str, dict[str, Any]] = {}

    def runner(cfg, items, json_path: bool, fast: bool = True, name: str = ""):
        def setup() -> Pipeline:
            pipe = Pipeline(cfg, node_name="bench", fast_path=fast)
            pipe.warm_up()
            if pipe.canonicalizer is not None:  # the first kernel frame loads kallsyms, once: untimed here
                pipe.canonicalizer.symbolizer.kernel()
            return pipe

        def run(pipe: Pipeline) -> None:
            proc = pipe.process_json if json_path else pipe.process_proto
            for i in range(0, len(items), batch):
                proc(items[i : i + batch])
            assert pipe.processed == len(items), (pipe.processed, len(items))
            if pipe.fast_path is not None and name:
                st = pipe.fast_path.stats
                fast_stats[name] = {
                    "hits": st.hits,
                    "misses": st.misses,
                    "stored": st.stored,
                    "skipped": st.skipped,
                }

        run.setup = setup  # type: ignore[attr-defined]
        return run

    grpc, grpc_off = "pipeline, gRPC protobuf", "pipeline, gRPC protobuf, fast path off"
    uniq, uniq_off = (
        "pipeline, gRPC protobuf, stacks never repeat",
        "pipeline, stacks never repeat, fast path off",
    )
    res, res_off = (
        "pipeline, gRPC protobuf, frames resolved (hostRoot /)",
        "pipeline, frames resolved, fast path off",
    )
    # The privacy and canonicalizer overheads are measured with the fast path off: on it, a repeat
    # replays both stages' outcome, so their cost would only show on first sights.
    cases = {
        "upb decode only (baseline)": run_decode,
        grpc: runner(on, p_items, False, name=grpc),
        grpc_off: runner(on, p_items, False, fast=False),
        "pipeline, gRPC protobuf, privacy off, fast path off": runner(off, p_items, False, fast=False),
        "pipeline, JSON export lines": runner(on, j_items, True, name="json"),
        "pipeline, JSON export lines, fast path off": runner(on, j_items, True, fast=False),
        res: runner(resolved, p_items, False, name=res),
        res_off: runner(resolved, p_items, False, fast=False),
        "pipeline, canonicalizer off, fast path off": runner(nosym, p_items, False, fast=False),
        uniq: runner(on, u_items, False, name=uniq),
        uniq_off: runner(on, u_items, False, fast=False),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    for fn in cases.values():  # warm-up
        _time(fn)
    for _ in range(runs):  # interleaved round-robin: drifting load hits every case alike
        for k, fn in cases.items():
            times[k].append(_time(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: n / v for k, v in med.items()}
    full, noprivacy = med[grpc_off], med["pipeline, gRPC protobuf, privacy off, fast path off"]
    return {
        "events": n,
        "runs": runs,
        "events_per_s": {k: round(v) for k, v in rate.items()},
        "us_per_event": {k: round(v / n * 1e6, 2) for k, v in med.items()},
        "pipeline_vs_decode_only": round(rate[grpc] / rate["upb decode only (baseline)"], 3),
        "fast_path_speedup": round(rate[grpc] / rate[grpc_off], 2),
        "fast_path_speedup_never_repeating": round(rate[uniq] / rate[uniq_off], 2),
        "fast_path": fast_stats,
        "privacy_overhead": round((full - noprivacy) / full, 3),
        "canonicalizer_overhead_resolving": round(
            (med[res_off] - med["pipeline, canonicalizer off, fast path off"]) / med[res_off], 3
        ),
    }


async def _latency(
    rate: int, seconds: float, warmup: float = 8.0, server_cpus: set[int] | None = None
) -> dict[str, Any]:
    from bench.capture_latency import measure

    return await measure(STREAM, rate, seconds, warmup, server_cpus)


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def bench_memory(keys: int = 100_000) -> dict[str, Any]:
    gc.collect()
    before = _rss_kb()
    agg = HotSymbolAggregator(window_seconds=60, min_confidence=0.0)
    proc = ProcessInfo(exec_id="e", pid=1, binary="/app/server", arguments="--port 8080")
    digests = [f"sha256:{i:064x}" for i in range(200)]
    t = time.time_ns()
    for i in range(keys):
        ev = RuntimeCallEvent(
            kind=EventKind.UPROBE,
            timestamp_ns=t,
            node_name="bench",
            process=proc,
            container=ContainerInfo(id="c", image_digest=digests[i % 200]),
            function_name=f"_ZN4core3fmt9Formatter9write_str{i:08d}h0123456789abcdefE_{'x' * 40}",
            module=f"/usr/lib/x86_64-linux-gnu/lib{i % 50}.so",
        )
        agg.observe(ev)
    gc.collect()
    after = _rss_kb()
    return {
        "distinct_keys": agg.key_count,
        "rss_growth_mb": round((after - before) / 1024, 1),
        "bytes_per_key": round((after - before) * 1024 / keys),
        "agent_baseline_rss_mb": _agent_baseline_rss_mb(),
        "agent_rss_at_keys_mb_estimate": round(_agent_baseline_rss_mb() + (after - before) / 1024, 1),
    }


def _agent_baseline_rss_mb() -> float:
    """RSS of a fresh process that has imported everything the agent runs."""
    code = (
        "import stellaops_runtime.agent.runner, pathlib;"
        "s = pathlib.Path('/proc/self/status').read_text();"
        "print([ln for ln in s.splitlines() if ln.startswith('VmRSS')][0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return round(int(out.split()[1]) / 1024, 1)


def bench_store(rows: int, runs: int) -> dict[str, Any]:
    from bench.store_bench import run as store_run
    from tests.pg import make_server

    server = make_server()  # a private cluster (fsync off, as in the tests), or $STELLA_TEST_PG_URL
    server.setup()
    try:
        return store_run(server.fresh_database(), rows=rows, runs=runs)
    finally:
        server.teardown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--latency-rate", type=int, default=10_000)
    ap.add_argument("--latency-seconds", type=float, default=5.0)
    ap.add_argument("--latency-warmup", type=float, default=8.0, help="seconds before the steady figures")
    ap.add_argument("--store-rows", type=int, default=20_000)
    ap.add_argument("--skip-store", action="store_true")
    ap.add_argument(
        "--only",
        nargs="+",
        choices=["pipeline", "latency", "memory", "store", "store_fleet", *SECTIONS],
        help="run only these sections (default: all)",
    )
    args = ap.parse_args()
    want = set(args.only or ["pipeline", "latency", "memory", "store", "store_fleet", *SECTIONS])
    cpus = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    pin_one_core()  # the sections measure one core; the latency section's replay server gets ``cpus``
    results: dict[str, Any] = {
        "python": sys.version.split()[0],
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
    }
    if "pipeline" in want:
        results["pipeline"] = bench_pipeline(args.events, args.runs)
        print(json.dumps(results["pipeline"], indent=2), flush=True)
    if "latency" in want:
        latency = _latency(args.latency_rate, args.latency_seconds, args.latency_warmup, cpus)
        results["latency"] = asyncio.run(latency)
        print(json.dumps(results["latency"], indent=2), flush=True)
    if "memory" in want:
        results["memory"] = bench_memory()
        print(json.dumps(results["memory"], indent=2), flush=True)
    if "store" in want and not args.skip_store:
        results["store"] = bench_store(args.store_rows, args.runs)
        print(json.dumps(results["store"], indent=2), flush=True)
    if "store_fleet" in want and not args.skip_store:
        from bench.store_fleet import run_on_private_server

        results["store_fleet"] = run_on_private_server()
        print(json.dumps(results["store_fleet"], indent=2), flush=True)
    for name, module in SECTIONS.items():
        if name in want:
            results[name] = _section(module).run(runs=args.runs)
            print(json.dumps({name: results[name]}, indent=2, default=str), flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
