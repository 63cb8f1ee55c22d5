"""One call's receive side: gRPC messages reassembled from DATA frames, and flow-control credit.

Why its own module: this is where the agent's memory is bounded. A server may send only what
the stream's window allows, and the window is credited back (WINDOW_UPDATE) as the *reader*
takes messages, so a reader that stops reading stops the server after about ``stream_window``
bytes. Bytes of a message still incomplete are credited at once (a message larger than the
window must be able to finish), so a stream holds about one window plus one message.
"""

from __future__ import annotations

import asyncio
import collections

from stellaops_runtime.rpc import frames
from stellaops_runtime.rpc.status import (
    RpcError,
    StatusCode,
    code_of_http_status,
    code_of_number,
    decode_message,
)


def too_large(length: int, limit: int) -> RpcError:
    # grpc's text; sources/tetragon_grpc.py counts the lost event on "larger than max"
    return RpcError(StatusCode.RESOURCE_EXHAUSTED, f"Received message larger than max ({length} vs. {limit})")


class Stream:
    """The state of one open HTTP/2 stream (one call) on a connection."""

    __slots__ = (
        "credited_in_rbuf",
        "deadline_handle",
        "ended",
        "error",
        "got_headers",
        "http_status",
        "initial_metadata",
        "limit",
        "queue",
        "rbuf",
        "recv_window",
        "send_window",
        "sid",
        "to_credit",
        "trailing_metadata",
        "waiter",
    )

    def __init__(self, sid: int, limit: int, send_window: int, recv_window: int) -> None:
        self.sid = sid
        self.limit = limit
        # whole messages not yet read, each with the bytes of it not yet credited to the server
        self.queue: collections.deque[tuple[bytes, int]] = collections.deque()
        self.rbuf = bytearray()  # the start of an incomplete message
        self.credited_in_rbuf = 0
        self.recv_window = recv_window  # what the server may still send (a server over it: an error)
        self.to_credit = 0  # bytes taken by the reader (or incomplete) not yet sent as WINDOW_UPDATE
        self.waiter: asyncio.Future[None] | None = None
        self.got_headers = False
        self.http_status = 0
        self.error: RpcError | None = None
        self.ended = False  # closed with status OK
        self.deadline_handle: asyncio.TimerHandle | None = None
        self.initial_metadata: list[tuple[str, str]] = []
        self.trailing_metadata: list[tuple[str, str]] = []
        self.send_window = send_window

    def feed(self, data: bytes) -> RpcError | None:
        """Take one DATA frame's data: whole messages go to the queue. An error ends the stream."""
        if not self.rbuf and len(data) >= 5:
            flag, length = frames.grpc_prefix(data)
            if len(data) == length + 5 and flag == 0 and length <= self.limit:
                self.queue.append((data[5:], length + 5))  # the common case: one message, one frame
                return None
        rbuf = self.rbuf
        rbuf += data
        pos = 0
        have = len(rbuf)
        while have - pos >= 5:
            flag, length = frames.grpc_prefix(rbuf, pos)
            if flag != 0:
                if flag == 1:
                    return RpcError(StatusCode.INTERNAL, "Compressed message received without grpc-encoding")
                return RpcError(StatusCode.INTERNAL, f"Bad gRPC message flag {flag}")
            if length > self.limit:
                return too_large(length, self.limit)
            end = pos + 5 + length
            if end > have:
                break
            size = end - pos
            credited = min(self.credited_in_rbuf, size)
            self.credited_in_rbuf -= credited
            with memoryview(rbuf) as view:  # one copy of a large message, not two
                message = bytes(view[pos + 5 : end])
            self.queue.append((message, size - credited))
            pos = end
        if pos == have:
            rbuf = self.rbuf = bytearray()  # a fresh one: a large message's buffer is freed
        elif pos:
            del rbuf[:pos]
        # an incomplete message's bytes are credited now: a message over the window must finish
        self.to_credit += len(rbuf) - self.credited_in_rbuf
        self.credited_in_rbuf = len(rbuf)
        return None

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def fail(self, error: RpcError) -> None:
        if self.error is None and not self.ended:
            self.error = error
        self.rbuf = bytearray()
        if self.deadline_handle is not None:
            self.deadline_handle.cancel()
        self.wake()

    def finish_ok(self) -> None:
        if self.error is None:
            self.ended = True
        if self.deadline_handle is not None:
            self.deadline_handle.cancel()
        self.wake()

    @property
    def closed(self) -> bool:
        return self.ended or self.error is not None


def rst_error(code: int) -> RpcError:
    """What a call fails with when the server resets its stream (gRPC's mapping)."""
    text = f"Received RST_STREAM with error code {code}"
    if code == frames.REFUSED_STREAM:
        return RpcError(StatusCode.UNAVAILABLE, text)
    if code == frames.CANCEL:
        return RpcError(StatusCode.CANCELLED, text)
    return RpcError(StatusCode.INTERNAL, text)


def trailer_status(stream: Stream, headers: list[tuple[str, str]]) -> RpcError | None:
    """The call's end from its trailers (or trailers-only reply): None for OK."""
    values = dict(headers)
    status = values.get("grpc-status")
    if status is None:
        if stream.http_status not in (0, 200):
            return RpcError(
                code_of_http_status(stream.http_status),
                f"Received http2 header with status: {stream.http_status}",
            )
        return RpcError(StatusCode.UNKNOWN, "Stream ended without grpc-status")
    code = code_of_number(status)
    if code is StatusCode.OK:
        if stream.rbuf:
            return RpcError(StatusCode.INTERNAL, "Stream ended inside a message")
        return None
    return RpcError(code, decode_message(values.get("grpc-message", "")))
