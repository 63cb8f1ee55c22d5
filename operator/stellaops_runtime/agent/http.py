"""The agent's HTTP endpoints: ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz``.

Split from :mod:`stellaops_runtime.agent.runner`: the endpoints only read the
agent (its collector and :meth:`~stellaops_runtime.agent.runner.Agent.readiness`).
``/metrics`` is rendered on the pipeline thread, because the collector reads
counters the pipeline mutates. They are served by the agent's own small HTTP/1.1
server on asyncio (agent/httpserver.py), not aiohttp (9-10 MB per node, issue 13);
agent/prometheus_core.py renders the exposition text, byte for byte as
prometheus-client does. Requests the server refuses are counted in
``stellaops_runtime_http_rejected_total{reason}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

from stellaops_runtime.agent.httpserver import HttpServer, Response
from stellaops_runtime.agent.metric_families import P
from stellaops_runtime.agent.metrics import AgentCollector
from stellaops_runtime.agent.prometheus_core import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    CounterMetricFamily,
    Metric,
    generate_latest,
)

if TYPE_CHECKING:
    from stellaops_runtime.agent.runner import Agent

log = logging.getLogger(__name__)

JSON = "application/json; charset=utf-8"


class HttpCollector:
    """The HTTP server's refusals, by reason (timeouts, oversized heads, malformed requests...)."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        m = CounterMetricFamily(
            P + "http_rejected",
            "Requests to the agent's HTTP endpoints refused or cut off, by reason.",
            labels=["reason"],
        )
        for reason, n in sorted(self.server.rejected.items()):
            m.add_metric([reason], n)
        yield m


class MetricsSnapshot:
    """``/metrics`` that answers while the pipeline thread is busy (a long drain, a cold parse).

    The collector reads counters the pipeline thread mutates, so the text is
    rendered there. A drain that attributes a large SBOM can hold that thread
    for seconds, longer than a scrape timeout; rather than no answer, a scrape
    that waited ``wait_seconds`` gets the last rendering, and
    ``stellaops_runtime_metrics_stale_seconds`` (rendered here, on the event
    loop) says how old it is (0 for a fresh one). At most one rendering is
    queued on the pipeline thread at a time: scrapes during a long drain share it.
    """

    def __init__(self, render: Callable[[], Awaitable[bytes]], *, wait_seconds: float = 1.0) -> None:
        self._render = render
        self.wait_seconds = wait_seconds
        self._pending: asyncio.Future[bytes] | None = None
        self._last: bytes | None = None
        self._last_at = 0.0

    def _done(self, fut: asyncio.Future[bytes]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self._last, self._last_at = fut.result(), time.monotonic()

    async def render(self) -> bytes:
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(self._render())
            self._pending.add_done_callback(self._done)
        pending = self._pending
        try:
            body = await asyncio.wait_for(asyncio.shield(pending), self.wait_seconds)
            age = 0.0
        except TimeoutError:
            if self._last is None:  # nothing rendered yet: wait for the first one
                body, age = await asyncio.shield(pending), 0.0
            else:
                body, age = self._last, time.monotonic() - self._last_at
        return body + _stale_family(age)


def _stale_family(age: float) -> bytes:
    name = P + "metrics_stale_seconds"
    return (
        f"# HELP {name} Age of the metrics above: 0 when fresh, else how long the pipeline thread has "
        f"been too busy to render them.\n# TYPE {name} gauge\n{name} {age:.3f}\n"
    ).encode()


def _json(status: int, doc: dict[str, object]) -> Response:
    return status, JSON, json.dumps(doc).encode()


async def start_http(agent: Agent) -> HttpServer | None:
    """Serve the endpoints on ``metrics.address:port``; None (logged) when the port cannot be bound."""
    registry = CollectorRegistry()
    registry.register(AgentCollector(agent))

    snapshot = MetricsSnapshot(lambda: agent.in_pipeline(generate_latest, registry))

    async def metrics() -> Response:
        return 200, CONTENT_TYPE_LATEST, await snapshot.render()

    async def healthz() -> Response:
        return _json(200, {"status": "ok"})

    async def readyz() -> Response:
        ready, detail = agent.readiness()
        return _json(200 if ready else 503, {"ready": ready, **detail})

    server = HttpServer({"/metrics": metrics, "/healthz": healthz, "/readyz": readyz})
    registry.register(HttpCollector(server))
    m = agent.config.metrics
    try:
        agent.http_port = await server.start(m.address, m.port)
    except OSError as e:
        log.error("cannot serve metrics on %s:%d: %s", m.address, m.port, e.strerror or e)
        await server.cleanup()
        return None
    log.info("metrics and health on http://%s:%d (/metrics, /healthz, /readyz)", m.address, agent.http_port)
    return server
