"""Where the agent's memory is after a flush of 100,000 keys (issue 13): a diagnosis, not a figure.

bench/agent_memory_bench.py measures the real agent process from outside;
this script runs the same agent (agent/runner.py, every setting at its
default but the addresses, a migrated SQLite store, or with ``--postgres`` a
database of a private PostgreSQL cluster (tests/pg.py), the same replay server
and events) *inside* this process, so that it can look at it once the
100,000 keys are flushed:

- VmRSS / RssAnon when idle, after the flush, and after ``gc`` plus
  ``malloc_trim`` (what the allocator could still give back);
- pymalloc's arenas (``sys._debugmallocstats``): how many 1 MiB arenas are
  held and how many bytes of live blocks they hold. Many arenas with few
  live bytes is fragmentation: long-lived small objects allocated while the
  window's keys were held pin arenas that are otherwise free;
- with ``--trace N``: a tracemalloc snapshot from idle to after the flush
  (started at idle: the start-up is not traced), the top ``N`` lines by live
  size: what is still referenced after the flush, by where it was allocated;
- the sizes of the agent's caches that outlive a flush.

The agent process runs under jemalloc where it is installed (agent/jemalloc.py), this
script under whatever it was started with: to look at the agent as it runs, start it the
same way (``LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 PYTHONMALLOC=malloc
MALLOC_CONF=narenas:1,dirty_decay_ms:0,muzzy_decay_ms:0,slab_sizes:1-4096:1``; pymalloc's arena figures are -1
then). Its RSS is not the agent's (this process also imported the bench and
multiprocessing); compare runs of this script with each other only. Usage::

    .venv/bin/python bench/agent_memory_diagnose.py [--keys 100000] [--trace 30] [--postgres]
    PYTHONPATH=/tmp/head/operator .venv/bin/python bench/agent_memory_diagnose.py   # another checkout
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import multiprocessing as mp
import os
import re
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import agent_memory_bench as bench


def _status() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def _arenas() -> dict[str, int]:
    """pymalloc's arenas in use and the bytes of live blocks in them (CPython's debug stats)."""
    with tempfile.TemporaryFile(mode="w+") as f:  # it writes to the C-level stderr (fd 2)
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read()
    out = {}
    for name, pattern in (
        ("arenas", r"# arenas allocated current\s*=\s*([\d,]+)"),
        ("live_block_bytes", r"# bytes in allocated blocks\s*=\s*([\d,]+)"),
    ):
        m = re.search(pattern, text)
        out[name] = int(m.group(1).replace(",", "")) if m else -1
    return out


async def _until(pred: Any) -> None:
    while True:
        if pred():
            return
        await asyncio.sleep(0.2)


async def _run(address: str, store_url: str, keys: int, trace: int) -> None:
    from stellaops_runtime.agent.allocator import release_free_memory
    from stellaops_runtime.agent.runner import Agent
    from stellaops_runtime.contracts.config import parse_config

    cfg = parse_config({
        "nodeName": "bench-node",
        "tetragon": {"address": address},
        "store": {"url": store_url, "flushTimeout": 600},
        "metrics": {"address": "127.0.0.1", "port": 0},
    })  # fmt: skip
    agent = Agent(cfg, node_name="bench-node")
    task = asyncio.create_task(agent.run())
    await _until(lambda: agent.store is not None and agent.source_stats.connected)
    await asyncio.sleep(1)
    print("idle", _status(), _arenas(), flush=True)
    if trace:
        tracemalloc.start(1)
        gc.collect()
        before = tracemalloc.take_snapshot()
    events = keys // bench.FRAMES
    await _until(
        lambda: (
            agent.pipeline.processed >= events
            and agent.pipeline.aggregator.key_count == 0
            and agent.pending.pending_rows == 0
            and agent.pending.rows_flushed >= keys
        )
    )
    await asyncio.sleep(3)  # the agent's own trim after a large flush has run
    print("after the flush", _status(), _arenas(), flush=True)
    gc.collect()
    await asyncio.to_thread(release_free_memory)
    print("after gc and malloc_trim", _status(), _arenas(), flush=True)
    agg = agent.pipeline.aggregator
    # (an older checkout counted caller keys in _caller_keys; its _callers was grouped)
    held: dict[str, Any] = {"caller_keys": getattr(agg, "_caller_keys", None) or len(agg._callers)}
    if agent.pipeline.fast_path is not None:
        held["fast_path_entries"] = len(agent.pipeline.fast_path)
    fc = agent.pipeline.canonicalizer
    if fc is not None:
        held["canonicalizer"] = {k: v for k, v in fc.stats.items() if k.startswith("cache_")}
    print("caches held after the flush", held, flush=True)
    if trace:
        diff = tracemalloc.take_snapshot().compare_to(before, "lineno")
        tracemalloc.stop()
        print(f"live since idle: {sum(d.size_diff for d in diff) / 1e6:.1f} MB; top {trace} lines:")
        for d in diff[:trace]:
            print("  ", d)
    agent.stop("done")
    await asyncio.wait_for(task, 60)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--trace", type=int, default=0, metavar="N", help="tracemalloc: the top N lines")
    ap.add_argument("--postgres", action="store_true", help="a PostgreSQL store (a private cluster)")
    args = ap.parse_args(argv)
    from stellaops_runtime.agent.allocator import tune_malloc
    from stellaops_runtime.store.engine import open_store

    tune_malloc()  # as the agent does
    with tempfile.TemporaryDirectory() as d, contextlib.ExitStack() as stack:
        url = f"sqlite:///{d}/agent.db"
        if args.postgres:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.pg import make_server

            server = make_server()
            server.setup()
            stack.callback(server.teardown)
            url = server.fresh_database()
        open_store(url).close()  # migrated, as a node's agent finds it
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        server = ctx.Process(target=bench._serve, args=(args.keys // bench.FRAMES, False, q), daemon=True)
        server.start()
        try:
            asyncio.run(_run(q.get(timeout=600), url, args.keys, args.trace))
        finally:
            server.kill()
            server.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
