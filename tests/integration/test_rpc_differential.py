"""The same calls through grpc.aio and through the own rpc client, against one real grpcio server.

The agent moved from grpc.aio to stellaops_runtime.rpc; whatever grpc.aio reported (status code,
details, the messages before an error) the rpc client must report too. The servicer covers
every status code with details holding non-ASCII and '%', trailers-only errors, a deadline,
messages at and over the receive limit, a 20,000-message stream larger than any window, a
unary method answered with no message or two, an abort mid-stream and a server stopped
mid-stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import pytest

from stellaops_runtime import rpc

pytestmark = pytest.mark.timeout(60)

DETAILS = 'héllo 100% ✓ %41 \t"déjà"'
LIMIT = 1 << 20
STREAM_N = 20000


async def _status(request: bytes, ctx: grpc.aio.ServicerContext) -> bytes:
    await ctx.abort(grpc.StatusCode[request.decode()], DETAILS)
    return b""


async def _echo(request: bytes, ctx: grpc.aio.ServicerContext) -> bytes:
    md = dict(ctx.invocation_metadata() or ())
    return b"echo:" + request + b":" + str(md.get("containerd-namespace", "")).encode()


async def _sized(request: bytes, ctx: grpc.aio.ServicerContext) -> bytes:
    return b"s" * int(request)


async def _slow(request: bytes, ctx: grpc.aio.ServicerContext) -> bytes:
    await asyncio.sleep(10)
    return b""


async def _many(request: bytes, ctx: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    for i in range(STREAM_N):
        yield b"%06d" % i + b"e" * 700


async def _count(request: bytes, ctx: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    for i in range(int(request)):
        yield b"m%d" % i


async def _abort_mid(request: bytes, ctx: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    for i in range(5):
        yield b"a%d" % i
    await ctx.abort(grpc.StatusCode.DATA_LOSS, DETAILS)


async def _hang_mid(request: bytes, ctx: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    for i in range(3):
        yield b"h%d" % i
    await asyncio.sleep(30)


def _handler() -> grpc.GenericRpcHandler:
    uu, us = grpc.unary_unary_rpc_method_handler, grpc.unary_stream_rpc_method_handler
    return grpc.method_handlers_generic_handler(
        "t.S",
        {
            "Status": uu(_status),
            "Echo": uu(_echo),
            "Sized": uu(_sized),
            "Slow": uu(_slow),
            "Many": us(_many),
            "Count": us(_count),
            "AbortMid": us(_abort_mid),
            "HangMid": us(_hang_mid),
        },
    )


@pytest.fixture
async def server() -> AsyncIterator[tuple[grpc.aio.Server, str]]:
    srv = grpc.aio.server()
    srv.add_generic_rpc_handlers((_handler(),))
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    try:
        yield srv, f"127.0.0.1:{port}"
    finally:
        await srv.stop(0)


Outcome = tuple[str, str | None, list[bytes]]


async def via_grpc(target: str, kind: str, method: str, request: bytes, **kw: Any) -> Outcome:
    got: list[bytes] = []
    opts = [("grpc.max_receive_message_length", LIMIT)]
    async with grpc.aio.insecure_channel(target, options=opts) as channel:
        try:
            if kind == "unary":
                got.append(await channel.unary_unary(method)(request, **kw))
            else:
                async for m in channel.unary_stream(method)(request, **kw):
                    got.append(m)
            return "OK", "", got
        except grpc.aio.AioRpcError as exc:
            return exc.code().name, exc.details(), got


async def via_rpc(target: str, kind: str, method: str, request: bytes, **kw: Any) -> Outcome:
    got: list[bytes] = []
    options = rpc.ChannelOptions(max_receive_message_length=LIMIT)
    async with rpc.insecure_channel(target, options) as channel:
        try:
            if kind == "unary":
                got.append(await channel.unary_unary(method)(request, **kw))
            else:
                async for m in channel.unary_stream(method)(request, **kw):
                    got.append(m)
            return "OK", "", got
        except rpc.RpcError as exc:
            return exc.code().name, exc.details(), got


async def both(target: str, kind: str, method: str, request: bytes, **kw: Any) -> tuple[Outcome, Outcome]:
    theirs = await via_grpc(target, kind, method, request, **kw)
    return theirs, await via_rpc(target, kind, method, request, **kw)


@pytest.mark.parametrize("code", [c.name for c in grpc.StatusCode if c is not grpc.StatusCode.OK])
async def test_every_status_code_and_its_details(server: tuple[Any, str], code: str) -> None:
    theirs, ours = await both(server[1], "unary", "/t.S/Status", code.encode())
    assert theirs == (code, DETAILS, [])
    assert ours == theirs


async def test_ok_with_metadata_and_deadline(server: tuple[Any, str]) -> None:
    md: Sequence[tuple[str, str]] = [("containerd-namespace", "k8s.io")]
    theirs, ours = await both(server[1], "unary", "/t.S/Echo", b"x", timeout=5, metadata=md)
    assert theirs == ("OK", "", [b"echo:x:k8s.io"])
    assert ours == theirs


async def test_a_deadline(server: tuple[Any, str]) -> None:
    theirs, ours = await both(server[1], "unary", "/t.S/Slow", b"", timeout=0.2)
    assert theirs == ("DEADLINE_EXCEEDED", "Deadline Exceeded", [])
    assert ours == theirs


@pytest.mark.parametrize("size", [LIMIT - 5000, LIMIT, LIMIT + 1, 3 * LIMIT])
async def test_a_message_near_and_over_the_limit(server: tuple[Any, str], size: int) -> None:
    theirs, ours = await both(server[1], "unary", "/t.S/Sized", b"%d" % size)
    if size <= LIMIT:
        assert theirs == ("OK", "", [b"s" * size])
        assert ours == theirs
    else:
        # grpc 1.85 words it "Stream removed (CLIENT: Received message larger than max (N vs. M))"
        text = f"Received message larger than max ({size} vs. {LIMIT})"
        assert theirs[0] == ours[0] == "RESOURCE_EXHAUSTED" and theirs[2] == ours[2] == []
        assert text in (theirs[1] or "") and ours[1] == text


async def test_a_stream_larger_than_any_window(server: tuple[Any, str]) -> None:
    theirs, ours = await both(server[1], "stream", "/t.S/Many", b"")
    assert theirs[:2] == ("OK", "") and len(theirs[2]) == STREAM_N
    assert ours == theirs


async def test_a_unary_call_answered_with_no_message_or_two(server: tuple[Any, str]) -> None:
    """Here the rpc client is stricter than grpc.aio 1.85, on purpose (gRPC's statuscodes.md:
    a response cardinality violation is an error): grpc.aio returns None for no message and
    waits out the deadline on two; the agent would crash on the None or stall."""
    theirs, ours = await both(server[1], "unary", "/t.S/Count", b"0", timeout=0.5)
    assert theirs == ("OK", "", [None])
    assert ours == ("UNIMPLEMENTED", "No message received from the server for a unary call", [])
    theirs, ours = await both(server[1], "unary", "/t.S/Count", b"2", timeout=0.5)
    assert theirs[0] == "DEADLINE_EXCEEDED"
    assert ours == ("INTERNAL", "More than one message received for a unary call", [])


async def test_a_server_that_aborts_mid_stream(server: tuple[Any, str]) -> None:
    theirs, ours = await both(server[1], "stream", "/t.S/AbortMid", b"")
    assert theirs == ("DATA_LOSS", DETAILS, [b"a0", b"a1", b"a2", b"a3", b"a4"])
    assert ours == theirs


async def test_an_unknown_method(server: tuple[Any, str]) -> None:
    theirs, ours = await both(server[1], "unary", "/t.S/Nope", b"")
    assert theirs[0] == "UNIMPLEMENTED"
    assert ours == theirs


async def test_a_server_stopped_mid_stream() -> None:
    outcomes = []
    for client in (via_grpc, via_rpc):
        srv = grpc.aio.server()
        srv.add_generic_rpc_handlers((_handler(),))
        port = srv.add_insecure_port("127.0.0.1:0")
        await srv.start()
        call = asyncio.ensure_future(client(f"127.0.0.1:{port}", "stream", "/t.S/HangMid", b""))
        await asyncio.sleep(0.3)
        await srv.stop(0)
        outcomes.append(await asyncio.wait_for(call, 10))
    theirs, ours = outcomes
    assert theirs == ("UNAVAILABLE", "Cancelling all calls", [b"h0", b"h1", b"h2"])
    assert ours == theirs


async def test_no_server_at_all() -> None:
    theirs, ours = await both("unix:///nonexistent/rpc.sock", "unary", "/t.S/Echo", b"")
    assert theirs[0] == ours[0] == "UNAVAILABLE"


def _bad_deserializer(data: bytes) -> object:
    raise ValueError("not a message")


def _bad_serializer(request: object) -> bytes:
    raise ValueError("cannot serialize")


@pytest.mark.parametrize("kind", ["unary", "stream"])
async def test_a_deserializer_or_serializer_error_fails_the_call_internal(
    server: tuple[Any, str], kind: str
) -> None:
    """Stricter than grpc.aio 1.85 on purpose: there a raising deserializer makes the response None
    (logged only) and a raising serializer sends an empty request; the agent would take None for
    an event, or ask for what it did not mean."""
    async with rpc.insecure_channel(server[1]) as channel:
        outcomes = []
        for ser, de in ((None, _bad_deserializer), (_bad_serializer, None)):
            factory = channel.unary_unary if kind == "unary" else channel.unary_stream
            call = factory("/t.S/Echo" if kind == "unary" else "/t.S/Count", ser, de)
            with pytest.raises(rpc.RpcError) as info:
                if kind == "unary":
                    await call(b"3")
                else:
                    [m async for m in call(b"3")]
            outcomes.append((info.value.code(), info.value.details()))
    assert outcomes == [
        (rpc.StatusCode.INTERNAL, "Exception deserializing response!"),
        (rpc.StatusCode.INTERNAL, "Exception serializing request!"),
    ]
