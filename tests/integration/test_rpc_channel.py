"""The rpc client's channel and calls over their life: keepalive, close, abandoned calls, bad targets.

Real sockets: the raw HTTP/2 server of tests/rpc_h2_server.py, an HTTP/1.1 server, a grpcio server
kept across two event loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import pytest

from stellaops_runtime import rpc
from stellaops_runtime.rpc import frames as f
from tests.rpc_h2_server import H2Server, Peer, fails, msg

pytestmark = pytest.mark.timeout(30)


async def test_an_unanswered_keepalive_ping_fails_the_call_unavailable_in_time() -> None:
    async def quiet(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        peer.response_headers(sid)
        await peer.send(sid, msg(b"one"))

    options = rpc.ChannelOptions(keepalive_seconds=0.2, keepalive_timeout_seconds=0.3)
    async with H2Server(quiet, answer_pings=False) as srv, rpc.insecure_channel(srv.target, options) as ch:
        call = ch.unary_stream("/t.S/Quiet")(b"")
        assert await anext(call) == b"one"
        start = time.monotonic()
        with pytest.raises(rpc.RpcError) as info:
            await asyncio.wait_for(anext(call), 5)
        took = time.monotonic() - start
        assert srv.peers[0].pings == 1
    assert info.value.code() is rpc.StatusCode.UNAVAILABLE and "keepalive" in info.value.details()
    assert 0.3 <= took < 0.2 + 0.3 + 1.0  # keepalive + timeout, and slack for a loaded machine


async def test_an_answered_keepalive_ping_keeps_a_quiet_stream() -> None:
    async def quiet(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        peer.response_headers(sid)
        await asyncio.sleep(0.9)
        await peer.send(sid, msg(b"late"))
        peer.trailers(sid)

    options = rpc.ChannelOptions(keepalive_seconds=0.2, keepalive_timeout_seconds=0.3)
    async with H2Server(quiet) as srv, rpc.insecure_channel(srv.target, options) as ch:
        assert [m async for m in ch.unary_stream("/t.S/Quiet")(b"")] == [b"late"]
        assert srv.peers[0].pings >= 2


async def _silent(peer: Peer, sid: int, headers: dict[str, str]) -> None:
    peer.response_headers(sid)
    await peer.send(sid, msg(b"first"))


async def test_closing_the_channel_fails_an_open_stream_cancelled() -> None:
    async with H2Server(_silent) as srv:
        channel = rpc.insecure_channel(srv.target)
        call = channel.unary_stream("/t.S/Silent")(b"")
        assert await anext(call) == b"first"
        pending = asyncio.ensure_future(anext(call))
        await asyncio.sleep(0.05)
        await channel.close()
        with pytest.raises(rpc.RpcError) as info:
            await asyncio.wait_for(pending, 5)
        with pytest.raises(rpc.RpcError) as again:
            await channel.unary_unary("/t.S/Silent")(b"")
    assert info.value.code() is rpc.StatusCode.CANCELLED
    assert again.value.code() is rpc.StatusCode.CANCELLED


async def test_a_call_abandoned_by_its_caller_resets_its_stream() -> None:
    """A unary call cancelled (asyncio.wait_for) and a stream dropped unread both end on the server."""
    async with H2Server(_silent) as srv, rpc.insecure_channel(srv.target) as channel:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(channel.unary_unary("/t.S/Silent")(b""), 0.2)
        call = channel.unary_stream("/t.S/Silent")(b"")
        assert await anext(call) == b"first"
        del call
        for _ in range(50):
            if len(srv.peers[0].resets) == 2:
                break
            await asyncio.sleep(0.02)
        assert srv.peers[0].resets == {1: f.CANCEL, 3: f.CANCEL}
        assert channel._conn is not None and channel._conn.streams == {}


@pytest.mark.parametrize("target", ["unix://run/x.sock", "[::1:54321", "h:99999"])
async def test_a_target_nobody_can_dial_fails_each_call_unavailable(target: str) -> None:
    """As grpc: the channel is made, its calls fail (not a ValueError outside every except RpcError)."""
    async with rpc.insecure_channel(target) as channel:
        with pytest.raises(rpc.RpcError) as unary:
            await channel.unary_unary("/t.S/M")(b"")
        with pytest.raises(rpc.RpcError) as stream:
            await anext(channel.unary_stream("/t.S/M")(b""))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(channel.channel_ready(), 0.2)
    for error in (unary.value, stream.value):
        assert error.code() is rpc.StatusCode.UNAVAILABLE and "bad target" in error.details()


async def test_an_http1_server_fails_the_call_unavailable() -> None:
    async def http1(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(http1, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        error = await fails(f"127.0.0.1:{port}")
    finally:
        server.close()
    assert error.code() is rpc.StatusCode.UNAVAILABLE
    assert "Trying to connect an http1.x server" in error.details()


def test_a_channel_used_again_in_a_new_event_loop_connects_again() -> None:
    """The lifecycle clients keep a channel; the connection of a closed loop is not reused (its
    socket would still take the request, but nothing would read the reply)."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    handler = grpc.method_handlers_generic_handler(
        "t.S", {"M": grpc.unary_unary_rpc_method_handler(lambda req, ctx: b"ok " + req)}
    )
    server = grpc.server(ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        channel = rpc.insecure_channel(f"127.0.0.1:{port}")
        assert asyncio.run(channel.unary_unary("/t.S/M")(b"1", timeout=5)) == b"ok 1"
        assert asyncio.run(channel.unary_unary("/t.S/M")(b"2", timeout=5)) == b"ok 2"
        asyncio.run(channel.close())
    finally:
        server.stop(0)


async def test_two_readers_of_one_stream_share_its_messages_and_a_timeout_leaves_the_other() -> None:
    async def paced(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        peer.response_headers(sid)
        for i in range(6):
            await asyncio.sleep(0.05)
            await peer.send(sid, msg(b"p%d" % i))
        peer.trailers(sid)

    async with H2Server(paced) as srv, rpc.insecure_channel(srv.target) as channel:
        call = channel.unary_stream("/t.S/Paced")(b"")
        with pytest.raises(TimeoutError):  # a reader that gives up early
            await asyncio.wait_for(anext(call), 0.01)

        async def reader() -> list[bytes]:
            return [m async for m in call]

        first, second = await asyncio.wait_for(asyncio.gather(reader(), reader()), 5)
    assert sorted(first + second) == [b"p%d" % i for i in range(6)]


async def test_no_keepalive_ping_while_no_call_is_open() -> None:
    async def ok(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        peer.response_headers(sid)
        await peer.send(sid, msg(b"done"))
        peer.trailers(sid)

    options = rpc.ChannelOptions(keepalive_seconds=0.1, keepalive_timeout_seconds=1.0)
    async with H2Server(ok) as srv, rpc.insecure_channel(srv.target, options) as channel:
        assert await channel.unary_unary("/t.S/M")(b"") == b"done"
        await asyncio.sleep(0.4)
        assert srv.peers[0].pings == 0 and srv.connections == 1


@pytest.mark.parametrize("target", ["a" * 70 + ":50051", "bad\0host:50051"], ids=["idna-label", "nul"])
async def test_a_host_the_resolver_refuses_fails_each_call_unavailable(target: str) -> None:
    """A host that parses but that getaddrinfo refuses with a ValueError (a DNS label over 63
    characters: UnicodeError; a NUL) is no dialable address either: an RpcError, never the
    ValueError, which no caller of the agent catches (sources/tetragon_grpc.py: except RpcError)."""
    async with rpc.insecure_channel(target) as channel:
        with pytest.raises(rpc.RpcError) as unary:
            await channel.unary_unary("/t.S/M")(b"", timeout=5)
        with pytest.raises(rpc.RpcError) as stream:
            await anext(channel.unary_stream("/t.S/M")(b""))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(channel.channel_ready(), 0.2)
    for error in (unary.value, stream.value):
        assert error.code() is rpc.StatusCode.UNAVAILABLE and "failed to connect" in error.details()


async def test_closing_the_channel_while_it_connects_leaves_no_connection_open() -> None:
    """close() during the HTTP/2 handshake: the connection it was waiting for is closed too, and
    neither channel_ready nor a later call goes on over it (they fail CANCELLED)."""
    server_saw_eof = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(len(f.PREFACE))
        await asyncio.sleep(0.2)  # SETTINGS only after the client closed its channel
        writer.write(f.encode_settings({}))
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
        server_saw_eof.set()
        writer.close()

    server = await asyncio.start_server(slow, "127.0.0.1", 0)
    try:
        channel = rpc.insecure_channel(f"127.0.0.1:{server.sockets[0].getsockname()[1]}")
        ready = asyncio.ensure_future(channel.channel_ready())
        await asyncio.sleep(0.05)
        await channel.close()
        with pytest.raises(rpc.RpcError) as info:
            await asyncio.wait_for(ready, 5)
        assert info.value.code() is rpc.StatusCode.CANCELLED
        with pytest.raises(rpc.RpcError) as later:
            await asyncio.wait_for(channel.unary_unary("/t.S/M")(b""), 5)
        assert later.value.code() is rpc.StatusCode.CANCELLED
        await asyncio.wait_for(server_saw_eof.wait(), 5)
    finally:
        server.close()


def test_concurrent_calls_on_a_channel_kept_across_event_loops_fail_as_rpc_errors() -> None:
    """Two calls connecting at once in one loop, then in the next: the second loop's calls fail
    UNAVAILABLE (nobody listens), not RuntimeError "bound to a different event loop"."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    channel = rpc.insecure_channel(f"127.0.0.1:{port}")

    async def two() -> list[BaseException | bytes]:
        calls = (channel.unary_unary("/t.S/M")(b"", timeout=5) for _ in range(2))
        return await asyncio.gather(*calls, return_exceptions=True)

    for _ in range(2):
        results = asyncio.run(two())
        assert all(isinstance(r, rpc.RpcError) and r.code() is rpc.StatusCode.UNAVAILABLE for r in results), (
            results
        )


async def test_a_stream_cut_after_goaway_too_many_pings_says_so() -> None:
    """Go's server answers pings too often with GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings") naming
    the open stream as processed, then closes: the stream's error names that reason (seen against
    a real grpc-go server with MinTime 2 s and a 0.5 s keepalive), not just "Connection lost"."""

    async def calm(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        peer.response_headers(sid)
        await peer.send(sid, msg(b"one"))
        peer.write(f.encode_goaway(sid, f.ENHANCE_YOUR_CALM, b"too_many_pings"))
        await peer.writer.drain()
        peer.writer.close()

    async with H2Server(calm) as srv, rpc.insecure_channel(srv.target) as channel:
        call = channel.unary_stream("/t.S/Calm")(b"")
        assert await anext(call) == b"one"
        with pytest.raises(rpc.RpcError) as info:
            await asyncio.wait_for(anext(call), 5)
    assert info.value.code() is rpc.StatusCode.UNAVAILABLE
    assert "too_many_pings" in info.value.details() and "error code 11" in info.value.details()
