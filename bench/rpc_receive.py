"""How fast the agent's own gRPC client (stellaops_runtime.rpc) receives a server stream.

    python bench/rpc_receive.py micro            # per DATA frame: data_received -> message read
    python bench/rpc_receive.py raw [secs]       # a raw HTTP/2 server pushing pre-encoded frames
    python bench/rpc_receive.py replay [secs]    # the replay server (--loop), rpc vs grpc.aio

Tetragon sends one DATA frame per event and the pipeline targets 150,000 events/s per core, so
a frame must cost the client a few microseconds (the ``h2`` library: ~16 us). ``micro`` feeds
20,000 frames of a 700-byte message in 64 KiB chunks into a Connection (a fake transport) and
reads each message as the agent does; ``raw`` and ``replay`` read a real socket for some
seconds and print messages per second and per CPU second of the client process.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import hpack

from stellaops_runtime import rpc
from stellaops_runtime.rpc import frames as f
from stellaops_runtime.rpc.calls import next_message
from stellaops_runtime.rpc.connection import Connection

REPO = Path(__file__).resolve().parents[1]
GET_EVENTS = "/tetragon.FineGuidanceSensors/GetEvents"
N = 20000


class _Sink(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += len(data)

    def close(self) -> None:
        pass


async def micro() -> None:
    conn = Connection(authority="x", stream_window=1 << 20, max_message=4 << 20, keepalive=None,
                      keepalive_timeout=20.0)  # fmt: skip
    conn.connection_made(_Sink())
    conn.data_received(f.encode_settings({}))
    stream = conn.start_stream([(":path", GET_EVENTS)])
    block = hpack.Encoder().encode([(":status", "200"), ("content-type", "application/grpc")])
    conn.data_received(f.encode_headers(stream.sid, block, end_stream=False, max_frame_size=16384))
    frame = f.encode_data(stream.sid, f.grpc_message(b"\x07" * 700), end_stream=False)
    data = frame * N
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        got = 0
        for chunk in chunks:
            conn.data_received(chunk)
            while stream.queue:
                await next_message(conn, stream)
                got += 1
        best = min(best, time.perf_counter() - start)
        assert got == N - 1 or got == N, got  # a frame cut at the last chunk's end waits
        conn.data_received(b"")
        while stream.queue:
            await next_message(conn, stream)
    print(f"rpc parser: {best / N * 1e6:.2f} us per 700-byte message frame (best of 5, {N} frames)")


_RAW_SERVER = r"""
import asyncio, sys
sys.path.insert(0, sys.argv[1])
import hpack
from stellaops_runtime.rpc import frames as f

async def serve(reader, writer):
    await reader.readexactly(len(f.PREFACE))
    writer.write(f.encode_settings({}))
    windows = {0: 65535}
    initial = [65535]
    changed = asyncio.Event()
    pushes = []
    async def read_loop():
        buf = b""
        while chunk := await reader.read(65536):
            buf += chunk
            frames, used, _ = f.split_frames(buf, 1 << 24)
            buf = buf[used:]
            for t, flags, sid, p in frames:
                if t == f.SETTINGS and not flags & 1:
                    for k, v in f.parse_settings(flags, sid, p):
                        if k == f.INITIAL_WINDOW_SIZE:  # grpc's BDP probing grows it mid-stream
                            for s in [s for s in windows if s]:
                                windows[s] += v - initial[0]
                            initial[0] = v
                    changed.set()
                    writer.write(f.encode_settings_ack())
                elif t == f.WINDOW_UPDATE:
                    windows[sid] = windows.get(sid, initial[0]) + f.parse_window_update(p)
                    changed.set()
                elif t == f.HEADERS:
                    pushes.append(asyncio.ensure_future(push(sid)))
                elif t == f.PING and not flags & 1:
                    writer.write(f.encode_ping(p, ack=True))
    async def push(sid):
        block = hpack.Encoder().encode([(":status", "200"), ("content-type", "application/grpc")])
        writer.write(f.encode_headers(sid, block, end_stream=False, max_frame_size=16384))
        frame = f.encode_data(sid, f.grpc_message(b"\x07" * 700), end_stream=False)
        size = len(frame) - 9
        while True:
            n = min(64, min(windows[0], windows.get(sid, initial[0])) // size)
            if n <= 0:
                changed.clear()
                await changed.wait()
                continue
            windows[0] -= n * size
            windows[sid] = windows.get(sid, initial[0]) - n * size
            writer.write(frame * n)
            await writer.drain()
    try:
        await read_loop()
    except ConnectionError:
        pass
    for task in pushes:
        task.cancel()

async def main():
    srv = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


def _line(name: str, n: int, cpu: float, wall: float) -> str:
    per_cpu, per_s = n / (time.process_time() - cpu), n / (time.monotonic() - wall)
    return f"{name:<8} {per_cpu:>9,.0f} msg/cpu-s {per_s:>9,.0f} msg/s"


async def _rpc_rate(target: str, secs: float) -> str:
    async with rpc.insecure_channel(target, rpc.ChannelOptions(max_receive_message_length=64 << 20)) as ch:
        call = ch.unary_stream(GET_EVENTS)(b"")
        await anext(call)
        n, cpu, wall = 0, time.process_time(), time.monotonic()
        async for _ in call:
            n += 1
            if n % 1000 == 0 and time.monotonic() - wall > secs:
                break
        call.cancel()
        return _line("rpc", n, cpu, wall)


async def _grpc_rate(target: str, secs: float) -> str:
    import grpc  # only for the comparison

    async with grpc.aio.insecure_channel(
        target, options=[("grpc.max_receive_message_length", 64 << 20)]
    ) as ch:
        call = ch.unary_stream(GET_EVENTS)(b"")
        await call.read()
        n, cpu, wall = 0, time.process_time(), time.monotonic()
        while True:
            await call.read()
            n += 1
            if n % 1000 == 0 and time.monotonic() - wall > secs:
                break
        call.cancel()
        return _line("grpc.aio", n, cpu, wall)


def _compare(target: str, secs: float) -> None:
    for rate in (_rpc_rate, _grpc_rate) * 2:
        print(asyncio.run(rate(target, secs)))


def raw(secs: float) -> None:
    server = [sys.executable, "-c", _RAW_SERVER, str(REPO / "operator")]
    proc = subprocess.Popen(server, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        print("raw HTTP/2 server pushing 700-byte messages, up to 64 frames a write:")
        _compare(f"127.0.0.1:{port}", secs)
    finally:
        proc.terminate()
        proc.wait()


def replay(secs: float) -> None:
    sock = f"/tmp/rpc-bench-{os.getpid()}.sock"
    stream = REPO / "tests" / "fixtures" / "tetragon" / "synthetic" / "stream-a.jsonl.gz"
    cli = [sys.executable, "-c", "import sys; from stellaops_runtime.cli.main import main; sys.exit(main())"]
    proc = subprocess.Popen([*cli, "tetragon-replay", "--loop", "--listen", f"unix://{sock}", str(stream)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        print("replay server --loop (stream-a), unix socket:")
        _compare(f"unix://{sock}", secs)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "micro"
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    if what == "micro":
        asyncio.run(micro())
    elif what == "raw":
        raw(seconds)
    else:
        replay(seconds)
