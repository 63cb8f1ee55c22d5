"""Tetragon gRPC source: stream GetEvents from the node's Tetragon agent.

The receive loop only appends raw payloads to the EventQueue (responses are
not even decoded here), so it keeps reading the socket however busy
processing is; Tetragon would otherwise drop events for this client silently.

Allow/deny filters from config travel in the GetEventsRequest: Tetragon's
export allow/deny lists apply to its JSON file only, never to gRPC streams.
Connection failures and broken streams are retried forever with capped
exponential backoff and full jitter; every reconnect and stream error is
counted.

Tetragon replays nothing after a reconnect, so the time between a stream
that ended and the next one is an *outage*: nobody watched the node.
``take_outage`` hands the agent each outage's span (wall clock, from the
last moment the stream was known alive to the arrival of the next one's first
message: Tetragon adds a stream's listener only when its handler runs, after
the call was created, and sends nothing before its first event; an outage
still open is handed up to now, piece by piece), which the agent
records as a node-wide observation gap (agent/outages.py), so a "not
observed" answer never covers it, however short it was. "Known alive" is
the arrival of the stream's last message (or its opening, if it delivered
none): a stream noticed broken only later may already have lost what
Tetragon sent after that, so the gap starts there, not at the moment the
break was noticed; and it starts earlier still by what Tetragon may have held
back for the stream then (its event cache, a backlog: sources/event_hold.py),
since those events, lost with the stream, carry earlier times. The watching
moment the agent records for its successor (``watching_ns``) is taken the same
way. Before an agent's first stream nobody watched, whatever its
configuration: the hold before that stream's opening is a gap too, widened
while the hold grows over the stream's first minute (a Tetragon minutes
behind at the first connection). A stream that goes silent with its connection still open is
noticed by HTTP/2 keepalive pings (``KEEPALIVE_SECONDS`` of silence, then
``KEEPALIVE_TIMEOUT_SECONDS`` for the answer; sources/tetragon_channel.py holds the channel's
options, the request and the backoff) and handled the same way. Time the
agent's event loop stalled with the stream open (it was not read: Tetragon may
have dropped events for it) is handed over the same way (sources/loop_stall.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from stellaops_runtime import rpc
from stellaops_runtime.contracts.config import TetragonConfig
from stellaops_runtime.contracts.redact import redact, redact_error
from stellaops_runtime.hotsymbols.clock_span import boot_ns, boot_of, now_pair
from stellaops_runtime.sources.event_hold import EventHold
from stellaops_runtime.sources.loop_stall import LoopStalls
from stellaops_runtime.sources.open_outage import OpenOutage
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_channel import (  # also imported from here by other modules
    Backoff,
    build_request,
    channel_options,
    one_line,
    service_address_warning,
)
from stellaops_runtime.wire.tetragon import events_pb2, tetragon_pb2

log = logging.getLogger(__name__)

GET_EVENTS = "/tetragon.FineGuidanceSensors/GetEvents"
GET_HEALTH = "/tetragon.FineGuidanceSensors/GetHealth"
GET_VERSION = "/tetragon.FineGuidanceSensors/GetVersion"


@dataclass(slots=True)
class SourceStats:
    connects: int = 0  # streams opened
    reconnects: int = 0  # streams opened after the first
    stream_errors: int = 0  # streams that ended with an error
    connect_failures: int = 0
    received: int = 0
    connected: bool = False
    last_error: str = ""


class TetragonGrpcSource:
    """Streams raw GetEventsResponse payloads into an EventQueue until stopped."""

    name = "tetragon-grpc"

    def __init__(self, cfg: TetragonConfig, *, queue: EventQueue) -> None:
        self.cfg = cfg
        self.queue = queue
        self.stats = SourceStats()
        self._request = build_request(cfg)
        self._backoff = Backoff(initial=cfg.reconnect_initial_seconds, maximum=cfg.reconnect_max_seconds)
        self._channel: rpc.Channel | None = None
        self._shown = redact(cfg.address)  # the address for messages, password masked
        self._outage = OpenOutage()  # an outage not handed over yet (sources/open_outage.py)
        self._connected_at = 0  # wall ns the current stream opened
        self._connected_boot = 0  # ... and its boottime
        # (wall, boottime) ns the current stream's first message arrived (None: none yet). Tetragon
        # adds the stream's listener only when its handler runs, after the call was created, and
        # sends nothing before its first event: only a message proves it listens.
        self._delivered: tuple[int, int] | None = None
        self._first_opened: tuple[int, int] | None = None  # (wall, boottime) ns the first stream opened
        self._first_held = 0  # the hold before that opening marked as a gap so far (0: none yet)
        self.alive_ns = 0  # wall ns the stream was last known alive (its last message, or its opening)
        self.hold = EventHold()  # how far back the events Tetragon still holds reach (sources/event_hold.py)
        self._last: bytes | None = None  # the stream's last message, its time read about once a second
        self._sampled = 0  # ``stats.received`` when it was last read
        self.stalls = LoopStalls()  # the loop stalled with the stream open: unwatched (sources/loop_stall.py)

    async def run(self, stop: asyncio.Event) -> None:
        """Stream until ``stop`` is set (or the task is cancelled), reconnecting on failure."""
        warning = service_address_warning(self.cfg.address)
        if warning:
            log.warning("%s", warning)
        monitor = asyncio.create_task(self.stalls.run(lambda: self.stats.connected), name="loop-stalls")
        try:
            await self._run(stop)
        finally:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor

    async def _run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._stream_once(stop)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # every failure is retried; count and say why
                self.stats.last_error = redact_error(e)
                log.warning("tetragon stream error (%s): %s", self._shown, self.stats.last_error)
            finally:
                if self.stats.connected and not stop.is_set():
                    # nobody is known to watch from here (an outage still open, the first stream's
                    # hold not taken yet, may start earlier, or later when the hold grew since)
                    start = self.held_from()
                    self._outage.resume(start, boot_of(start))
                self.stats.connected = False
                await self._close()
            if stop.is_set():
                break
            delay = self._backoff.next_delay()
            log.info("reconnecting to tetragon at %s in %.2fs", self._shown, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def _stream_once(self, stop: asyncio.Event) -> None:
        # a target no client can dial (unix://authority/x, an unclosed '[') is read when connecting:
        # channel_ready then retries it as any address nobody listens on, and times out here
        self._channel = rpc.insecure_channel(self.cfg.address, channel_options())
        try:
            await asyncio.wait_for(self._channel.channel_ready(), self.cfg.timeout_seconds)
        except TimeoutError:
            self.stats.connect_failures += 1
            raise ConnectionError(
                f"no connection to {self._shown} within {self.cfg.timeout_seconds}s"
            ) from None
        call = self._channel.unary_stream(
            GET_EVENTS,
            request_serializer=events_pb2.GetEventsRequest.SerializeToString,
            response_deserializer=None,  # raw bytes: decoding belongs to the pipeline
        )(self._request)
        if self.stats.connects:
            self.stats.reconnects += 1
        self.stats.connects += 1
        self._connected_at, self._connected_boot = now_pair()
        self.alive_ns = self._connected_at
        if self.stats.connects == 1:
            self._first_opened = (self._connected_at, self._connected_boot)
            self._first_unwatched()
        self._last = None  # a message of the last stream says nothing of this one's lag
        self._delivered = None
        self.stats.connected = True
        log.info("streaming events from tetragon at %s", self._shown)
        put = self.queue.put
        stats = self.stats
        first = True
        now = time.time_ns
        try:
            async for payload in call:
                self.alive_ns = now()
                self._last = payload
                stats.received += 1
                put(payload)
                if first:  # a stream that delivers is healthy again, and Tetragon listens on it
                    self._delivered = (self.alive_ns, boot_of(self.alive_ns))
                    self._backoff.reset()
                    self.hold.sample(payload, self.alive_ns)  # a backlog shows in its first message
                    first = False
        except rpc.RpcError as e:
            stats.stream_errors += 1
            if e.code() == rpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in e.details():
                # One event over max_receive_message_length ended the stream: it is lost (Tetragon
                # replays nothing), so it is a counted drop, besides the outage that follows.
                self.queue.drop_oversize()
            raise ConnectionError(f"stream failed: {e.code().name}: {one_line(e.details())}") from None
        finally:
            call.cancel()
        if not stop.is_set():
            stats.stream_errors += 1
            raise ConnectionError("tetragon ended the event stream")

    def take_outage(self) -> tuple[int, int] | None:
        """The part of an outage not handed over yet, as (start, end) wall ns; None if there is none.

        While the stream is down, or open but silent so far, the span ends now (and the next call
        continues from there); once a new stream delivered its first message it ends at that
        message's arrival, and the outage is closed. Over the first stream's first minute the
        gap before it is widened as its messages show a backlog (:meth:`_first_unwatched`).
        A wall-clock step inside it widens the span to hold both clocks' sides (hotsymbols/clock_span.py).
        Event-loop stalls with the stream open (sources/loop_stall.py) are taken with it, as one span.
        """
        first = self._first_opened
        if self.stats.connects == 1 and first and self.delivering and boot_ns() - first[1] <= 60 * 10**9:
            # The first stream's first minute: a backlog its messages show (their lag) widens the
            # gap before it (to its first message), which only the default hold reached when it opened.
            self.held_from()  # samples the last message's lag
            self._first_unwatched()
        span = self._outage.take(self._delivered if self.delivering else None)
        # Stalls join it (one span per call: the last call, at shutdown, must take them all), from the
        # hold before each: what Tetragon notified meanwhile, and dropped for us, carries earlier times.
        while (stall := self.stalls.take()) is not None:
            stall = (stall[0] - self.hold.ns(), stall[1])
            span = stall if span is None else (min(span[0], stall[0]), max(span[1], stall[1]))
        return span

    def resume_outage(self, from_ns: int, from_boot: int | None = None) -> None:
        """An outage open since ``from_ns`` (boottime ``from_boot``, None when unknown): the last
        agent's last watching moment (agent/watch_record.py)."""
        self._outage.resume(from_ns, from_boot)

    def first_agent(self) -> None:
        """The node's first agent (agent/watch_record_store.py: no watch record, and the store holds
        no window of the node): no restart gap covers the time before its first stream, and the
        hold before it is a gap as for every agent (:meth:`_first_unwatched`)."""
        self._first_unwatched()

    def _first_unwatched(self) -> None:
        """Every agent's first stream (with no ``store.spoolPath`` too): Tetragon's cache sends it
        events stamped up to the hold before it opened and sent the rest of that time to no
        listener, so the hold before the opening is a gap, with the windows it touches (those
        events' rows would claim them whole). An earlier restart gap is kept (``resume``)."""
        if self._first_opened is None:
            return
        held = self.hold.ns()
        if held > self._first_held:
            self._first_held = held
            wall, boot = self._first_opened
            self._outage.resume(wall - held, max(0, boot - held))

    def held_from(self) -> int:
        """The earliest time the events Tetragon may still hold for the stream carry: the last
        moment it was known alive, less the hold (sources/event_hold.py)."""
        if self.stats.received != self._sampled:
            self._sampled = self.stats.received
            self.hold.sample(self._last, self.alive_ns)
            self._last = None  # not kept past its tick: it may be a message of 64 MiB
        return self.alive_ns - self.hold.ns()

    def watching_ns(self) -> int | None:
        """The last moment up to which the open stream is known to have delivered every event
        (:meth:`held_from`); None while no stream is open or it delivered nothing yet."""
        return self.held_from() if self.delivering else None

    def live_ns(self) -> int | None:
        """The node's proof of life's moment (agent/watch_record.py ``claimed``): now, less the hold,
        while a stream that delivered is open. A silent open stream is watched as the lifecycle
        rows take it (no outage until its keepalive fails, and one found then starts at its last
        message, :meth:`watching_ns`, which the watch record keeps for the next agent)."""
        return time.time_ns() - self.hold.ns() if self.delivering else None

    @property
    def delivering(self) -> bool:
        """A stream is open and its first message arrived: Tetragon listens on it."""
        return self.stats.connected and self._delivered is not None

    def forget_outage(self) -> None:
        """Drop an open outage: another source takes over and accounts for the time itself."""
        self._outage.forget()

    async def _close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def health(self) -> tuple[bool, str]:
        """Ask Tetragon's GetHealth; (healthy, detail)."""
        try:
            async with rpc.insecure_channel(self.cfg.address) as ch:
                resp = await ch.unary_unary(
                    GET_HEALTH,
                    request_serializer=tetragon_pb2.GetHealthStatusRequest.SerializeToString,
                    response_deserializer=tetragon_pb2.GetHealthStatusResponse.FromString,
                )(tetragon_pb2.GetHealthStatusRequest(), timeout=self.cfg.timeout_seconds)
        except rpc.RpcError as e:
            return False, f"{e.code().name}: {one_line(e.details())}"
        statuses = [s for s in resp.health_status]
        ok = bool(statuses) and all(s.status == 1 for s in statuses)  # HEALTH_STATUS_RUNNING
        return ok, one_line("; ".join(f"{s.details}" for s in statuses))
