"""A server that floods frames we must answer (PING, SETTINGS) and never reads our answers.

Each PING and each SETTINGS frame owes the server a reply (RFC 9113 6.5, 6.7). A server that keeps
sending them and never reads its socket made the client queue every reply in its transport's write
buffer: memory without bound in every node's agent (a TCP Tetragon address is any listener there).
The client stops reading while the server does not read its writes (asyncio's write flow control),
so the buffer stays near its high-water mark; the call then ends by its deadline or keepalive.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from stellaops_runtime import rpc
from stellaops_runtime.rpc import frames as f

FLOOD_BYTES = 64 << 20  # what the server tries to push: far more than loopback's socket buffers
BOUND = 1 << 20  # what the client may hold unsent (asyncio's high-water mark is 64 KiB)


async def _flooding_server(frame: bytes, pushed: list[int]) -> tuple[asyncio.Server, int]:
    chunk = frame * (65536 // len(frame))

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readexactly(len(f.PREFACE))  # then never read again
            writer.write(f.encode_settings({}))
            while pushed[0] < FLOOD_BYTES:
                writer.write(chunk)
                pushed[0] += len(chunk)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _flood(frame: bytes) -> tuple[int, int, rpc.RpcError]:
    pushed = [0]
    server, port = await _flooding_server(frame, pushed)
    options = rpc.ChannelOptions(keepalive_seconds=0.5, keepalive_timeout_seconds=0.5)
    ch = rpc.insecure_channel(f"127.0.0.1:{port}", options)
    most = 0
    try:
        call = ch.unary_stream("/tetragon.FineGuidanceSensors/GetEvents")(b"", timeout=4.0)
        reading = asyncio.ensure_future(call.__anext__())
        end = time.monotonic() + 3.0
        while not reading.done() and time.monotonic() < end:
            conn = ch._conn  # the connection the call runs on (no public view of it)
            if conn is not None and conn.transport is not None:
                most = max(most, conn.transport.get_write_buffer_size())
            await asyncio.sleep(0.02)
        try:
            await asyncio.wait_for(reading, 5.0)
        except rpc.RpcError as e:
            error = e
        else:
            raise AssertionError("the call delivered a message no server sent")
    finally:
        await ch.close()
        server.close()
    return most, pushed[0], error


async def test_a_ping_flood_never_read_does_not_grow_the_clients_write_buffer() -> None:
    most, pushed, error = await _flood(f.encode_ping(b"floodpng"))
    assert most <= BOUND, f"{most} bytes of PING answers held for a server that does not read"
    assert pushed < FLOOD_BYTES  # the server was held back: we stopped reading its flood
    assert error.code() in (rpc.StatusCode.UNAVAILABLE, rpc.StatusCode.DEADLINE_EXCEEDED)


async def test_a_settings_flood_never_read_does_not_grow_the_clients_write_buffer() -> None:
    most, pushed, error = await _flood(f.encode_settings({f.MAX_CONCURRENT_STREAMS: 100}))
    assert most <= BOUND, f"{most} bytes of SETTINGS acknowledgements held for a server that does not read"
    assert pushed < FLOOD_BYTES
    assert error.code() in (rpc.StatusCode.UNAVAILABLE, rpc.StatusCode.DEADLINE_EXCEEDED)
