"""A small raw-socket HTTP/2 server for the rpc client's tests: it does what a scenario says.

Real grpcio servers never send a bad frame, a bad HPACK block or an unanswered PING; this one
does on request. It speaks just enough HTTP/2 (SETTINGS, flow control it obeys when asked to
send, PING answers unless told not to) and hands each request stream to ``scenario(peer, sid,
headers)``. Frames are cut with the client's own frames module: that part is tested
separately in tests/unit/test_rpc_frames.py against hand-written bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import hpack
import pytest

from stellaops_runtime import rpc
from stellaops_runtime.rpc import frames as f

Scenario = Callable[["Peer", int, dict[str, str]], Awaitable[None]]


class Peer:
    """One client connection, from the server's side."""

    def __init__(self, server: H2Server, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.writer = writer
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.conn_window = f.DEFAULT_WINDOW
        self.initial_window = f.DEFAULT_WINDOW
        self.stream_windows: dict[int, int] = {}
        self.window_changed = asyncio.Event()
        self.sent_data: dict[int, int] = {}  # stream id -> DATA payload bytes sent
        self.resets: dict[int, int] = {}  # stream id -> RST_STREAM code received
        self.pings = 0
        self.ping_acks: list[bytes] = []
        self.received: dict[int, bytearray] = {}  # stream id -> request DATA received
        self.data_frame_sizes: list[int] = []
        self.data_arrived = asyncio.Event()
        self.goaway: tuple[int, int] | None = None

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def headers(self, sid: int, headers: list[tuple[str, str]], *, end_stream: bool = False) -> None:
        block = self.encoder.encode(headers)
        self.write(f.encode_headers(sid, block, end_stream=end_stream, max_frame_size=16384))

    def response_headers(self, sid: int) -> None:
        self.headers(sid, [(":status", "200"), ("content-type", "application/grpc")])

    def trailers(self, sid: int, status: int = 0, message: str = "") -> None:
        extra = [("grpc-message", message)] if message else []
        self.headers(sid, [("grpc-status", str(status)), *extra], end_stream=True)

    async def send(self, sid: int, data: bytes, *, end_stream: bool = False) -> None:
        """DATA within the client's windows (waits for WINDOW_UPDATEs as a real server does)."""
        view = memoryview(data)
        while view:
            room = min(self.conn_window, self.stream_windows.get(sid, self.initial_window), 16384)
            if room <= 0:
                self.window_changed.clear()
                await self.window_changed.wait()
                continue
            piece, view = view[:room], view[room:]
            self.conn_window -= len(piece)
            self.stream_windows[sid] = self.stream_windows.get(sid, self.initial_window) - len(piece)
            self.sent_data[sid] = self.sent_data.get(sid, 0) + len(piece)
            self.write(f.encode_data(sid, bytes(piece), end_stream=end_stream and not view))
            await self.writer.drain()
        if end_stream and not data:
            self.write(f.encode_data(sid, b"", end_stream=True))


class H2Server:
    """Listens on 127.0.0.1; each request stream runs ``scenario``."""

    def __init__(self, scenario: Scenario, *, answer_pings: bool = True,
                 settings: dict[int, int] | None = None) -> None:  # fmt: skip
        self.scenario = scenario
        self.answer_pings = answer_pings
        self.settings = settings or {f.MAX_CONCURRENT_STREAMS: 100}
        self.peers: list[Peer] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def __aenter__(self) -> H2Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for peer in self.peers:
            peer.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        peer = Peer(self, writer)
        self.peers.append(peer)
        try:
            preface = await reader.readexactly(len(f.PREFACE))
            assert preface == f.PREFACE
            writer.write(f.encode_settings(self.settings))
            buf = b""
            while chunk := await reader.read(65536):
                buf += chunk
                frames, used, error = f.split_frames(buf, 1 << 24)
                assert error is None
                buf = buf[used:]
                for ftype, flags, sid, payload in frames:
                    self._on_frame(peer, ftype, flags, sid, payload)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _on_frame(self, peer: Peer, ftype: int, flags: int, sid: int, payload: bytes) -> None:
        if ftype == f.SETTINGS and not flags & f.FLAG_ACK:
            for ident, value in f.parse_settings(flags, sid, payload):
                if ident == f.INITIAL_WINDOW_SIZE:
                    for s in peer.stream_windows:
                        peer.stream_windows[s] += value - peer.initial_window
                    peer.initial_window = value
            peer.write(f.encode_settings_ack())
            peer.window_changed.set()
        elif ftype == f.WINDOW_UPDATE:
            increment = f.parse_window_update(payload)
            if sid == 0:
                peer.conn_window += increment
            else:
                peer.stream_windows[sid] = peer.stream_windows.get(sid, peer.initial_window) + increment
            peer.window_changed.set()
        elif ftype == f.PING and flags & f.FLAG_ACK:
            peer.ping_acks.append(payload)
        elif ftype == f.DATA:
            peer.received.setdefault(sid, bytearray()).extend(payload)
            peer.data_frame_sizes.append(len(payload))
            peer.data_arrived.set()
        elif ftype == f.PING and not flags & f.FLAG_ACK:
            peer.pings += 1
            if self.answer_pings:
                peer.write(f.encode_ping(payload, ack=True))
        elif ftype == f.RST_STREAM:
            peer.resets[sid] = f.parse_rst_stream(sid, payload)
        elif ftype == f.GOAWAY:
            last, code, _ = f.parse_goaway(sid, payload)
            peer.goaway = (last, code)
        elif ftype == f.HEADERS:
            headers = {k.decode(): v.decode() for k, v in peer.decoder.decode(payload, raw=True)}
            task = asyncio.ensure_future(self.scenario(peer, sid, headers))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


def msg(data: bytes) -> bytes:
    return f.grpc_message(data)


async def unary(target: str, path: str = "/t.S/M", **kw: object) -> object:
    """One unary call on a fresh channel."""
    async with rpc.insecure_channel(target) as channel:
        return await channel.unary_unary(path)(b"req", **kw)


async def fails(target: str, **kw: object) -> rpc.RpcError:
    """The RpcError a unary call on a fresh channel ends with (within 10 s)."""
    with pytest.raises(rpc.RpcError) as info:
        await asyncio.wait_for(unary(target, **kw), 10)
    return info.value
