"""The agent's HTTP side and health: /healthz, /readyz, Tetragon's GetHealth and drop metrics."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.replay.server import ReplayServer
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_grpc import TetragonGrpcSource
from tests.e2e import harness as h
from tests.unit.test_sources import TETRAGON_METRICS


async def _tetragon_metrics_endpoint() -> tuple[web.AppRunner, str]:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=TETRAGON_METRICS, content_type="text/plain")

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/metrics"


async def _get(port: int, path: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}{path}") as r:
        return r.status, await r.json()


async def test_health_readiness_and_tetragon_drops(tmp_path) -> None:
    server = ReplayServer(h.stream_events()[:50])
    addr = await server.start("127.0.0.1:0")
    tmetrics, url = await _tetragon_metrics_endpoint()
    cfg = parse_config(
        {
            "tetragon": {"address": addr, "metricsUrl": url},
            "store": {"url": f"sqlite:///{tmp_path}/hs.db"},
            "metrics": {"address": "127.0.0.1", "port": 0},
        }
    )
    agent = Agent(cfg, node_name="n1")
    task = asyncio.create_task(agent.run())
    try:
        await h.wait_for(  # the store opens in the background (and imports Alembic to migrate)
            lambda: agent.http_port is not None and agent.source_stats.connected and agent.store is not None,
            what="connected and store open",
        )
        port = agent.http_port
        assert port is not None
        assert await _get(port, "/healthz") == (200, {"status": "ok"})
        status, body = await _get(port, "/readyz")
        assert status == 200 and body["ready"] and body["source_connected"] and body["store_open"]
        await h.wait_for(
            lambda: agent.tetragon_drops is not None and agent.tetragon_drops.scrapes > 0, what="scrape"
        )
        m = await asyncio.to_thread(h.scrape, port)
        assert h.metric(m, "stellaops_runtime_tetragon_overflowed_events_total") == 17
        assert h.metric(m, "stellaops_runtime_events_dropped_total", reason="tetragon_notify_overflow") == 17
        # Tetragon's own health RPC, as the agent's source asks it.
        ok, detail = await TetragonGrpcSource(cfg.tetragon, queue=EventQueue(100)).health()
        assert ok, detail
        # Tetragon goes away: readiness says so.
        await server.stop(grace=0)
        await h.wait_for(lambda: not agent.source_stats.connected, what="disconnect")
        status, body = await _get(port, "/readyz")
        assert status == 503 and body["source_connected"] is False
        ok, detail = await TetragonGrpcSource(cfg.tetragon, queue=EventQueue(100)).health()
        assert not ok and detail
    finally:
        agent.stop("test done")
        assert await asyncio.wait_for(task, 30) == 0
        await server.stop(grace=0)
        await tmetrics.cleanup()
