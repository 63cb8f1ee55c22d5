"""What receiving huge events over gRPC costs in memory, with the agent's channel options.

Why it exists: issue 10's peak-RSS budget (250 MB with 4 MiB arguments in the
stream) was mostly spent below the pipeline, in gRPC's receive buffers and in
glibc's handling of multi-MiB blocks. This isolates that part: a replay server
in a child process streams ``--events`` uprobe events of 8 MiB (4 MiB process
arguments + a 4 MiB string argument); this process receives each one as raw
bytes, as the agent's source does (its own gRPC client, stellaops_runtime.rpc, with
sources/tetragon_channel.py's options), and drops it. Printed: this process's RSS
before the stream and its peak (VmHWM) after it. ``--window`` sets the stream's
window (what the server may send ahead of the reader) instead of the agent's.

    .venv/bin/python bench/grpc_memory_bench.py              # the agent's settings
    .venv/bin/python bench/grpc_memory_bench.py --window 16777216 --no-malloc-tuning   # 16 MiB, glibc's

The figures in docs/benchmarks.md up to session 48 were taken with grpcio (its BDP probing on or
off), the agent's client then.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing as mp
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20


def _status_mb() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def _serve(n: int, addresses: Any) -> None:
    from stellaops_runtime.replay.events import ReplayEvent
    from stellaops_runtime.replay.server import ReplayServer
    from stellaops_runtime.wire.tetragon import events_pb2

    events = []
    for i in range(n):
        m = events_pb2.GetEventsResponse(node_name="bench")
        u = m.process_uprobe
        u.process.binary = "/bin/big"
        u.process.arguments = f"--password=hunter{i} " + "A" * 4 * MIB
        u.symbol = "crc32"
        u.args.add().string_arg = "x" * 4 * MIB
        events.append(ReplayEvent.from_message(m))

    async def main() -> None:
        server = ReplayServer(events)
        addresses.put(await server.start("127.0.0.1:0"))
        await asyncio.sleep(600)  # killed by the parent when done

    asyncio.run(main())


async def _receive(address: str, n: int, options: Any) -> int:
    from stellaops_runtime import rpc
    from stellaops_runtime.sources.tetragon_grpc import GET_EVENTS
    from stellaops_runtime.wire.tetragon import events_pb2

    async with rpc.insecure_channel(address, options) as channel:
        await channel.channel_ready()
        call = channel.unary_stream(
            GET_EVENTS,
            request_serializer=events_pb2.GetEventsRequest.SerializeToString,
            response_deserializer=None,
        )(events_pb2.GetEventsRequest())
        got = 0
        async for payload in call:
            got += 1
            del payload
            if got == n:
                break
        call.cancel()
    return got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=40)
    ap.add_argument("--window", type=int, help="the stream's window in bytes (default: the agent's)")
    ap.add_argument("--no-malloc-tuning", action="store_true", help="leave glibc's malloc defaults")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from stellaops_runtime.agent.allocator import tune_malloc
    from stellaops_runtime.sources.tetragon_channel import channel_options

    applied = {} if args.no_malloc_tuning else tune_malloc()
    options = channel_options()
    if args.window:
        options = dataclasses.replace(options, stream_window=args.window)
    ctx = mp.get_context("spawn")
    addresses = ctx.Queue()
    server = ctx.Process(target=_serve, args=(args.events, addresses), daemon=True)
    server.start()
    try:
        address = addresses.get(timeout=120)
        before = _status_mb()
        got = asyncio.run(_receive(address, args.events, options))
        after = _status_mb()
    finally:
        server.kill()
    result = {
        "events": got,
        "event_mib": 8,
        "channel_options": dataclasses.asdict(options),
        "malloc": applied,
        "rss_before_mb": before["VmRSS"],
        "peak_mb": after["VmHWM"],
        "peak_growth_mb": round(after["VmHWM"] - before["VmRSS"], 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
