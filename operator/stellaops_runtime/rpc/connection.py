"""One HTTP/2 connection to a gRPC server, as an asyncio Protocol.

The hot path is :meth:`Connection.data_received`: cut the bytes into frames, append each whole
gRPC message to its stream's queue, wake the reader. Everything else a client connection owes
the server is here too: the preface and SETTINGS (ours sent, theirs applied and acknowledged),
PING answers, keepalive pings, GOAWAY, stream ids, both directions of flow control (credit as
the reader takes messages: :mod:`stellaops_runtime.rpc.stream`). A protocol error by the server
(a malformed or oversize frame, a header block over 64 KiB, an HPACK error) ends the connection
and fails every call on it with an RpcError; nothing is left waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import hpack

from stellaops_runtime.rpc import frames as f
from stellaops_runtime.rpc.status import (
    RpcError,
    StatusCode,
    code_of_http_status,
)
from stellaops_runtime.rpc.stream import Stream, rst_error, trailer_status

MAX_HEADER_BLOCK = 64 << 10
CONN_WINDOW = 16 << 20  # connection-level window: credited as received; streams bound memory
USER_AGENT = "stellaops-runtime-rpc/1"
_KEEPALIVE_PING = b"stellaka"


class Connection(asyncio.Protocol):
    """A client HTTP/2 connection carrying gRPC calls (see the module docstring)."""

    def __init__(
        self,
        *,
        authority: str,
        stream_window: int,
        max_message: int,
        keepalive: float | None,
        keepalive_timeout: float,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.authority = authority
        self.stream_window = stream_window
        self.max_message = max_message
        self.keepalive = keepalive
        self.keepalive_timeout = keepalive_timeout
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, Stream] = {}
        self.next_sid = 1
        self.error: RpcError | None = None  # set when the connection is dead
        self.goaway = False  # no new streams
        self._goaway_why = ""  # the server's reason, for the calls its close then ends
        self.ready: asyncio.Future[None] = self.loop.create_future()  # the server's first SETTINGS
        self._rest = b""
        self._encoder = hpack.Encoder()
        self._decoder = hpack.Decoder()
        self._decoder.max_header_list_size = MAX_HEADER_BLOCK * 4
        self._peer_max_frame = f.DEFAULT_MAX_FRAME_SIZE
        self._peer_window = f.DEFAULT_WINDOW  # their INITIAL_WINDOW_SIZE: our streams' send window
        self._send_window = f.DEFAULT_WINDOW  # connection-level, what we may send
        self._window_waiters: list[asyncio.Future[None]] = []
        self._conn_unacked = 0
        self._credit_at = max(stream_window // 2, 1)
        self._hdr_block: bytearray | None = None
        self._hdr_sid = 0
        self._hdr_flags = 0
        self._last_recv = self.loop.time()
        self._ka_handle: asyncio.TimerHandle | None = None
        self._ping_handle: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        settings = {
            f.ENABLE_PUSH: 0,
            f.INITIAL_WINDOW_SIZE: self.stream_window,
            f.MAX_FRAME_SIZE: f.DEFAULT_MAX_FRAME_SIZE,
            f.MAX_HEADER_LIST_SIZE: MAX_HEADER_BLOCK,
        }
        transport.write(
            f.PREFACE
            + f.encode_settings(settings)
            + f.encode_window_update(0, CONN_WINDOW - f.DEFAULT_WINDOW)
        )
        if self.keepalive is not None:
            self._ka_handle = self.loop.call_later(self.keepalive, self._keepalive_check)

    def pause_writing(self) -> None:
        # The server does not read what we write: each PING and SETTINGS it sends owes it an answer,
        # so a server flooding them would fill our write buffer without bound. Read nothing more
        # until it reads (the call then ends by its deadline or keepalive if it never does).
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and self.error is None:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        why = f": {exc}" if exc else ""
        self._die(
            RpcError(StatusCode.UNAVAILABLE, f"Connection to {self.authority} lost{why}{self._goaway_why}")
        )

    def data_received(self, data: bytes) -> None:
        if self.error is not None:
            return
        self._last_recv = self.loop.time()
        if self._rest:
            data = self._rest + data
        if not self.ready.done() and data[:5] == b"HTTP/"[: len(data)]:
            if len(data) >= 5:  # grpc's words for it
                self.fail(StatusCode.UNAVAILABLE, "Trying to connect an http1.x server", f.PROTOCOL_ERROR)
                return
            self._rest = data
            return
        frames, used, problem = f.split_frames(data, f.DEFAULT_MAX_FRAME_SIZE)
        self._rest = data[used:] if used < len(data) else b""
        streams = self.streams
        credit_at = self._credit_at
        out: list[bytes] = []
        try:
            for ftype, flags, sid, payload in frames:
                if self._hdr_block is not None or ftype != f.DATA:
                    self._on_frame(ftype, flags, sid, payload, out)
                    continue
                self._conn_unacked += len(payload)
                if self._conn_unacked > CONN_WINDOW:
                    raise f.FrameError(f.FLOW_CONTROL_ERROR, "DATA over the connection window")
                body = f.parse_data(flags, payload) if flags & f.FLAG_PADDED else payload
                stream = streams.get(sid)
                if stream is None:
                    if sid == 0:
                        raise f.FrameError(f.PROTOCOL_ERROR, "DATA frame on stream 0")
                    continue  # a stream we ended: the connection window is credited anyway
                stream.to_credit += len(payload) - len(body)
                stream.recv_window -= len(payload)
                if stream.recv_window < 0:
                    raise f.FrameError(f.FLOW_CONTROL_ERROR, f"DATA over the window of stream {sid}")
                if not stream.got_headers:
                    raise f.FrameError(f.PROTOCOL_ERROR, f"DATA before HEADERS on stream {sid}")
                error = stream.feed(body) if body else None
                if error is not None:
                    self._reset(stream, f.CANCEL, error, out)
                    continue
                if stream.waiter is not None:
                    stream.wake()
                if stream.to_credit >= credit_at:
                    out.append(f.encode_window_update(sid, stream.to_credit))
                    stream.recv_window += stream.to_credit
                    stream.to_credit = 0
                if flags & f.FLAG_END_STREAM:
                    self._close_stream(stream, RpcError(StatusCode.INTERNAL, "Stream ended without trailers"))
            if problem is not None:
                raise problem
        except f.FrameError as exc:
            self.fail(StatusCode.INTERNAL, f"HTTP/2 protocol error from the server: {exc}", exc.code)
            return
        if self._conn_unacked >= CONN_WINDOW // 2:
            out.append(f.encode_window_update(0, self._conn_unacked))
            self._conn_unacked = 0
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    # --- frames other than DATA ----------------------------------------------------------
    def _on_frame(self, ftype: int, flags: int, sid: int, payload: bytes, out: list[bytes]) -> None:
        if self._hdr_block is not None:
            if ftype != f.CONTINUATION or sid != self._hdr_sid:
                raise f.FrameError(f.PROTOCOL_ERROR, "header block interrupted before END_HEADERS")
            self._hdr_block += payload
            if len(self._hdr_block) > MAX_HEADER_BLOCK:
                raise f.FrameError(f.PROTOCOL_ERROR, f"header block over {MAX_HEADER_BLOCK} bytes")
            if flags & f.FLAG_END_HEADERS:
                block, self._hdr_block = bytes(self._hdr_block), None
                self._on_header_block(self._hdr_sid, self._hdr_flags, block, out)
        elif ftype == f.HEADERS:
            if sid == 0:
                raise f.FrameError(f.PROTOCOL_ERROR, "HEADERS on stream 0")
            fragment = f.parse_headers(flags, payload)
            if len(fragment) > MAX_HEADER_BLOCK:
                raise f.FrameError(f.PROTOCOL_ERROR, f"header block over {MAX_HEADER_BLOCK} bytes")
            if flags & f.FLAG_END_HEADERS:
                self._on_header_block(sid, flags, fragment, out)
            else:
                self._hdr_block, self._hdr_sid, self._hdr_flags = bytearray(fragment), sid, flags
        elif ftype == f.CONTINUATION:
            raise f.FrameError(f.PROTOCOL_ERROR, "CONTINUATION without HEADERS")
        elif ftype == f.SETTINGS:
            self._on_settings(flags, sid, payload, out)
        elif ftype == f.PING:
            data = f.parse_ping(sid, payload)
            if not flags & f.FLAG_ACK:
                out.append(f.encode_ping(data, ack=True))
            elif data == _KEEPALIVE_PING and self._ping_handle is not None:
                self._ping_handle.cancel()
                self._ping_handle = None
        elif ftype == f.WINDOW_UPDATE:
            self._on_window_update(sid, f.parse_window_update(payload))
        elif ftype == f.RST_STREAM:
            code = f.parse_rst_stream(sid, payload)
            stream = self.streams.get(sid)
            if stream is not None:
                self._close_stream(stream, rst_error(code))
        elif ftype == f.GOAWAY:
            self._on_goaway(*f.parse_goaway(sid, payload))
        elif ftype == f.PUSH_PROMISE:
            raise f.FrameError(f.PROTOCOL_ERROR, "PUSH_PROMISE though we disabled push")
        # PRIORITY and unknown frame types are ignored (RFC 9113 5.5)

    def _on_header_block(self, sid: int, flags: int, block: bytes, out: list[bytes]) -> None:
        try:
            headers = [
                (k.decode("latin-1"), v.decode("utf-8", "replace"))
                for k, v in self._decoder.decode(block, raw=True)
            ]
        except Exception as exc:  # hpack's errors, and anything a hostile block makes it raise
            raise f.FrameError(f.COMPRESSION_ERROR, f"bad HPACK header block: {exc!r}") from None
        stream = self.streams.get(sid)
        if stream is None:
            return  # decoded all the same: the HPACK table must stay in step
        end = bool(flags & f.FLAG_END_STREAM)
        if not stream.got_headers:
            stream.got_headers = True
            status = next((v for k, v in headers if k == ":status"), "")
            number = len(status) == 3 and status.isascii() and status.isdigit()  # int(): '²', 5000 digits
            stream.http_status = int(status) if number else 0
            stream.initial_metadata = [(k, v) for k, v in headers if not k.startswith(":")]
            if not end and stream.http_status != 200:
                code = code_of_http_status(stream.http_status)
                error = RpcError(code, f"Received http2 header with status: {status or 'none'}")
                self._reset(stream, f.CANCEL, error, out)
                return
            if not end:
                return
        elif not end:
            raise f.FrameError(f.PROTOCOL_ERROR, f"second header block without END_STREAM on stream {sid}")
        stream.trailing_metadata = [(k, v) for k, v in headers if not k.startswith(":")]
        self._close_stream(stream, trailer_status(stream, headers))

    def _on_settings(self, flags: int, sid: int, payload: bytes, out: list[bytes]) -> None:
        settings = f.parse_settings(flags, sid, payload)
        if flags & f.FLAG_ACK:
            return
        for ident, value in settings:
            if ident == f.MAX_FRAME_SIZE:
                self._peer_max_frame = value
            elif ident == f.INITIAL_WINDOW_SIZE:
                delta = value - self._peer_window
                self._peer_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif ident == f.HEADER_TABLE_SIZE:
                self._encoder.header_table_size = min(value, 4096)
        out.append(f.encode_settings_ack())
        self._wake_senders()
        if not self.ready.done():
            self.ready.set_result(None)

    def _on_window_update(self, sid: int, increment: int) -> None:
        if sid == 0:
            self._send_window += increment
            if self._send_window > f.MAX_WINDOW:
                raise f.FrameError(f.FLOW_CONTROL_ERROR, "connection send window over 2^31-1")
        else:
            stream = self.streams.get(sid)
            if stream is None:
                return
            stream.send_window += increment
        self._wake_senders()

    def _on_goaway(self, last_sid: int, code: int, debug: bytes) -> None:
        self.goaway = True
        text = debug.decode("utf-8", "replace")[:200]
        self._goaway_why = f" after GOAWAY (error code {code}{', ' + text if text else ''})"
        for sid, stream in list(self.streams.items()):
            if sid > last_sid:
                msg = f"Server sent GOAWAY (error code {code}{', ' + text if text else ''}); not processed"
                self._close_stream(stream, RpcError(StatusCode.UNAVAILABLE, msg))
        self._close_if_idle()

    # --- streams ------------------------------------------------------------------------
    def usable(self) -> bool:
        return self.error is None and not self.goaway and self.next_sid < (1 << 31) - 1

    def start_stream(self, headers: Sequence[tuple[str, str]], *, end_stream: bool = False) -> Stream:
        """Open a stream with these request headers (HEADERS sent now)."""
        if self.error is not None:
            raise self.error
        assert self.transport is not None
        sid = self.next_sid
        self.next_sid += 2
        block = self._encoder.encode(list(headers))
        stream = Stream(sid, self.max_message, self._peer_window, self.stream_window)
        self.streams[sid] = stream
        self.transport.write(
            f.encode_headers(sid, block, end_stream=end_stream, max_frame_size=self._peer_max_frame)
        )
        return stream

    async def send_message(self, stream: Stream, data: bytes) -> None:
        """Send ``data`` as the stream's request body and end it, within the server's windows."""
        view = memoryview(data)
        while True:
            if stream.closed or self.error is not None or self.transport is None:
                return
            room = min(stream.send_window, self._send_window, self._peer_max_frame)
            if room > 0 or not view:
                piece = view[: max(room, 0)]
                view = view[len(piece) :]
                stream.send_window -= len(piece)
                self._send_window -= len(piece)
                self.transport.write(f.encode_data(stream.sid, bytes(piece), end_stream=not view))
                if not view:
                    return
                continue
            waiter = self.loop.create_future()
            self._window_waiters.append(waiter)
            await waiter

    def _wake_senders(self) -> None:
        waiters, self._window_waiters = self._window_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def taken(self, stream: Stream, owed: int) -> None:
        """The reader took a message: credit the server the bytes of it it is still owed."""
        stream.to_credit += owed
        if stream.to_credit >= self._credit_at and not stream.closed and self.transport is not None:
            self.transport.write(f.encode_window_update(stream.sid, stream.to_credit))
            stream.recv_window += stream.to_credit
            stream.to_credit = 0

    def cancel(self, stream: Stream, error: RpcError) -> None:
        """End a stream from our side (cancel, deadline): RST_STREAM(CANCEL), the call fails."""
        if stream.closed:
            return
        out: list[bytes] = []
        self._reset(stream, f.CANCEL, error, out)
        if out and self.transport is not None and self.error is None:
            self.transport.write(b"".join(out))

    def _reset(self, stream: Stream, code: int, error: RpcError, out: list[bytes]) -> None:
        out.append(f.encode_rst_stream(stream.sid, code))
        self._close_stream(stream, error)

    def _close_stream(self, stream: Stream, error: RpcError | None) -> None:
        self.streams.pop(stream.sid, None)
        if error is None:
            stream.finish_ok()
        else:
            stream.fail(error)
        self._wake_senders()
        self._close_if_idle()

    def _close_if_idle(self) -> None:
        if self.goaway and not self.streams and self.transport is not None:
            self.transport.close()

    # --- keepalive and the end -----------------------------------------------------------
    def _keepalive_check(self) -> None:
        assert self.keepalive is not None
        if self.error is not None or self.transport is None:
            return
        now = self.loop.time()
        due = self._last_recv + self.keepalive
        if now >= due and self._ping_handle is None and self.streams:
            self.transport.write(f.encode_ping(_KEEPALIVE_PING))
            self._ping_handle = self.loop.call_later(self.keepalive_timeout, self._keepalive_expired)
            due = now + self.keepalive
        elif now >= due:
            due = now + self.keepalive
        self._ka_handle = self.loop.call_at(due, self._keepalive_check)

    def _keepalive_expired(self) -> None:
        self._ping_handle = None
        self.fail(StatusCode.UNAVAILABLE, f"keepalive ping unanswered for {self.keepalive_timeout:g} s")

    def fail(self, code: StatusCode, details: str, h2_code: int = f.NO_ERROR) -> None:
        """End the connection: GOAWAY, close, every call on it fails with ``code``."""
        if self.error is not None:
            return
        transport = self.transport
        self._die(RpcError(code, details))
        if transport is not None:
            transport.write(f.encode_goaway(0, h2_code, details.encode()[:200]))
            transport.close()

    def _die(self, error: RpcError) -> None:
        if self.error is None:
            self.error = error
        for handle in (self._ka_handle, self._ping_handle):
            if handle is not None:
                handle.cancel()
        streams, self.streams = list(self.streams.values()), {}
        for stream in streams:
            stream.fail(self.error)
        self._wake_senders()
        if not self.ready.done():
            self.ready.set_exception(self.error)
            self.ready.exception()  # retrieved: nobody may be waiting
