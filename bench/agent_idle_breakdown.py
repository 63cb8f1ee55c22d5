"""Where the idle agent's RSS is, by mapping (issue 13): a breakdown, not a figure.

bench/agent_memory_bench.py gives the idle agent's VmRSS; this script starts
the same agent (its ``_Agent``: the real ``stella-runtime agent`` process,
connected to the replay server, a migrated SQLite store, or with ``--postgres``
a database of a private PostgreSQL cluster), waits until it is
ready and idle (3 s more, as the bench does), and reads ``/proc/<pid>/smaps``:

- ``heap``: glibc's main heap (``[heap]``): blocks below the mmap threshold,
  most of them Python objects larger than 512 bytes (code, dicts);
- ``anonymous``: the other anonymous mappings: pymalloc's 1 MiB arenas, the
  blocks glibc maps on their own (the kernel symbol table's arrays), the second
  malloc arena, or under jemalloc its extents; thread stacks apart
  (``thread_stacks``: an 8 MiB mapping right above its guard page, of which only
  the touched pages are resident; jemalloc also maps 8 MiB extents, without a
  guard page, which are not stacks);
- each file: its resident pages, private dirty (relocations, its data) and
  shared clean (code and read-only data read from the page cache);
- the threads by name (``/proc/<pid>/task/*/comm``).

With ``--floor``, the same run also measures the floor no agent code can go below: a second
interpreter, started like the agent (under jemalloc when the agent would be,
agent/jemalloc.py's plan), that imports only asyncio and the agent's gRPC client
(stellaops_runtime.rpc, this checkout's) and keeps Tetragon's GetEvents stream open on the same
replay server, as sources/tetragon_grpc.py does (``floor`` in the output: its VmRSS, anonymous
and file-backed, and its largest files). Until session 49 the agent's client was grpcio, and the
floor asyncio + grpcio (35.7 MB; docs/benchmarks.md's Twelfth pass).

With ``--node``, the agent runs as a node runs it: the operator's config document, in a pod's
way (agent_idle_ab.py's ``node`` configuration: its ObservationNode writer on, a service account
mounted; root only, else without them). Every figure of issue 13's idle goal is taken so.

With ``--inside`` (and ``--traced``), also the agent's own figures, read in its process after
the mappings: jemalloc's statistics, modules, and with ``--traced`` Python's traced bytes
(bench/agent_idle_inside.py; ``--traced`` makes the RSS figures of that run not comparable).

Usage::

    .venv/bin/python bench/agent_idle_breakdown.py [--agent-path DIR] [--top 20] [--postgres] [--floor]
        [--node] [--inside [--traced]]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import agent_memory_bench as bench

FIELDS = ("Rss", "Private_Dirty", "Private_Clean", "Shared_Clean", "Size")
STACK_KB = 8192  # glibc's default thread stack (the guard page is a mapping of its own)


def smaps(pid: int) -> list[dict[str, Any]]:
    """Every mapping: its name ("" when anonymous), permissions and the FIELDS in kB."""
    rows: list[dict[str, Any]] = []
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head, _, rest = line.partition(" ")
        if "-" in head and not head.endswith(":"):
            parts = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in parts[0].split("-"))
            name = parts[5] if len(parts) > 5 else ""
            rows.append({"name": name, "perm": parts[1], "start": start, "end": end})
        elif head.rstrip(":") in FIELDS:
            rows[-1][head.rstrip(":")] = int(rest.split()[0])
    return rows


def breakdown(rows: list[dict[str, Any]], top: int) -> dict[str, Any]:
    groups: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FIELDS, 0))
    guards = {r["end"] for r in rows if not r["name"] and r["perm"] == "---p"}
    for r in rows:
        name = r["name"]
        if not name:
            stack = r.get("Size") == STACK_KB and r["start"] in guards
            key = "thread_stacks" if stack else "anonymous"
        elif name.startswith("["):
            key = name.strip("[]")
        else:
            key = "file:" + name.rsplit("/", 1)[-1]
        for f in FIELDS:
            groups[key][f] += r.get(f, 0)
    mb = {k: {f: round(v[f] / 1024, 2) for f in FIELDS if f != "Size"} for k, v in groups.items()}
    ordered = sorted(mb.items(), key=lambda kv: -kv[1]["Rss"])
    files = [kv for kv in ordered if kv[0].startswith("file:")]
    rest = [kv for kv in ordered if not kv[0].startswith("file:")]
    return {
        "rss_mb": round(sum(g["Rss"] for g in groups.values()) / 1024, 1),
        "files_rss_mb": round(sum(v["Rss"] for _, v in files), 1),
        "anonymous_and_special": dict(rest),
        "files": dict(files[:top]),
        "other_files_rss_mb": round(sum(v["Rss"] for _, v in files[top:]), 2),
    }


# The floor: an interpreter with asyncio and the agent's gRPC client, Tetragon's event stream open
# with the source's channel options (raw bytes, as sources/tetragon_grpc.py asks for them), idle
# until its stdin closes. The options come in as their repr (:func:`floor_code`): importing
# sources/tetragon_channel there would bring the config and the protobuf messages.
FLOOR_CODE = """
import asyncio, sys
from stellaops_runtime import rpc
from stellaops_runtime.rpc import ChannelOptions

OPTIONS = {options}

async def main(address):
    async with rpc.insecure_channel(address, OPTIONS) as ch:
        await ch.channel_ready()
        call = ch.unary_stream("/tetragon.FineGuidanceSensors/GetEvents")(b"")
        reading = asyncio.ensure_future(anext(call))  # the stream open, as the agent's
        await asyncio.sleep(0.5)
        print("open", *sorted(m for m in sys.modules if m.partition(".")[0] == "grpc"), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        call.cancel()
        reading.cancel()

asyncio.run(main(sys.argv[1]))
"""
OPERATOR = Path(__file__).resolve().parents[1] / "operator"  # the floor's rpc: this checkout's


def floor_code() -> str:
    """FLOOR_CODE with the Tetragon source's channel options (sources/tetragon_channel.py)."""
    from stellaops_runtime.sources.tetragon_channel import channel_options

    return FLOOR_CODE.replace("{options}", repr(channel_options()))


def floor(address: str, top: int) -> dict[str, Any]:
    """The floor process's memory, idle with its stream open for 3 s (see the docstring)."""
    from stellaops_runtime.agent import jemalloc

    decision = jemalloc.plan(os.environ, jemalloc.find_library())
    env = {**(decision.env if decision.env is not None else os.environ), "PYTHONPATH": str(OPERATOR)}
    proc = subprocess.Popen(
        [sys.executable, "-c", floor_code(), address],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        said = proc.stdout.readline().split()  # "open", then grpcio's modules (none: asyncio + rpc alone)
        if said[:1] != ["open"]:
            raise RuntimeError("the floor process could not open the stream")
        time.sleep(3)
        status = bench._status(proc.pid)
        rows = smaps(proc.pid)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    b = breakdown(rows, top)
    return {
        "status": status,
        "allocator": decision.reason,
        "grpc_modules": said[1:],
        "rss_mb": b["rss_mb"],
        "anonymous_and_special": b["anonymous_and_special"],
        "files": b["files"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent-path", help="PYTHONPATH for the agent process (another checkout's operator/)")
    ap.add_argument("--top", type=int, default=20, help="files listed one by one (default 20)")
    ap.add_argument("--postgres", action="store_true", help="a PostgreSQL store (a private cluster)")
    ap.add_argument("--floor", action="store_true", help="also measure asyncio + rpc alone (see above)")
    ap.add_argument("--node", action="store_true", help="the operator's config, run as in a pod (see above)")
    ap.add_argument(
        "--inside", action="store_true", help="also the allocator's figures from inside (see above)"
    )
    ap.add_argument(
        "--traced", action="store_true", help="with --inside: Python's allocations too (see above)"
    )
    args = ap.parse_args(argv)
    floor_out: dict[str, Any] | None = None
    inside: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d, contextlib.ExitStack() as stack:
        url = None
        if args.postgres:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.pg import make_server

            server = make_server()
            server.setup()
            stack.callback(server.teardown)
            url = server.fresh_database()
        doc, wrap, env = None, None, None
        if args.node:
            import agent_idle_ab

            doc = agent_idle_ab.node_config(Path(d))
            wrap, env = agent_idle_ab.in_pod(Path(d))
        if args.inside:
            import agent_idle_inside

            env = {**(env or {}), **agent_idle_inside.prepare(Path(d), args.agent_path, traced=args.traced)}
        a = bench._Agent(
            Path(d),
            events=0,
            fixed_time=False,
            agent_path=args.agent_path,
            store_url=url,
            config=doc,
            wrap=wrap,
            extra_env=env,
            as_operator_writes=doc is not None,  # the operator's document, as the operator writes it
        )
        try:
            bench._wait(a.ready, 120, "the agent to be ready")
            time.sleep(3)  # idle, as the bench measures it
            status = a.status()
            rows = smaps(a.proc.pid)
            tasks = sorted(Path(f"/proc/{a.proc.pid}/task").iterdir())
            threads = [(t / "comm").read_text().strip() for t in tasks]
            if args.inside:
                inside = agent_idle_inside.read(a.proc.pid, Path(d))
            if args.floor:
                floor_out = floor(a.address, min(args.top, 8))
        finally:
            a.close()
    out = {"status": status, "node": args.node, "in_cluster": wrap is not None, "threads": threads}
    out.update(breakdown(rows, args.top))
    if args.inside:
        out["inside"] = inside
    if floor_out is not None:
        out["floor"] = floor_out
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
