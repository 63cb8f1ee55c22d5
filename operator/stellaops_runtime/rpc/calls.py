"""The call objects: a unary call's coroutine and :class:`StreamCall`, over an open stream.

What grpc.aio's calls did for the agent, kept: serializer and deserializer failures are
INTERNAL, a deadline ends the call DEADLINE_EXCEEDED (``grpc-timeout`` sent, RST_STREAM(CANCEL) on
expiry), a unary reply with no message is UNIMPLEMENTED and with two INTERNAL, a cancelled
stream's later reads raise asyncio.CancelledError, messages that arrived before a stream failed
are read before its error.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from stellaops_runtime.rpc import frames
from stellaops_runtime.rpc.connection import USER_AGENT, Connection
from stellaops_runtime.rpc.status import RpcError, StatusCode
from stellaops_runtime.rpc.stream import Stream

if TYPE_CHECKING:
    from stellaops_runtime.rpc.channel import Channel

Serializer = Callable[[Any], bytes] | None
Deserializer = Callable[[bytes], Any] | None


def grpc_timeout(seconds: float) -> str:
    """A ``grpc-timeout`` value (at most 8 digits) for ``seconds`` left."""
    ms = max(1, math.ceil(seconds * 1000))
    if ms < 10**8:
        return f"{ms}m"
    return f"{min(math.ceil(seconds), 10**8 - 1)}S"


def _serialize(serializer: Serializer, request: Any) -> bytes:
    if serializer is None:
        return bytes(request)
    try:
        return serializer(request)
    except Exception:
        raise RpcError(StatusCode.INTERNAL, "Exception serializing request!") from None


async def next_message(conn: Connection, stream: Stream) -> bytes | None:
    """The stream's next message, None at its OK end; RpcError when it failed."""
    while True:
        queue = stream.queue
        if queue:
            msg, owed = queue.popleft()
            if owed:
                conn.taken(stream, owed)
            return msg
        if stream.error is not None:
            raise stream.error
        if stream.ended:
            return None
        waiter = stream.waiter
        if waiter is None or waiter.done():
            waiter = stream.waiter = conn.loop.create_future()
        # shielded: a reader that gives up (wait_for) must not cancel another reader's wait
        await asyncio.shield(waiter)


async def open_call(
    channel: Channel, method: str, request: bytes, deadline: float | None, metadata: Sequence[tuple[str, str]]
) -> tuple[Connection, Stream]:
    """Connect (within the deadline), send the request headers and the request, end our side."""
    loop = asyncio.get_running_loop()
    if deadline is None:
        conn = await channel.connection()
    else:
        try:
            conn = await asyncio.wait_for(channel.connection(), max(deadline - loop.time(), 0))
        except TimeoutError:
            raise RpcError(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", method),
        (":authority", conn.authority),
        ("te", "trailers"),
        ("content-type", "application/grpc"),
        ("user-agent", USER_AGENT),
    ]
    if deadline is not None:
        left = deadline - loop.time()
        if left <= 0:
            raise RpcError(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        headers.append(("grpc-timeout", grpc_timeout(left)))
    headers.extend((key.lower(), value) for key, value in metadata)
    stream = conn.start_stream(headers)
    if deadline is not None:
        expired = RpcError(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        stream.deadline_handle = loop.call_at(deadline, conn.cancel, stream, expired)
    try:
        await conn.send_message(stream, frames.grpc_message(request))
    except BaseException:  # cancelled while waiting for the server's window: do not leave it open
        conn.cancel(stream, RpcError(StatusCode.CANCELLED, "Locally cancelled by application!"))
        raise
    return conn, stream


async def unary_call(
    channel: Channel,
    method: str,
    serializer: Serializer,
    deserializer: Deserializer,
    request: Any,
    timeout: float | None,  # noqa: ASYNC109 (grpc.aio's argument, kept)
    metadata: Sequence[tuple[str, str]],
) -> Any:
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    conn, stream = await open_call(channel, method, _serialize(serializer, request), deadline, metadata)
    try:
        reply = await next_message(conn, stream)
        if reply is None:
            raise RpcError(StatusCode.UNIMPLEMENTED, "No message received from the server for a unary call")
        if await next_message(conn, stream) is not None:  # not kept: a server could send without end
            error = RpcError(StatusCode.INTERNAL, "More than one message received for a unary call")
            conn.cancel(stream, error)
            raise error
    except asyncio.CancelledError:
        conn.cancel(stream, RpcError(StatusCode.CANCELLED, "Locally cancelled by application!"))
        raise
    if deserializer is None:
        return reply
    try:
        return deserializer(reply)
    except Exception:
        raise RpcError(StatusCode.INTERNAL, "Exception deserializing response!") from None


class StreamCall:
    """A server-streaming call: an async iterable of responses. It starts when created."""

    def __init__(
        self,
        channel: Channel,
        method: str,
        serializer: Serializer,
        deserializer: Deserializer,
        request: Any,
        timeout: float | None,
        metadata: Sequence[tuple[str, str]],
    ) -> None:
        loop = asyncio.get_running_loop()
        self._deserializer = deserializer
        self._deadline = None if timeout is None else loop.time() + timeout
        self._conn: Connection | None = None
        self._stream: Stream | None = None
        self._error: BaseException | None = None
        self._cancelled = False
        self._done = False
        self._start = loop.create_task(self._open(channel, method, serializer, request, metadata))

    async def _open(
        self,
        channel: Channel,
        method: str,
        serializer: Serializer,
        request: Any,
        metadata: Sequence[tuple[str, str]],
    ) -> None:
        try:
            self._conn, self._stream = await open_call(
                channel, method, _serialize(serializer, request), self._deadline, metadata
            )
        except RpcError as exc:
            self._error = exc
        if self._cancelled and self._conn is not None and self._stream is not None:
            self._conn.cancel(
                self._stream, RpcError(StatusCode.CANCELLED, "Locally cancelled by application!")
            )

    def __aiter__(self) -> StreamCall:
        return self

    async def __anext__(self) -> Any:
        if not self._start.done():
            await asyncio.shield(self._start)
        if self._cancelled:
            raise asyncio.CancelledError()
        if self._error is not None:
            self._done = True
            raise self._error
        assert self._conn is not None and self._stream is not None
        try:
            msg = await next_message(self._conn, self._stream)
        except RpcError:
            self._done = True
            if self._cancelled:
                raise asyncio.CancelledError() from None
            raise
        if msg is None:
            self._done = True
            raise StopAsyncIteration
        if self._deserializer is None:
            return msg
        try:
            return self._deserializer(msg)
        except Exception:
            error = RpcError(StatusCode.INTERNAL, "Exception deserializing response!")
            self._conn.cancel(self._stream, error)
            self._done = True
            raise error from None

    def cancel(self) -> bool:
        """Cancel the call (RST_STREAM(CANCEL)); False if it had already ended."""
        if self._cancelled or self._done or (self._stream is not None and self._stream.closed):
            return False
        self._cancelled = True
        if self._conn is not None and self._stream is not None:
            self._conn.cancel(
                self._stream, RpcError(StatusCode.CANCELLED, "Locally cancelled by application!")
            )
        return True

    def __del__(self) -> None:
        # dropped unread (as grpc.aio's calls): reset the stream, or the server would go on
        # filling its window and the connection would keep it for good
        conn, stream = self._conn, self._stream
        if conn is not None and stream is not None and not stream.closed and not conn.loop.is_closed():
            conn.cancel(stream, RpcError(StatusCode.CANCELLED, "Locally cancelled by application!"))

    def done(self) -> bool:
        return self._cancelled or self._done or (self._stream is not None and self._stream.closed)
