"""Agent memory (issue 13): the real agent's RSS idle, at 100,000 hot keys, and under a key storm.

Every figure is the RSS of a real ``stella-runtime agent`` process (read from
``/proc/<pid>/status``: VmRSS now, VmHWM its peak), connected over gRPC to the
real replay server (replay/server.py, in a child process), with every setting
at its default except the addresses, a store migrated before the agent starts
(as a node's agent finds it), with ``store.flushTimeout`` 600 s (a loaded
machine must not turn a slow write into retries), and, for the storm, one
fixed event time. The store is a SQLite file in a temporary directory, and for
the ``*_postgres`` figures a private PostgreSQL cluster (tests/pg.py, or
``$STELLA_TEST_PG_URL``): what a node's agent runs in production, its store's connections
on the agent's own PostgreSQL client (pgwire; psycopg, libpq and their OpenSSL only for a
configuration pgwire does not speak, store/pg_connect.py) (``--stores`` picks):

1. ``idle`` (SQLite) and ``idle_postgres``: connected to a server that sends
   nothing (ready: the stream is open and the store is open), before the
   first event;
2. ``keys_100k`` and ``keys_100k_postgres``: after 100,000 distinct hot keys
   were counted and a flush wrote them (the gauge of keys in memory back at
   0, nothing pending); ``bytes_per_key`` is the peak's growth over idle per
   key (the flush's own peak included);
3. ``storm_1m``: 1,000,000 distinct keys in one aggregation window. The
   aggregator holds at most ``hotSymbols.maxKeys`` (200,000) before it is
   drained early into the store's buffer (``early_drains``); reported: the
   peak RSS and whether every key reached the store (``rows_stored`` equals
   the keys sent plus the observation windows, nothing dropped);
4. ``aggregator``: bytes per key of the aggregator alone, in this process
   (RSS growth holding 100,000 uprobe keys, as section 3 of bench/run.py);
5. ``store_write_100k``: one write of 100,000 rows into a migrated SQLite
   store (store/upsert.py) in a fresh process: RSS growth at its peak and after.

Keys come from kprobe events with 32-frame user stacks of distinct
functions (about 50-character names) in 50 modules of 200 images, so
they pass through the whole pipeline (privacy filter, canonicalizer: the
files do not exist, so frames keep Tetragon's names, package attribution).

The agent runs with the allocator ``stella-runtime agent`` chooses (agent/jemalloc.py:
jemalloc where Debian's libjemalloc2 is installed, else the interpreter's); each figure
says which (``allocator``, read from the process's own ``/proc/<pid>/maps``).

``--agent-path DIR`` runs the agent from another checkout's ``operator/``
(e.g. ``git archive HEAD operator | tar -x -C /tmp/head``); ``--before DIR``
measures that one first and then this checkout, for a before/after in one
run. ``kallsyms`` is the kernel symbol table the agent loads at its first kernel frame:
its load time (CPU and wall, medians of five fresh processes, in a bare
interpreter and in one that imported the agent first), the RSS it adds and
the peak RSS while it loads. Usage::

    .venv/bin/python bench/agent_memory_bench.py [--skip-storm] [--stores sqlite,postgres]
        [--agent-path DIR] [--before DIR]
    .venv/bin/python bench/run.py --only agent_memory
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 32
IMAGES = 200
MODULES = 50
T0 = 1_796_000_000  # one fixed second: every storm key falls in one aggregation window
STORES = ("sqlite", "postgres")


def _event(i: int, *, fixed_time: bool) -> bytes:
    """A kprobe with a user stack of FRAMES functions never seen before (keys i*FRAMES ...)."""
    from stellaops_runtime.wire.tetragon import events_pb2

    m = events_pb2.GetEventsResponse(node_name="bench-node")
    if fixed_time:
        m.time.seconds = T0
    k = m.process_kprobe
    p = k.process
    p.exec_id = f"bench-{i % 1000}"
    p.pid.value = 4_190_000 + i % 1000  # no such process: files are not found, names are kept
    p.binary = f"/opt/bench/bin{i % IMAGES}"
    p.arguments = "--serve --port 8080"
    img = i % IMAGES
    p.pod.namespace = "bench"
    p.pod.name = f"app-{img}"
    p.pod.container.id = f"containerd://{img:064x}"
    p.pod.container.image.id = f"registry.example/bench/app-{img}@sha256:{img:064x}"
    k.function_name = "__x64_sys_openat"
    k.policy_name = "bench"
    for f in range(FRAMES):
        n = i * FRAMES + f
        e = k.user_stack_trace.add()
        e.module = f"/opt/bench/lib{n % MODULES}.so"
        e.symbol = f"_ZN5bench7handler{n:09d}4callEv_{'q' * 20}"
        e.offset = 0x1000 + f * 16
    return m.SerializeToString()


def _serve(events: int, fixed_time: bool, addresses: Any) -> None:
    from stellaops_runtime.replay.events import ReplayEvent
    from stellaops_runtime.replay.server import ReplayServer
    from stellaops_runtime.wire.tetragon import events_pb2

    evs = []
    for i in range(events):
        m = events_pb2.GetEventsResponse.FromString(_event(i, fixed_time=fixed_time))
        evs.append(ReplayEvent.from_message(m))

    async def main() -> None:
        server = ReplayServer(evs)
        addresses.put(await server.start("127.0.0.1:0"))
        await asyncio.sleep(3600)  # killed by the parent when done

    asyncio.run(main())


def _status(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def _get(port: int, path: str) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return str(r.read().decode())
    except OSError as e:  # /readyz answers 503 while not ready
        body = getattr(e, "read", None)
        return body().decode() if body else ""


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _wait(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


class _Agent:
    """A real agent process and the replay server it reads from."""

    def __init__(
        self,
        tmp: Path,
        *,
        events: int,
        fixed_time: bool,
        agent_path: str | None,
        store_url: str | None = None,
        config: dict[str, Any] | None = None,
        wrap: list[str] | None = None,
        extra_env: dict[str, str] | None = None,
        as_operator_writes: bool = False,
        fresh_store: bool = False,
    ) -> None:
        """``config``: a config document to start from (e.g. the operator's, agent_idle_ab.py);
        ``as_operator_writes``: the file is written as the operator writes a node's ``agent.yaml``
        (JSON, controller/render_agent.py; else YAML, as a user's file);
        the addresses, the store and its flush timeout are always the bench's. ``wrap``: a
        command the agent's runs under (it must exec the agent, keeping its pid);
        ``extra_env``: set in the agent's environment; ``fresh_store``: the store is not migrated
        beforehand (a node's first start on a new SQLite file: the agent migrates it)."""
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        self.server = ctx.Process(target=_serve, args=(events, fixed_time, q), daemon=True)
        self.server.start()
        address = q.get(timeout=600)
        self.address = address
        self.port = _free_port()
        cfg = json.loads(json.dumps(config or {}))  # a deep copy
        cfg["nodeName"] = "bench-node"
        cfg.setdefault("tetragon", {})["address"] = address
        # flushTimeout raised: on a loaded machine a write of 200,000 SQLite rows can take
        # longer than the default 30 s, and an abandoned write is retried whole (memory is
        # what is measured here, not the store's speed).
        cfg.setdefault("store", {}).update(url=store_url or f"sqlite:///{tmp}/agent.db", flushTimeout=600)
        cfg["metrics"] = {"address": "127.0.0.1", "port": self.port}
        path = tmp / "agent.yaml"
        if as_operator_writes:
            path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        else:
            path.write_text(yaml.safe_dump(cfg))
        env = dict(os.environ)
        if agent_path:
            env["PYTHONPATH"] = agent_path
        agent_env = {**env, **(extra_env or {})}
        # A node's agent finds its store migrated (by the operator or the first agent); the
        # migration tools (Alembic, Mako, Pygments) are loaded only by whoever migrates.
        url = cfg["store"]["url"]
        migrate = f"from stellaops_runtime.store.engine import open_store; open_store({url!r}).close()"
        if not fresh_store:
            subprocess.run([sys.executable, "-c", migrate], cwd=tmp, env=env, check=True, capture_output=True)
        cmd = [sys.executable, "-m", "stellaops_runtime.cli.main", "--log-level", "WARNING", "agent"]
        self.proc = subprocess.Popen(
            [*(wrap or []), *cmd, "--config", str(path)],
            cwd=tmp,
            env=agent_env,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / "agent.log", "w"),  # noqa: SIM115 (closed with the process)
        )
        self.started = time.monotonic()  # the agent's start, for the time until it is ready

    def metrics(self) -> str:
        return _get(self.port, "/metrics")

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"agent exited {self.proc.returncode}")
        body = _get(self.port, "/readyz")
        return bool(body) and json.loads(body).get("ready") is True

    def status(self) -> dict[str, float]:
        return _status(self.proc.pid)

    def allocator(self) -> str:
        """jemalloc when the running agent has it mapped (agent/jemalloc.py), else pymalloc."""
        return "jemalloc" if "libjemalloc" in Path(f"/proc/{self.proc.pid}/maps").read_text() else "pymalloc"

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.server.kill()
        self.server.join()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _idle(agent_path: str | None, store_url: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        a = _Agent(Path(d), events=0, fixed_time=False, agent_path=agent_path, store_url=store_url)
        try:
            _wait(a.ready, 120, "the agent to be ready")
            time.sleep(3)  # idle: a few flush loop turns, no event
            st = a.status()
            allocator = a.allocator()
            assert _metric(a.metrics(), "stellaops_runtime_events_received_total") == 0
        finally:
            a.close()
    return {
        "rss_mb": st["VmRSS"],
        "peak_mb": st["VmHWM"],
        "anon_mb": st["RssAnon"],
        "file_mb": st["RssFile"],
        "allocator": allocator,
    }


def _keyed(
    keys: int, *, fixed_time: bool, agent_path: str | None, timeout: float, store_url: str | None = None
) -> dict[str, Any]:
    events = keys // FRAMES
    with tempfile.TemporaryDirectory() as d:
        a = _Agent(Path(d), events=events, fixed_time=fixed_time, agent_path=agent_path, store_url=store_url)
        try:
            t0 = time.monotonic()
            _wait(a.ready, 300, "the agent to be ready")
            idle = a.status()

            def flushed() -> bool:
                m = a.metrics()
                return (
                    _metric(m, "stellaops_runtime_events_received_total") >= events
                    and _metric(m, "stellaops_runtime_hot_symbols_in_memory") == 0
                    and _metric(m, "stellaops_runtime_hot_symbols_pending") == 0
                    and _metric(m, "stellaops_runtime_hot_symbols_flushed_total") >= keys
                )

            _wait(flushed, timeout, f"{keys} keys to be flushed")
            seconds = time.monotonic() - t0
            time.sleep(2)  # the flush loop returns freed memory right after a flush (agent/allocator.py)
            st = a.status()
            m = a.metrics()
            allocator = a.allocator()
        finally:
            a.close()
    stored = int(_metric(m, "stellaops_runtime_hot_symbols_flushed_total"))
    return {
        "keys_sent": keys,
        "events": events,
        "seconds": round(seconds, 1),
        "idle_rss_mb": idle["VmRSS"],
        "rss_after_flush_mb": st["VmRSS"],
        "peak_mb": st["VmHWM"],
        "bytes_per_key": round((st["VmHWM"] - idle["VmRSS"]) * 1024 * 1024 / keys),
        "rows_stored": stored,
        "rows_dropped": int(_metric(m, "stellaops_runtime_store_rows_dropped_total")),
        "early_drains": int(_metric(m, "stellaops_runtime_hot_symbols_early_drains_total")),
        "store_write_timeouts": int(_metric(m, "stellaops_runtime_store_flush_timeouts_total")),
        "allocator": allocator,
    }


def _rss_kb() -> int:
    return int(_status(os.getpid())["VmRSS"] * 1024)


def _aggregator(keys: int = 100_000) -> dict[str, Any]:
    """Bytes per key of the aggregator alone (the shape of bench/run.py's memory section)."""
    from stellaops_runtime.contracts.events import ContainerInfo, EventKind, ProcessInfo, RuntimeCallEvent
    from stellaops_runtime.hotsymbols.aggregate import HotSymbolAggregator

    gc.collect()
    before = _rss_kb()
    agg = HotSymbolAggregator(window_seconds=60, min_confidence=0.0)
    digests = [f"sha256:{i:064x}" for i in range(200)]
    t = time.time_ns()
    for i in range(keys):
        ev = RuntimeCallEvent(
            kind=EventKind.UPROBE,
            timestamp_ns=t + i,
            node_name="bench",
            process=ProcessInfo(exec_id=f"e{i % 100}", pid=1, binary="/app/server", arguments="--port 8080"),
            container=ContainerInfo(id="c", image_digest=digests[i % 200]),
            function_name=f"_ZN4core3fmt9Formatter9write_str{i:08d}h0123456789abcdefE_{'x' * 40}",
            module=f"/usr/lib/x86_64-linux-gnu/lib{i % 50}.so",
        )
        agg.observe(ev)
    gc.collect()
    grown = _rss_kb() - before
    return {
        "keys": agg.key_count,
        "rss_growth_mb": round(grown / 1024, 1),
        "bytes_per_key": round(grown * 1024 / keys),
    }


_KALLSYMS = """
import json, sys, time
from stellaops_runtime.agent.allocator import tune_malloc
tune_malloc()  # as the agent does before it starts
if sys.argv[1] == "agent":  # the heap the agent has when it loads the table (at its first kernel frame)
    import stellaops_runtime.agent.runner, stellaops_runtime.agent.pipeline
def status(key):
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith(key))
from stellaops_runtime.canonical.kallsyms import KernelSymbols
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # VmHWM := VmRSS: the peak from here on
before = status("VmRSS")
t, cpu = time.perf_counter(), time.process_time()
k = KernelSymbols()
seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
print(json.dumps({"seconds": seconds, "cpu": cpu, "rss_kb": status("VmRSS") - before,
                  "peak_kb": status("VmHWM") - before, "symbols": len(k)}))
"""


def _kallsyms(agent_path: str | None, loads: int = 5) -> dict[str, Any]:
    """The kernel symbol table the agent loads at its first kernel frame: load time (medians of fresh
    processes, alternating a bare interpreter and one that imported the agent first, as at
    start-up: the garbage collector's cost depends on the heap) and the RSS it adds."""
    env = dict(os.environ)
    if agent_path:
        env["PYTHONPATH"] = agent_path
    runs: dict[str, list[dict[str, Any]]] = {"agent": [], "bare": []}
    for _ in range(loads):
        for where, got in runs.items():
            cmd = [sys.executable, "-c", _KALLSYMS, where]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            got.append(json.loads(done.stdout))

    def median(where: str, key: str) -> float:
        return sorted(r[key] for r in runs[where])[loads // 2]

    return {
        "symbols": runs["bare"][0]["symbols"],
        # CPU time: what the load costs, less disturbed than wall time on a shared machine
        "load_cpu_ms_in_agent": round(median("agent", "cpu") * 1000),
        "load_cpu_ms_bare": round(median("bare", "cpu") * 1000),
        "load_ms_in_agent": round(median("agent", "seconds") * 1000),
        "rss_mb": round(median("bare", "rss_kb") / 1024, 1),
        "peak_mb": round(median("bare", "peak_kb") / 1024, 1),  # growth of VmHWM while loading
    }


_STORE_WRITE = """
import gc, json, sys, tempfile, time
from stellaops_runtime.agent.allocator import release_free_memory, tune_malloc
tune_malloc()
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.upsert import write_rows
def status(key):
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith(key))
n = int(sys.argv[1])
t0 = 1_796_000_000_000_000_000
with tempfile.TemporaryDirectory() as d:
    store = open_store(f"sqlite:///{d}/s.db")
    deltas = [
        HotSymbolDelta(
            HotSymbolKey(f"sha256:{i % 200:064x}", f"/usr/lib/lib{i % 50}.so",
                         f"_ZN4core3fmt9Formatter9write_str{i:08d}h0123456789abcdefE_" + "x" * 40,
                         EvidenceKind.ON_STACK),
            t0, 3, t0 + i, t0 + i + 5, unique_callers=1, node_name="bench-node",
            sample={"binary": "/app/server", "arguments": "--port 8080", "stack": ["a", "b"]},
        )
        for i in range(n)
    ]
    gc.collect()
    release_free_memory()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    before = status("VmRSS")
    t = time.perf_counter()
    db = getattr(store, "db", None) or store.engine  # the agent's own path (an older tree: SQLAlchemy)
    with db.begin() as conn:
        rows = write_rows(conn, deltas, [])
    seconds = time.perf_counter() - t
    peak = status("VmHWM") - before
    gc.collect()
    release_free_memory()
    print(json.dumps({"rows": rows, "seconds": round(seconds, 1), "peak_growth_mb": round(peak / 1024, 1),
                      "after_mb": round((status("VmRSS") - before) / 1024, 1)}))
"""


def _store_write(agent_path: str | None, rows: int = 100_000) -> dict[str, Any]:
    """One write of ``rows`` hot-symbol rows into a migrated SQLite store, in a fresh process:
    how much its RSS grows at the peak of the write, and after it (freed memory returned)."""
    env = dict(os.environ)
    if agent_path:
        env["PYTHONPATH"] = agent_path
    cmd = [sys.executable, "-c", _STORE_WRITE, str(rows)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.splitlines()[-1]))


def _postgres_agent(agent_path: str | None, out: dict[str, Any]) -> None:
    """``idle_postgres`` and ``keys_100k_postgres``: the agent on a PostgreSQL store, each on a
    fresh database of a private cluster (the database the agent needs, migrated first)."""
    sys.path.insert(0, str(ROOT))
    from tests.pg import make_server

    server = make_server()  # a private cluster (fsync off, as in the tests), or $STELLA_TEST_PG_URL
    server.setup()
    try:
        out["idle_postgres"] = _idle(agent_path, server.fresh_database())
        out["keys_100k_postgres"] = _keyed(
            100_000, fixed_time=False, agent_path=agent_path, timeout=600, store_url=server.fresh_database()
        )
    finally:
        server.teardown()


def run(
    *, runs: int = 1, storm: bool = True, agent_path: str | None = None, stores: tuple[str, ...] = STORES
) -> dict[str, Any]:
    out: dict[str, Any] = {"agent_path": agent_path or "this checkout"}
    out["kallsyms"] = _kallsyms(agent_path)
    out["store_write_100k"] = _store_write(agent_path)
    if "sqlite" in stores:
        out["idle"] = _idle(agent_path)
        out["keys_100k"] = _keyed(100_000, fixed_time=False, agent_path=agent_path, timeout=600)
    if "postgres" in stores:
        _postgres_agent(agent_path, out)
    if storm:
        out["storm_1m"] = _keyed(1_000_000, fixed_time=True, agent_path=agent_path, timeout=1800)
    # In a fresh process, from the same checkout as the agent.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (agent_path, str(ROOT / "bench")))))
    code = "import json, agent_memory_bench as b; print(json.dumps(b._aggregator()))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    out["aggregator"] = json.loads(done.stdout)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-storm", action="store_true")
    ap.add_argument(
        "--stores",
        default=",".join(STORES),
        help="the stores the idle and 100k-key agents run on: sqlite, postgres or both (default)",
    )
    ap.add_argument("--agent-path", help="PYTHONPATH for the agent process (another checkout's operator/)")
    ap.add_argument(
        "--before",
        metavar="DIR",
        help="also measure the agent from DIR (another checkout's operator/) first: before/after in one run",
    )
    args = ap.parse_args(argv)
    stores = tuple(s.strip() for s in args.stores.split(",") if s.strip())
    if unknown := set(stores) - set(STORES):
        ap.error(f"unknown store(s): {', '.join(sorted(unknown))}")
    if args.before:
        out = {
            "before": run(storm=not args.skip_storm, agent_path=args.before, stores=stores),
            "after": run(storm=not args.skip_storm, agent_path=args.agent_path, stores=stores),
        }
    else:
        out = run(storm=not args.skip_storm, agent_path=args.agent_path, stores=stores)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
