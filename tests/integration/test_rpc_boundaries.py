"""gRPC message boundaries and flow-control credit, property-tested through a real socket.

A random sequence of messages (empty ones, 1 byte, a prefix's length, many in one frame, some
larger than the window) is cut into DATA frames at random points (a 5-byte prefix split across
frames, zero-length and padded frames, a message ending exactly at a frame end), sent within the
client's windows as Go's gRPC server sends (as much as the window allows, never more), and
written to the socket in random-size pieces cut across frame boundaries. What the reader gets
must be exactly what was sent, in order, followed by the trailers' status; a long stream through
a small window must never stall (credit that leaks would look like a quiet connection).
"""

from __future__ import annotations

import asyncio
import random

import pytest

from stellaops_runtime import rpc
from stellaops_runtime.rpc import frames as f
from tests.rpc_h2_server import H2Server, Peer

pytestmark = pytest.mark.timeout(60)


def _messages(rng: random.Random, total: int) -> list[bytes]:
    out: list[bytes] = []
    size = 0
    while size < total:
        kind = rng.random()
        if kind < 0.15:
            n = 0
        elif kind < 0.3:
            n = rng.choice([1, 4, 5, 6, 9, 10])
        elif kind < 0.9:
            n = rng.randrange(1, 900)
        else:
            n = rng.randrange(1, 40000)  # larger than the window and a frame
        out.append(rng.randbytes(n))
        size += n + 5
    return out


async def _send_randomly(peer: Peer, sid: int, body: bytes, rng: random.Random, *, end_on_data: bool) -> None:
    """``body`` as DATA frames cut at random, within the windows, written in random pieces."""
    pos = 0
    pending = bytearray()

    async def flush() -> None:
        while pending:
            n = rng.randrange(1, 40) if rng.random() < 0.5 else rng.randrange(1, 20000)
            peer.write(bytes(pending[:n]))
            del pending[:n]
            await peer.writer.drain()
            await asyncio.sleep(0)  # the client reads what is there: reads of random sizes

    def room() -> int:
        return min(peer.conn_window, peer.stream_windows.get(sid, peer.initial_window), 16384)

    while pos < len(body) or end_on_data:
        if room() <= 0:
            await flush()
            if room() <= 0:
                peer.window_changed.clear()
                await peer.window_changed.wait()
            continue
        want = 0 if rng.random() < 0.05 else rng.randrange(1, 6000)
        pad = rng.randrange(0, 12) if rng.random() < 0.2 and room() > 12 else -1
        overhead = pad + 1 if pad >= 0 else 0
        want = min(want, room() - overhead)  # as Go sends: what the windows allow, never more
        piece = body[pos : pos + want]
        pos += len(piece)
        last = pos >= len(body)
        flags = f.FLAG_END_STREAM if (last and end_on_data) else 0
        payload = piece
        if pad >= 0:
            flags |= f.FLAG_PADDED
            payload = bytes([pad]) + piece + b"\0" * pad
        peer.conn_window -= len(payload)
        peer.stream_windows[sid] = peer.stream_windows.get(sid, peer.initial_window) - len(payload)
        pending += f.encode_frame(f.DATA, flags, sid, payload)
        if rng.random() < 0.3:
            await flush()
        if last and end_on_data:
            break
    await flush()


@pytest.mark.parametrize("seed", range(12))
async def test_random_frame_and_read_splits_deliver_exactly_the_messages_sent(seed: int) -> None:
    rng = random.Random(seed)
    sent = _messages(rng, rng.choice([3000, 60000, 250000]))
    end_on_data = seed % 4 == 3  # DATA with END_STREAM and no trailers: the messages, then INTERNAL
    window = rng.choice([1000, 4096, 65535])

    async def scenario(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        peer.response_headers(sid)
        body = b"".join(f.grpc_message(m) for m in sent)
        await _send_randomly(peer, sid, body, rng, end_on_data=end_on_data)
        if not end_on_data:
            peer.trailers(sid, 5, "done")  # right after the data, in the same write
            await peer.writer.drain()

    options = rpc.ChannelOptions(stream_window=window, max_receive_message_length=1 << 20)
    got: list[bytes] = []
    async with H2Server(scenario) as srv, rpc.insecure_channel(srv.target, options) as ch:
        call = ch.unary_stream("/t.S/Random")(b"")
        with pytest.raises(rpc.RpcError) as info:
            while True:
                got.append(await asyncio.wait_for(anext(call), 10))
                if rng.random() < 0.05:
                    await asyncio.sleep(0.001)  # a reader that lags now and then
    assert len(got) == len(sent) and got == sent
    if end_on_data:
        assert info.value.code() is rpc.StatusCode.INTERNAL, info.value
    else:
        assert (info.value.code(), info.value.details()) == (rpc.StatusCode.NOT_FOUND, "done")


async def test_millions_of_bytes_through_a_small_window_never_stall_nor_leak_credit() -> None:
    rng = random.Random(7)
    sent = [rng.randbytes(rng.randrange(0, 600)) for _ in range(12000)]  # about 3.6 MB
    window = 8192
    read_all = asyncio.Event()
    left: list[int] = []

    async def scenario(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        peer.response_headers(sid)
        await _send_randomly(peer, sid, b"".join(f.grpc_message(m) for m in sent), rng, end_on_data=False)
        await read_all.wait()
        await asyncio.sleep(0.05)  # any WINDOW_UPDATE the last reads sent has arrived
        left.append(peer.stream_windows[sid])
        peer.trailers(sid)

    options = rpc.ChannelOptions(stream_window=window)
    async with H2Server(scenario) as srv, rpc.insecure_channel(srv.target, options) as ch:
        call = ch.unary_stream("/t.S/Long")(b"")
        got = [await anext(call) for _ in sent]
        stream = next(iter((await ch.connection()).streams.values()))
        read_all.set()
        with pytest.raises(StopAsyncIteration):
            await anext(call)
    assert got == sent  # about 450 window round trips: a credit that leaked would stall it
    # every byte the reader took is credited back or waiting to be (under half a window): none lost
    assert left[0] + stream.to_credit == window and stream.to_credit < window // 2
