"""ReplayServer: Tetragon's FineGuidanceSensors over real gRPC, fed from recorded events.

Why a server and not a mock: the agent's Tetragon source must be tested over
the real wire (HTTP/2, flow control, cancellation, reconnects, server-side
filters), and demos need something that looks like a node's Tetragon. The
server behaves like Tetragon where a client can tell:

- GetEvents streams pre-serialized GetEventsResponse bytes unchanged (a generic
  handler with an identity serializer: no re-encoding per event), applying the
  request's allow/deny lists with Tetragon's semantics (replay.filters);
  unsupported filter fields or bad regexes -> INVALID_ARGUMENT;
- a stream never ends by itself: after the last event it stays open and idle
  (or restarts from the first event with ``loop=True``) until the client
  cancels or the server stops, which ends it with UNAVAILABLE;
- GetHealth, GetVersion, ListTracingPolicies answer like a healthy agent, and
  the standard ``grpc.health.v1`` service reports "" and "liveness" SERVING.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from stellaops_runtime.replay.events import ReplayEvent
from stellaops_runtime.replay.filters import FilterError, compile_request
from stellaops_runtime.wire.tetragon import events_pb2, sensors_pb2, tetragon_pb2

log = logging.getLogger(__name__)

SERVICE_NAME = "tetragon.FineGuidanceSensors"
DEFAULT_VERSION = "v1.7.0-stellaops-replay"

# Sleep only when this far ahead of schedule: finer sleeps are dominated by loop overhead.
_PACING_SLACK_S = 0.001
_WAIT_POLL_S = 0.002


@dataclass(frozen=True, slots=True)
class HookReport:
    """One hook status of a policy; ``state`` is a HookState name without ``STATUS_``."""

    section: str
    index: int
    description: str
    state: str = "LOADED"


@dataclass(frozen=True, slots=True)
class PolicyStatus:
    """One entry of ListTracingPolicies; ``state`` is a TracingPolicyState name without
    the ``TP_STATE_`` prefix (ENABLED, DISABLED, LOAD_ERROR, ERROR, LOADING, UNLOADING,
    SKIPPED, PARTIALLY_ENABLED), ``hooks`` its hook statuses (Tetragon main), ``policy_id``
    the number Tetragon gave its load (``id``; None: its place in the list, 0: not told)."""

    name: str
    state: str = "ENABLED"
    message: str = ""
    namespace: str = ""
    hooks: tuple[HookReport, ...] = ()
    policy_id: int | None = None

    def to_proto(self, *, policy_id: int) -> sensors_pb2.TracingPolicyStatus:
        state = sensors_pb2.TracingPolicyState.Value(f"TP_STATE_{self.state}")
        status = sensors_pb2.TracingPolicyStatus(
            id=policy_id if self.policy_id is None else self.policy_id,
            name=self.name,
            namespace=self.namespace,
            state=state,
            enabled=state == sensors_pb2.TP_STATE_ENABLED,
            mode=sensors_pb2.TP_MODE_ENFORCE,
        )
        for h in self.hooks:
            status.hook_statuses.add(
                section=h.section,
                hook_idx=h.index,
                hook_description=h.description,
                state=sensors_pb2.HookState.Value(f"STATUS_{h.state}"),
            )
        if self.state in ("LOAD_ERROR", "ERROR"):
            status.error = self.message
        else:
            status.info = self.message
        return status


def _identity(payload: bytes) -> bytes:
    return payload


def _unix_socket_path(address: str) -> Path | None:
    """The filesystem path of a ``unix:`` target (``unix:///abs`` or ``unix:rel``), else None."""
    if not address.startswith("unix:"):
        return None
    rest = address[len("unix:") :]
    if rest.startswith("//"):
        rest = rest[2:]
    return Path(rest)


class ReplayServer:
    """A FineGuidanceSensors server replaying ``events`` to every GetEvents stream.

    ``rate`` paces each stream at that many events per second (None: as fast as
    the client reads); ``loop`` restarts from the first event at the end;
    ``policies`` overrides ListTracingPolicies (default: one ENABLED policy per
    distinct ``policy_name`` among the events).
    """

    def __init__(
        self,
        events: list[ReplayEvent],
        *,
        rate: float | None = None,
        loop: bool = False,
        version: str = DEFAULT_VERSION,
        policies: list[PolicyStatus] | None = None,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be > 0 events/s, got {rate}")
        self.events = events
        self.rate = rate
        self.loop = loop
        self.version = version
        if policies is None:
            names = dict.fromkeys(e.policy_name for e in events if e.policy_name)
            policies = [PolicyStatus(name=n) for n in names]
        self.policies = policies
        self.served = 0
        self.streams_opened = 0
        self.streams_active = 0
        self.address: str | None = None
        self._server: grpc.aio.Server | None = None
        self._stopping = asyncio.Event()
        self._socket_path: Path | None = None

    # --- lifecycle -------------------------------------------------------------

    async def start(self, address: str) -> str:
        """Bind ``address`` (``HOST:PORT``, port 0 = any; or ``unix:///path``) and serve.

        Returns the bound address (the real port for port 0). Raises RuntimeError
        when the address cannot be bound. A stale socket file at a unix path is removed.
        """
        if self._server is not None:
            raise RuntimeError("ReplayServer already started")
        socket_path = _unix_socket_path(address)
        if socket_path is not None and socket_path.exists() and stat.S_ISSOCK(socket_path.stat().st_mode):
            # A socket file nobody listens on any more (e.g. a killed previous run).
            socket_path.unlink()
        # so_reuseport=0: a second server on a busy port must fail, not share it.
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((self._handler(),))
        health_servicer = health.aio.HealthServicer()
        for service in ("", "liveness"):
            await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as e:
            raise RuntimeError(f"cannot bind {address}: {e}") from e
        if socket_path is None and port == 0:
            raise RuntimeError(f"cannot bind {address}")
        await server.start()
        self._server = server
        self._socket_path = socket_path
        self._stopping.clear()
        if socket_path is not None:
            self.address = address
        else:
            host = address.rsplit(":", 1)[0]
            self.address = f"{host}:{port}"
        log.info("replay server listening on %s (%d events)", self.address, len(self.events))
        return self.address

    async def stop(self, grace: float | None = 0.5) -> None:
        """End every open stream with UNAVAILABLE and stop serving (after ``grace`` seconds at most)."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        await server.stop(grace)
        if self._socket_path is not None:
            try:
                if stat.S_ISSOCK(os.stat(self._socket_path).st_mode):
                    self._socket_path.unlink()
            except FileNotFoundError:
                pass
        log.info("replay server on %s stopped after serving %d events", self.address, self.served)

    async def __aenter__(self) -> ReplayServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # A `timeout` argument (not asyncio.timeout) keeps test code one line: await srv.wait_served(n, 5).
    async def wait_served(self, n: int, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until ``served`` >= n; raises TimeoutError after ``timeout`` seconds."""
        await self._wait_for(lambda: self.served >= n, timeout_s=timeout, what=f"served >= {n}")

    async def wait_streams(self, n: int, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until ``streams_opened`` >= n; raises TimeoutError after ``timeout`` seconds."""
        await self._wait_for(
            lambda: self.streams_opened >= n, timeout_s=timeout, what=f"streams_opened >= {n}"
        )

    async def _wait_for(self, cond: Callable[[], bool], *, timeout_s: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not cond():
            if loop.time() >= deadline:
                raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
            await asyncio.sleep(_WAIT_POLL_S)

    # --- RPCs ------------------------------------------------------------------

    def _handler(self) -> grpc.GenericRpcHandler:
        def unary(behaviour: Any, request_type: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                behaviour,
                request_deserializer=request_type.FromString,
                response_serializer=lambda msg: msg.SerializeToString(),
            )

        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "GetEvents": grpc.unary_stream_rpc_method_handler(
                    self._get_events,
                    request_deserializer=events_pb2.GetEventsRequest.FromString,
                    response_serializer=_identity,
                ),
                "GetHealth": unary(self._get_health, tetragon_pb2.GetHealthStatusRequest),
                "GetVersion": unary(self._get_version, sensors_pb2.GetVersionRequest),
                "ListTracingPolicies": unary(self._list_policies, sensors_pb2.ListTracingPoliciesRequest),
            },
        )

    async def _get_events(
        self, request: events_pb2.GetEventsRequest, context: grpc.aio.ServicerContext
    ) -> None:
        try:
            request_filter = compile_request(request)
        except FilterError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            return
        payloads = [e.payload for e in self.events if request_filter.accepts(e)]
        self.streams_opened += 1
        self.streams_active += 1
        stream_no = self.streams_opened
        peer = context.peer()
        log.info(
            "GetEvents stream %d opened by %s: %d of %d events pass its filters",
            stream_no,
            peer,
            len(payloads),
            len(self.events),
        )
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.rate if self.rate else 0.0
        started = loop.time()
        sent = 0
        try:
            while payloads:
                for payload in payloads:
                    if self._stopping.is_set():
                        break
                    if interval:
                        ahead = started + sent * interval - loop.time()
                        if ahead > _PACING_SLACK_S:
                            await asyncio.sleep(ahead)
                    await context.write(payload)
                    sent += 1
                    self.served += 1
                if not self.loop or self._stopping.is_set():
                    break
            # Exhausted and not looping: stay open like Tetragon until cancelled or stopped.
            await self._stopping.wait()
            await context.abort(grpc.StatusCode.UNAVAILABLE, "replay server stopping")
        finally:
            self.streams_active -= 1
            log.info("GetEvents stream %d (%s) closed after %d events", stream_no, peer, sent)

    async def _get_health(
        self, request: tetragon_pb2.GetHealthStatusRequest, context: grpc.aio.ServicerContext
    ) -> tetragon_pb2.GetHealthStatusResponse:
        return tetragon_pb2.GetHealthStatusResponse(
            health_status=[
                tetragon_pb2.HealthStatus(
                    event=tetragon_pb2.HEALTH_STATUS_TYPE_STATUS,
                    status=tetragon_pb2.HEALTH_STATUS_RUNNING,
                    details="replay",
                )
            ]
        )

    async def _get_version(
        self, request: sensors_pb2.GetVersionRequest, context: grpc.aio.ServicerContext
    ) -> sensors_pb2.GetVersionResponse:
        return sensors_pb2.GetVersionResponse(version=self.version)

    async def _list_policies(
        self, request: sensors_pb2.ListTracingPoliciesRequest, context: grpc.aio.ServicerContext
    ) -> sensors_pb2.ListTracingPoliciesResponse:
        return sensors_pb2.ListTracingPoliciesResponse(
            policies=[p.to_proto(policy_id=i) for i, p in enumerate(self.policies, start=1)]
        )
