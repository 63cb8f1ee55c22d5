"""A Tetragon stream that hangs with its connection open is noticed, reconnected and made a gap.

Probe (issue s29/h3): a loopback TCP proxy between the source and the real
replay server stops forwarding in both directions while every connection
stays open (a frozen Tetragon, a stuck hop: no RST, no FIN). Before, the
source waited on the silent stream for good: ``connected`` stayed true (so
``/readyz`` said 200 and lifecycle windows kept counting as watched), no
stream error was counted and no outage was handed over, so no gap covered
the time nobody watched. HTTP/2 keepalive pings now end such a stream.

The production interval is over five minutes (Tetragon's server refuses
pings more frequent than that on a quiet stream); the test shortens it.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
import time

import pytest

from stellaops_runtime.contracts.config import TetragonConfig
from stellaops_runtime.replay.events import ReplayEvent
from stellaops_runtime.replay.server import ReplayServer
from stellaops_runtime.sources import tetragon_channel
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_grpc import TetragonGrpcSource
from tests.e2e import harness as h


class HoldingProxy:
    """Forwards TCP both ways until :meth:`hold`; then forwards nothing and closes nothing."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.held = False
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self.held = True

    def heal(self) -> None:
        """Forward again, for new connections; the held ones are closed."""
        old, self._socks = self._socks, []
        self.held = False
        for s in old:
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                continue
            self._socks += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                if not select.select([a], [], [], 0.05)[0] or self.held:
                    continue  # held: the bytes stay unread, TCP stays up
                data = a.recv(65536)
                if not data:
                    return
                b.sendall(data)
        except (OSError, ValueError):  # closed under it (heal, close): fd -1 is a ValueError in select
            return


def test_production_keepalive_respects_tetragons_ping_policy() -> None:
    opts = tetragon_channel.channel_options()
    # Go's default server enforcement: a ping within 5 minutes of the last one is a strike.
    assert opts.keepalive_seconds is not None and opts.keepalive_seconds > 300
    assert 0 < opts.keepalive_timeout_seconds <= 60
    assert opts.max_receive_message_length == 64 << 20
    assert opts.stream_window == 1 << 20  # a fixed look-ahead (docs/operations.md): never grown


@pytest.mark.asyncio
async def test_a_hung_stream_is_noticed_reconnected_and_its_silence_is_an_outage(monkeypatch) -> None:
    monkeypatch.setattr(tetragon_channel, "KEEPALIVE_SECONDS", 1.0)
    monkeypatch.setattr(tetragon_channel, "KEEPALIVE_TIMEOUT_SECONDS", 1.0)
    events = h.stream_events()
    # Paced and looping: the stream stays busy, so keepalive pings start only when it hangs
    # (a quiet stream pinged every second would be refused by the server's ping policy).
    server = ReplayServer(events, rate=300, loop=True)
    addr = await server.start("127.0.0.1:0")
    proxy = HoldingProxy(int(addr.rsplit(":", 1)[1]))
    queue = EventQueue(1_000_000)
    cfg = TetragonConfig(
        address=f"127.0.0.1:{proxy.port}",
        connectionTimeout=2,
        reconnectInitialSeconds=0.1,
        reconnectMaxSeconds=0.5,
    )
    source = TetragonGrpcSource(cfg, queue=queue)
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    try:
        await h.wait_for(lambda: source.stats.received >= 100, what="events flowing", timeout=30)
        assert source.take_outage() is not None  # the hold before the first stream (the marker's tick)
        proxy.hold()
        await asyncio.sleep(0.3)  # bytes in flight drain into the client
        last_message = source.alive_ns
        received = source.stats.received
        held_at = time.time_ns()
        await h.wait_for(lambda: not source.stats.connected, what="the hung stream noticed", timeout=30)
        assert source.stats.stream_errors >= 1
        assert "ping" in source.stats.last_error.lower() or "UNAVAILABLE" in source.stats.last_error
        assert source.stats.received == received  # nothing arrived while held
        span = source.take_outage()
        assert span is not None
        # The gap starts at the last message before the hang, not when it was noticed (less what
        # Tetragon may still have held then: test_tetragon_outage_held_events.py).
        assert span[0] == last_message - source.hold.ns() and last_message <= held_at < span[1]
        proxy.heal()
        await h.wait_for(
            lambda: source.stats.connected and source.stats.received > received + 50,
            what="streaming again after the hang",
            timeout=30,
        )
        assert source.stats.reconnects >= 1
        rest = source.take_outage()
        # Continues the outage, up to the new stream: no hole between the two spans. A reconnect
        # made while the proxy still held (its stream opened, then reset at the heal: a loaded
        # machine's timing) resumes the outage from the hold before that stream opened
        # (tetragon_grpc.py held_from), so it may start up to a hold earlier, never later.
        assert rest is not None and rest[0] <= span[1] < rest[1]
        assert rest[0] == span[1] or rest[0] >= span[1] - source.hold.ns() - 10**9
        assert source.take_outage() is None  # closed
        assert queue.enqueued + queue.dropped == source.stats.received  # every message counted
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        proxy.close()
        await server.stop(grace=0)


@pytest.mark.asyncio
async def test_an_event_over_the_message_limit_is_a_counted_drop(monkeypatch) -> None:
    """The stream ends with RESOURCE_EXHAUSTED; that event is lost: counted as a drop, not only as
    a stream error (the limit is lowered for the test; in production it is 64 MiB)."""
    monkeypatch.setattr(tetragon_channel, "MAX_MESSAGE_BYTES", 4096)
    small = h.stream_events()[:3]
    big = ReplayEvent(payload=b"\x0a" + b"\x00" * 10_000)  # bytes only: never decoded here
    server = ReplayServer([*small, big, *small])
    addr = await server.start("127.0.0.1:0")
    queue = EventQueue(10_000)
    cfg = TetragonConfig(address=addr, reconnectInitialSeconds=5, reconnectMaxSeconds=5)
    source = TetragonGrpcSource(cfg, queue=queue)
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    try:
        await h.wait_for(lambda: source.stats.stream_errors >= 1, what="the stream ended", timeout=30)
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.stop(grace=0)
    assert "RESOURCE_EXHAUSTED" in source.stats.last_error
    assert (queue.enqueued, queue.dropped, queue.dropped_oversize) == (3, 1, 1)
    assert source.stats.received == 3
    drops = queue.take_drops()
    assert drops is not None and drops[2] == 1
