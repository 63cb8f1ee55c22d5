"""The agent's HTTP endpoints: ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz``.

Split from :mod:`stellaops_runtime.agent.runner`: the endpoints only read the
agent (its collector and :meth:`~stellaops_runtime.agent.runner.Agent.readiness`).
``/metrics`` is rendered on the pipeline thread, because the collector reads
counters the pipeline mutates.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from stellaops_runtime.agent.metrics import AgentCollector

if TYPE_CHECKING:
    from stellaops_runtime.agent.runner import Agent

log = logging.getLogger(__name__)


async def start_http(agent: Agent) -> web.AppRunner | None:
    """Serve the endpoints on ``metrics.address:port``; None (logged) when the port cannot be bound."""
    registry = CollectorRegistry()
    registry.register(AgentCollector(agent))

    async def metrics(_: web.Request) -> web.Response:
        body = await agent.in_pipeline(generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ready, detail = agent.readiness()
        return web.json_response({"ready": ready, **detail}, status=200 if ready else 503)

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics), web.get("/healthz", healthz), web.get("/readyz", readyz)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    m = agent.config.metrics
    site = web.TCPSite(runner, m.address, m.port)
    try:
        await site.start()
    except OSError as e:
        log.error("cannot serve metrics on %s:%d: %s", m.address, m.port, e.strerror or e)
        await runner.cleanup()
        return None
    sockets = getattr(site._server, "sockets", None) or []
    agent.http_port = sockets[0].getsockname()[1] if sockets else m.port
    log.info("metrics and health on http://%s:%d (/metrics, /healthz, /readyz)", m.address, agent.http_port)
    return runner
