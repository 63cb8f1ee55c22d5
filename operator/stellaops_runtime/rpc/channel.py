"""A gRPC channel of the agent's own: a target, its options, and the connection it keeps.

Like a grpc channel it connects on the first call (a call that cannot connect fails
UNAVAILABLE at once), opens a new connection for a new call after the last one died or was
sent away (GOAWAY), and :meth:`Channel.channel_ready` retries until it is connected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from stellaops_runtime.rpc.calls import Deserializer, Serializer, StreamCall, unary_call
from stellaops_runtime.rpc.connection import Connection
from stellaops_runtime.rpc.off_loop import connect_unix, resolve
from stellaops_runtime.rpc.status import RpcError, StatusCode
from stellaops_runtime.rpc.target import parse_target

CONNECT_TIMEOUT = 20.0  # TCP connected but no HTTP/2 SETTINGS from the server within this: UNAVAILABLE


@dataclass(frozen=True)
class ChannelOptions:
    """A channel's limits (docs/architecture.md, "The agent's own gRPC client")."""

    # a larger message fails the call RESOURCE_EXHAUSTED "Received message larger than max (N vs. M)"
    max_receive_message_length: int = 4 << 20
    # with a call open and nothing from the server for this long: PING (None: never). As grpc by
    # default, no PING while no call is open (Go servers count pings on an idle connection).
    keepalive_seconds: float | None = None
    # a PING unanswered this long: the connection is dead, its calls fail UNAVAILABLE
    keepalive_timeout_seconds: float = 20.0
    # bytes each stream's server may send ahead of the reader (credited as the reader takes them)
    stream_window: int = 1 << 20


class Channel:
    """Calls to one target over one HTTP/2 connection at a time."""

    def __init__(self, target: str, options: ChannelOptions) -> None:
        self._target = target
        self._options = options
        self._conn: Connection | None = None
        self._conns: set[Connection] = set()
        self._lock = asyncio.Lock()
        self._lock_loop: asyncio.AbstractEventLoop | None = None  # a Lock serves one loop only
        self._closed = False

    async def connection(self) -> Connection:
        """The usable connection, opened now if there is none."""
        conn = self._conn
        if conn is not None and conn.usable() and conn.loop is asyncio.get_running_loop():
            return conn
        loop = asyncio.get_running_loop()
        if self._lock_loop is not loop:  # a channel kept across loops (the lifecycle clients)
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:
            if self._closed:
                raise RpcError(StatusCode.CANCELLED, "Channel closed")
            conn = self._conn
            if conn is not None and conn.usable() and conn.loop is asyncio.get_running_loop():
                return conn
            conn = await self._connect()
            if self._closed:  # closed while connecting: nothing may go on over this connection
                conn.fail(StatusCode.CANCELLED, "Channel closed")
                raise RpcError(StatusCode.CANCELLED, "Channel closed")
            self._conn = conn
            # a connection of a closed loop is left to the collector
            self._conns = {c for c in self._conns if c.error is None and c.loop is loop}
            self._conns.add(self._conn)
            return self._conn

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        opts = self._options
        try:
            address = parse_target(self._target)
        except ValueError as exc:  # as grpc: the channel is made, each call fails
            raise RpcError(StatusCode.UNAVAILABLE, f"failed to connect to {self._target}: {exc}") from None

        def factory() -> Connection:
            return Connection(
                authority=address.authority,
                stream_window=opts.stream_window,
                max_message=opts.max_receive_message_length,
                keepalive=opts.keepalive_seconds,
                keepalive_timeout=opts.keepalive_timeout_seconds,
            )

        conn: Connection | None = None
        try:
            if address.unix is not None:
                sock = await connect_unix(address.unix)  # off the loop: a hung file system blocks it
                _, conn = await loop.create_unix_connection(factory, sock=sock)
            else:
                # resolved off the loop's executor (rpc/off_loop.py), each address tried in order
                failed: OSError | None = None
                for host in await resolve(address.host, address.port):
                    try:
                        _, conn = await loop.create_connection(factory, host, address.port)
                        break
                    except OSError as exc:
                        failed = exc
                if conn is None:
                    raise failed or OSError(f"no address for {address.host}")
            await asyncio.wait_for(asyncio.shield(conn.ready), CONNECT_TIMEOUT)
            return conn
        # ValueError: a host getaddrinfo refuses (a NUL; UnicodeError for a DNS label over 63)
        except (OSError, TimeoutError, RpcError, ValueError) as exc:
            if conn is not None:
                conn.fail(StatusCode.UNAVAILABLE, "no HTTP/2 SETTINGS from the server")
            why = exc.details() if isinstance(exc, RpcError) else (str(exc) or type(exc).__name__)
            raise RpcError(StatusCode.UNAVAILABLE, f"failed to connect to {self._target}: {why}") from None
        except BaseException:
            if conn is not None:
                conn.fail(StatusCode.CANCELLED, "connect cancelled")
            raise

    async def channel_ready(self) -> None:
        """Connect, retrying (at most 1 s apart) until connected; bound it with asyncio.wait_for."""
        delay = 0.05
        while True:
            try:
                await self.connection()
                return
            except RpcError:
                if self._closed:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def close(self) -> None:
        """Fail open calls with CANCELLED and close the connection."""
        self._closed = True
        for conn in list(self._conns):
            if not conn.loop.is_closed():
                conn.fail(StatusCode.CANCELLED, "Channel closed")
        self._conns.clear()
        self._conn = None

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def unary_unary(
        self, method: str, request_serializer: Serializer = None, response_deserializer: Deserializer = None
    ) -> Callable[..., Awaitable[Any]]:
        """A callable ``(request, *, timeout=None, metadata=())`` that awaits the one response."""

        async def call(
            request: Any,
            *,
            timeout: float | None = None,  # noqa: ASYNC109
            metadata: Sequence[tuple[str, str]] = (),
        ) -> Any:
            return await unary_call(
                self, method, request_serializer, response_deserializer, request, timeout, metadata
            )

        return call

    def unary_stream(
        self, method: str, request_serializer: Serializer = None, response_deserializer: Deserializer = None
    ) -> Callable[..., StreamCall]:
        """A callable ``(request, *, timeout=None, metadata=())`` returning a :class:`StreamCall`."""

        def call(
            request: Any, *, timeout: float | None = None, metadata: Sequence[tuple[str, str]] = ()
        ) -> StreamCall:
            return StreamCall(
                self, method, request_serializer, response_deserializer, request, timeout, metadata
            )

        return call


def insecure_channel(target: str, options: ChannelOptions = ChannelOptions()) -> Channel:
    """A channel to ``target`` (see :mod:`stellaops_runtime.rpc.target` for the forms) without TLS."""
    return Channel(target, options)
