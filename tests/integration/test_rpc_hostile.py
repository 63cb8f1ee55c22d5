"""The rpc client against a raw HTTP/2 server that misbehaves: every call ends with the right RpcError.

Each scenario is a real socket (tests/rpc_h2_server.py): a bad frame, an oversize frame, a bad
HPACK block, a header block over 64 KiB, GOAWAY, RST_STREAM, a message that never finishes, a
connection closed mid-frame, a server over the flow-control window. Nothing crashes or hangs,
other streams on the connection behave as HTTP/2 says, and the channel reconnects for the next
call. The channel's life (keepalive, close, bad targets): test_rpc_channel.py.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from stellaops_runtime import rpc
from stellaops_runtime.rpc import frames as f
from tests.rpc_h2_server import H2Server, Peer, fails, msg, unary

pytestmark = pytest.mark.timeout(30)


async def test_a_well_behaved_reply_and_what_the_server_saw() -> None:
    seen: dict[str, str] = {}

    async def ok(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        seen.update(headers)
        peer.response_headers(sid)
        await peer.send(sid, msg(b"pong"))
        peer.trailers(sid)

    async with H2Server(ok) as srv:
        assert await unary(srv.target, timeout=30, metadata=[("containerd-namespace", "k8s.io")]) == b"pong"
    assert seen[":path"] == "/t.S/M" and seen[":method"] == "POST" and seen["te"] == "trailers"
    assert seen["content-type"] == "application/grpc"
    assert seen["containerd-namespace"] == "k8s.io"
    assert seen["grpc-timeout"].endswith("m") and 29000 <= int(seen["grpc-timeout"][:-1]) <= 30000


@pytest.mark.parametrize(
    ("bad", "text"),
    [
        (f.encode_frame(f.WINDOW_UPDATE, 0, 0, b"\0\0\1"), "WINDOW_UPDATE payload of 3 bytes"),
        (f.encode_frame(f.PING, 0, 0, b"1234"), "PING payload of 4 bytes"),
        (f.encode_frame(f.SETTINGS, 0, 0, b"\0\4\0"), "SETTINGS payload of 3 bytes"),
        (
            b"\0\x50\0" + bytes([f.DATA, 0]) + b"\0\0\0\1",
            "frame of 20480 bytes over our max frame size 16384",
        ),
        (f.encode_frame(f.HEADERS, f.FLAG_END_HEADERS, 1, b"\xff\xff\xff\xff\x0f"), "bad HPACK header block"),
        (f.encode_frame(f.CONTINUATION, f.FLAG_END_HEADERS, 1, b""), "CONTINUATION without HEADERS"),
        (f.encode_frame(f.DATA, f.FLAG_PADDED, 1, b"\x09abc"), "DATA frame padding (9) not shorter"),
        (f.encode_frame(f.PUSH_PROMISE, f.FLAG_END_HEADERS, 1, b"\0\0\0\2"), "PUSH_PROMISE"),
    ],
    ids=["window-update", "ping", "settings", "oversize", "hpack", "continuation", "padding", "push"],
)
async def test_a_protocol_error_ends_the_connection_and_its_calls(bad: bytes, text: str) -> None:
    async def hostile(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        peer.response_headers(sid)
        peer.write(bad)

    async with H2Server(hostile) as srv:
        error = await fails(srv.target)
        await asyncio.sleep(0.05)
        assert srv.peers[0].goaway is not None and srv.peers[0].goaway[1] != 0
    assert error.code() is rpc.StatusCode.INTERNAL
    assert "HTTP/2 protocol error from the server" in error.details() and text in error.details()


async def test_a_header_block_over_64_kib_ends_the_connection() -> None:
    async def hostile(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        block = peer.encoder.encode([(":status", "200"), ("x-big", "a" * 70000)], huffman=False)
        peer.write(f.encode_headers(sid, block, end_stream=False, max_frame_size=16384))

    async with H2Server(hostile) as srv:
        error = await fails(srv.target)
    assert error.code() is rpc.StatusCode.INTERNAL and "header block over 65536 bytes" in error.details()


async def test_an_hpack_bomb_ends_the_connection_without_inflating_it() -> None:
    """A 14 KB block naming a 4 KB table entry 10,000 times would be 40 MB of headers."""

    async def hostile(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        entry = peer.encoder.encode([("x-bomb", "a" * 4000)], huffman=False)  # indexed: table entry 62
        block = peer.encoder.encode([(":status", "200")]) + entry + b"\xbe" * 10000
        peer.write(f.encode_headers(sid, block, end_stream=False, max_frame_size=16384))

    async with H2Server(hostile) as srv:
        start = time.monotonic()
        error = await fails(srv.target)
        assert time.monotonic() - start < 2
    assert error.code() is rpc.StatusCode.INTERNAL and "OversizedHeaderListError" in error.details()


async def test_a_reply_spread_over_continuation_frames_is_read() -> None:
    async def ok(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        block = peer.encoder.encode([(":status", "200"), ("x-big", "b" * 40000)])
        peer.write(f.encode_headers(sid, block, end_stream=False, max_frame_size=1000))
        await peer.send(sid, msg(b"after continuation"))
        peer.trailers(sid)

    async with H2Server(ok) as srv:
        assert await unary(srv.target) == b"after continuation"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (f.REFUSED_STREAM, rpc.StatusCode.UNAVAILABLE),
        (f.CANCEL, rpc.StatusCode.CANCELLED),
        (f.PROTOCOL_ERROR, rpc.StatusCode.INTERNAL),
        (f.INTERNAL_ERROR, rpc.StatusCode.INTERNAL),
    ],
)
async def test_rst_stream_fails_that_call_only(code: int, status: rpc.StatusCode) -> None:
    async def scenario(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        peer.response_headers(sid)
        if headers[":path"] == "/t.S/Reset":
            peer.write(f.encode_rst_stream(sid, code))
            return
        for i in range(3):
            await peer.send(sid, msg(b"m%d" % i))
            await asyncio.sleep(0.05)
        peer.trailers(sid)

    async with H2Server(scenario) as srv, rpc.insecure_channel(srv.target) as channel:
        good = channel.unary_stream("/t.S/Stream")(b"")
        first = await anext(good)
        with pytest.raises(rpc.RpcError) as info:
            await channel.unary_unary("/t.S/Reset")(b"")
        assert [first] + [m async for m in good] == [b"m0", b"m1", b"m2"]
        assert srv.connections == 1
    assert info.value.code() is status
    assert info.value.details() == f"Received RST_STREAM with error code {code}"


async def test_goaway_fails_streams_above_last_id_and_the_channel_reconnects() -> None:
    async def scenario(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        if peer.server.connections == 1 and headers[":path"] == "/t.S/Second":
            peer.write(f.encode_goaway(1, f.NO_ERROR, b"going away"))
            await asyncio.sleep(0.05)
            await peer.send(1, msg(b"still served"))
            peer.trailers(1)
            return
        peer.response_headers(sid)
        if headers[":path"] == "/t.S/First":
            return  # answered by the GOAWAY scenario above
        await peer.send(sid, msg(b"on connection %d" % peer.server.connections))
        peer.trailers(sid)

    async with H2Server(scenario) as srv, rpc.insecure_channel(srv.target) as channel:
        first = asyncio.ensure_future(channel.unary_unary("/t.S/First")(b""))
        await asyncio.sleep(0.05)
        with pytest.raises(rpc.RpcError) as info:
            await channel.unary_unary("/t.S/Second")(b"")
        assert await first == b"still served"
        assert await channel.unary_unary("/t.S/Third")(b"") == b"on connection 2"
    assert info.value.code() is rpc.StatusCode.UNAVAILABLE
    assert "GOAWAY" in info.value.details() and "going away" in info.value.details()


async def test_a_message_that_never_finishes_ends_at_the_deadline_with_rst_stream() -> None:
    async def hang(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        peer.response_headers(sid)
        await peer.send(sid, msg(b"x" * 1000)[:100])

    async with H2Server(hang) as srv:
        start = time.monotonic()
        error = await fails(srv.target, timeout=0.3)
        assert time.monotonic() - start < 2
        await asyncio.sleep(0.05)
        assert srv.peers[0].resets == {1: f.CANCEL}
    assert error.code() is rpc.StatusCode.DEADLINE_EXCEEDED and error.details() == "Deadline Exceeded"


async def test_a_connection_closed_mid_frame_fails_unavailable_and_the_next_call_reconnects() -> None:
    async def scenario(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        peer.response_headers(sid)
        if peer.server.connections == 1:
            peer.write(f.encode_data(sid, msg(b"y" * 50), end_stream=False)[:20])  # cut mid-frame
            await peer.writer.drain()
            peer.writer.close()
            return
        await peer.send(sid, msg(b"fine"))
        peer.trailers(sid)

    async with H2Server(scenario) as srv, rpc.insecure_channel(srv.target) as channel:
        with pytest.raises(rpc.RpcError) as info:
            await asyncio.wait_for(channel.unary_unary("/t.S/M")(b""), 5)
        assert await channel.unary_unary("/t.S/M")(b"") == b"fine"
    assert info.value.code() is rpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("http", "code"),
    [
        ("400", rpc.StatusCode.INTERNAL),
        ("401", rpc.StatusCode.UNAUTHENTICATED),
        ("403", rpc.StatusCode.PERMISSION_DENIED),
        ("404", rpc.StatusCode.UNIMPLEMENTED),
        ("429", rpc.StatusCode.UNAVAILABLE),
        ("502", rpc.StatusCode.UNAVAILABLE),
        ("503", rpc.StatusCode.UNAVAILABLE),
        ("504", rpc.StatusCode.UNAVAILABLE),
        ("500", rpc.StatusCode.UNKNOWN),
    ],
)
@pytest.mark.parametrize("end_stream", [True, False], ids=["headers-only", "then-body"])
async def test_a_non_200_http_status_maps_as_grpc_says(
    http: str, code: rpc.StatusCode, end_stream: bool
) -> None:
    async def scenario(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        peer.headers(sid, [(":status", http), ("content-type", "text/html")], end_stream=end_stream)
        if not end_stream:
            await peer.send(sid, b"<html>proxy error</html>", end_stream=True)

    async with H2Server(scenario) as srv:
        error = await fails(srv.target)
    assert error.code() is code and http in error.details()


async def test_trailers_only_and_a_compressed_message() -> None:
    async def scenario(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        if headers[":path"] == "/t.S/TrailersOnly":
            trailers = [(":status", "200"), ("grpc-status", "5"), ("grpc-message", "n%C3%B6 100%25")]
            peer.headers(sid, trailers, end_stream=True)
            return
        peer.response_headers(sid)
        await peer.send(sid, b"\x01" + msg(b"zz")[1:])
        peer.trailers(sid)

    async with H2Server(scenario) as srv:
        error = await fails(srv.target, path="/t.S/TrailersOnly")
        assert (error.code(), error.details()) == (rpc.StatusCode.NOT_FOUND, "nö 100%")
        error = await fails(srv.target, path="/t.S/Compressed")
        assert error.code() is rpc.StatusCode.INTERNAL and "Compressed" in error.details()


async def test_a_reader_that_stops_holds_about_one_window_and_a_large_message_finishes() -> None:
    window = 256 << 10
    body = b"e" * (10 << 10)
    big = b"B" * (3 << 20)  # over the window: its bytes are credited as they come

    async def flood(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        peer.response_headers(sid)
        for _ in range(300):  # ~3 MB, far over the window
            await peer.send(sid, msg(body))
        await peer.send(sid, msg(big))
        peer.trailers(sid)

    options = rpc.ChannelOptions(stream_window=window)
    async with H2Server(flood) as srv, rpc.insecure_channel(srv.target, options) as channel:
        call = channel.unary_stream("/t.S/Flood")(b"")
        assert await anext(call) == body
        for _ in range(500):  # the server sends all the window lets it, then waits
            if srv.peers[0].sent_data.get(1, 0) >= window:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        sent = srv.peers[0].sent_data[1]
        assert window <= sent <= window + 2 * len(msg(body)) + 16384
        assert channel._conn is not None
        stream = channel._conn.streams[1]
        held = sum(len(m) for m, _ in stream.queue) + len(stream.rbuf)
        assert held <= window
        rest = [m async for m in call]
    assert rest[:-1] == [body] * 299 and rest[-1] == big


async def test_a_server_that_ignores_the_window_ends_the_connection() -> None:
    """A server over the stream window would make the client hold more than it promised."""

    async def greedy(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        peer.response_headers(sid)
        frame = f.encode_data(sid, msg(b"g" * 10000), end_stream=False)
        peer.write(frame * 30)  # 300 KB, no regard for the 64 KiB window

    options = rpc.ChannelOptions(stream_window=64 << 10)
    async with H2Server(greedy) as srv, rpc.insecure_channel(srv.target, options) as channel:
        call = channel.unary_stream("/t.S/Greedy")(b"")
        got = []
        with pytest.raises(rpc.RpcError) as info:
            async for m in call:
                got.append(m)
    assert info.value.code() is rpc.StatusCode.INTERNAL
    assert "DATA over the window of stream 1" in info.value.details()
    assert len(got) <= 7


async def test_unknown_and_priority_frames_are_ignored_and_a_server_ping_is_answered() -> None:
    async def chatty(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        peer.write(f.encode_frame(0x20, 0xFF, sid, b"an extension frame"))
        peer.write(f.encode_frame(f.PRIORITY, 0, sid, b"\0\0\0\0\x10"))
        peer.write(f.encode_ping(b"server!!"))
        peer.response_headers(sid)
        payload = b"\x03" + msg(b"padded") + b"\0\0\0"
        peer.write(f.encode_frame(f.DATA, f.FLAG_PADDED, sid, payload))
        peer.trailers(sid)

    async with H2Server(chatty) as srv:
        assert await unary(srv.target) == b"padded"
        for _ in range(200):
            if srv.peers[0].ping_acks:
                break
            await asyncio.sleep(0.01)
        assert srv.peers[0].ping_acks == [b"server!!"]


async def test_a_request_waits_for_the_servers_window_and_keeps_to_its_frame_size() -> None:
    request = bytes(range(256)) * 160  # 40 KiB: three frames at the default max frame size

    async def stingy(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        while len(peer.received.get(sid, b"")) < 100:
            peer.data_arrived.clear()
            await peer.data_arrived.wait()
        await asyncio.sleep(0.1)
        early = len(peer.received[sid])
        peer.write(f.encode_window_update(sid, 1 << 20))
        while len(peer.received[sid]) < len(request) + 5:
            peer.data_arrived.clear()
            await peer.data_arrived.wait()
        peer.response_headers(sid)
        await peer.send(sid, msg(b"%d %d" % (early, peer.received[sid] == f.grpc_message(request))))
        peer.trailers(sid)

    async with H2Server(stingy, settings={f.INITIAL_WINDOW_SIZE: 100}) as srv:
        async with rpc.insecure_channel(srv.target) as channel:
            await channel.channel_ready()  # the server's SETTINGS are in before the request
            assert await channel.unary_unary("/t.S/Big")(request) == b"100 1"
        assert max(srv.peers[0].data_frame_sizes) <= 16384


async def test_a_unary_call_answered_with_an_endless_stream_ends_at_the_second_message() -> None:
    async def endless(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        peer.response_headers(sid)
        for _ in range(2000):  # 20 MB if the client kept reading
            await peer.send(sid, msg(b"u" * 10000))

    async with H2Server(endless) as srv:
        error = await fails(srv.target)
        await asyncio.sleep(0.1)
        assert srv.peers[0].resets == {1: f.CANCEL} and srv.peers[0].sent_data[1] < 4 << 20
    assert (error.code(), error.details()) == (
        rpc.StatusCode.INTERNAL,
        "More than one message received for a unary call",
    )


async def test_a_grpc_message_sent_as_raw_utf8_reads_as_its_text() -> None:
    """Servers should percent-encode grpc-message; one that sends raw UTF-8 still reads right."""

    async def raw_utf8(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        peer.response_headers(sid)
        peer.trailers(sid, 9, "zählt nicht ✓ 100%25")

    async with H2Server(raw_utf8) as srv:
        error = await fails(srv.target)
    assert (error.code(), error.details()) == (rpc.StatusCode.FAILED_PRECONDITION, "zählt nicht ✓ 100%")


@pytest.mark.parametrize(
    "status", ["\u00b2", "9" * 5000, "\u0662\u0660\u0660"], ids=["superscript", "5000-digits", "arabic"]
)
async def test_a_status_header_that_is_no_number_fails_the_call_with_no_loop_error(status: str) -> None:
    """':status: ²' (str.isdigit but no int), 5000 digits (over int's 4300-digit limit), Arabic
    digits: the call fails UNKNOWN like any status that is not 200, and nothing raises out of
    data_received into the loop's exception handler (which logged a fatal protocol error)."""
    caught: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: caught.append(context))

    async def odd(peer: Peer, sid: int, headers: dict[str, str]) -> None:
        peer.headers(sid, [(":status", status)])
        await peer.send(sid, msg(b"x"))
        peer.trailers(sid)

    async with H2Server(odd) as srv:
        error = await fails(srv.target)
    assert caught == []
    assert error.code() is rpc.StatusCode.UNKNOWN and "Received http2 header with status" in error.details()
