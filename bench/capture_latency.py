"""Capture latency (issue 13) measured as a node has it: the replay server in its own process.

bench/run.py's section 2. Until session 49 the replay server (a grpc.aio server converting
every event) ran in the agent's own process and event loop: the two shared one GIL, the
server could not keep 10,000 ev/s (26,000-32,000 events in 5 s) and its work delayed the
agent's. On a node Tetragon is another process, so the server is now started as the CLI's
``tetragon-replay`` subprocess and the agent runs here, read from its own histogram.

Two figures, both from that histogram (bucket upper bounds): the whole run from the
agent's start, and the steady state, the events that arrived after ``warmup`` seconds
(the difference of the histogram at the two reads). The whole run holds the agent's
one-off start-up costs: the first kernel frame loads the kernel's symbol table on the
pipeline thread (~0.3 s here, since 2192529c), and the events that arrive meanwhile
wait in the receive queue; the server, paced on an absolute schedule, then sends in
bursts to catch up, which takes seconds (it is barely faster than 10,000 ev/s). After
2 s the steady figures still held that catch-up (~7,000 ev/s, P95 <= 5-25 ms); after
8 s they do not (~10,000 ev/s), hence the default.

bench/run.py pins itself to one core before its sections run, and a child process inherits
that: until session 50 the replay server shared the agent's one core, which no node has
(Tetragon runs on the node's other cores). Both took ~120 us of CPU per event together, so
the server delivered ~6,800 ev/s of the 10,000 asked and the agent's start-up backlog
drained at what the server left over. :func:`start_server` now gives the server the CPUs
the caller had before pinning (``cpus``); the agent stays on its one core.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from stellaops_runtime.agent.latency import LatencyHistogram
from stellaops_runtime.contracts.config import parse_config

_SERVE = "import sys; from stellaops_runtime.cli.main import main; sys.exit(main())"
# The server's CPUs are set in the child itself, before grpc starts a thread (a thread inherits them).
_ON_CPUS = "import os, sys; os.sched_setaffinity(0, {int(c) for c in sys.argv.pop(1).split(',')}); "


def since(before: LatencyHistogram, after: LatencyHistogram) -> LatencyHistogram:
    """The events ``after`` counted that ``before`` (an earlier copy of it) had not."""
    out = LatencyHistogram()
    out.bounds_ns = list(after.bounds_ns)
    out.counts = [a - b for a, b in zip(after.counts, before.counts, strict=True)]
    out.count = after.count - before.count
    out.sum_ns = after.sum_ns - before.sum_ns
    return out


def snapshot(hist: LatencyHistogram) -> LatencyHistogram:
    """A copy of ``hist`` as it is now."""
    out = LatencyHistogram()
    out.bounds_ns, out.counts = list(hist.bounds_ns), list(hist.counts)
    out.count, out.sum_ns = hist.count, hist.sum_ns
    return out


def figures(hist: LatencyHistogram) -> dict[str, Any]:
    return {
        "events": hist.count,
        "p50_ms_upper_bound": hist.quantile_ns(0.50) / 1e6,
        "p95_ms_upper_bound": hist.quantile_ns(0.95) / 1e6,
        "p99_ms_upper_bound": hist.quantile_ns(0.99) / 1e6,
        "mean_ms": round(hist.sum_ns / max(hist.count, 1) / 1e6, 3),
    }


def start_server(stream: Path, rate: int, cpus: set[int] | None = None) -> tuple[subprocess.Popen[str], str]:
    """The replay server as its own process, paced at ``rate``; its address once it listens.

    ``cpus``: the CPUs it may run on (default: the caller's, inherited).
    """
    argv = [sys.executable, "-c", _SERVE, "tetragon-replay", "--rate", str(rate), "--loop"]
    if cpus:
        argv[2:3] = [_ON_CPUS + _SERVE, ",".join(str(c) for c in sorted(cpus))]
    proc = subprocess.Popen(
        [*argv, "--listen", "127.0.0.1:0", str(stream)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"replay server did not start: {line!r}")
    return proc, line.removeprefix("listening on ").strip()


def cpus_of(pid: int) -> list[int]:
    """The CPUs any thread of process ``pid`` may run on (read from the live process)."""
    cpus: set[int] = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            cpus |= os.sched_getaffinity(int(tid))
    return sorted(cpus)


async def measure(
    stream: Path, rate: int, seconds: float, warmup: float = 8.0, server_cpus: set[int] | None = None
) -> dict[str, Any]:
    """The agent's latency figures; the server runs on ``server_cpus`` (default: this process's)."""
    from stellaops_runtime.agent.runner import Agent

    server, addr = start_server(stream, rate, server_cpus)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = parse_config(
                {
                    "tetragon": {"address": addr},
                    "hotSymbols": {"flushIntervalSeconds": 1},
                    "store": {"url": f"sqlite:///{tmp}/bench.db"},
                    "metrics": {"address": "127.0.0.1", "port": 0},
                }
            )
            agent = Agent(cfg, node_name="bench")
            server_on = cpus_of(server.pid)
            task = asyncio.create_task(agent.run())
            await asyncio.sleep(warmup)
            mark = snapshot(agent.pipeline.latency)
            await asyncio.sleep(seconds)
            steady = since(mark, agent.pipeline.latency)
            agent.stop("benchmark done")
            code = await task
    finally:
        server.terminate()
        server.wait(timeout=10)
    return {
        "rate_events_per_s": rate,
        "server": "separate process (stella-runtime tetragon-replay)",
        "server_cpus": server_on,
        "agent_cpus": sorted(os.sched_getaffinity(0)),
        "warmup_s": warmup,
        "seconds": seconds,
        "dropped": agent.queue.dropped,
        "exit_code": code,
        "steady": figures(steady),
        "whole_run_from_start": figures(agent.pipeline.latency),
    }
