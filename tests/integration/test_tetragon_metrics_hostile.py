"""Tetragon's metrics endpoint is read, not trusted (probe s31/h7).

With ``tetragon.metricsUrl`` set, the agent reads Tetragon's drop counters. A value that
is no count (NaN, +Inf, negative: a broken or hostile exporter) was taken as it was, and
every later rendering of the agent's own /metrics failed with HTTP 500 (``int(nan)``):
Prometheus lost all of the agent's metrics, its drops and gaps included. Now such a
scrape fails and is counted; the last good values stay. A body over the size bound
fails the scrape as well.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from stellaops_runtime.sources import tetragon_metrics
from stellaops_runtime.sources.tetragon_metrics import TetragonMetricsPoller, parse_drops
from tests.e2e import harness as h

NAME = "tetragon_notify_overflowed_events_total"


class Exporter:
    def __init__(self, body: str) -> None:
        self.body = body
        self.requests = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _serve(self, _: web.Request) -> web.Response:
        self.requests += 1
        return web.Response(text=self.body)

    async def __aenter__(self) -> Exporter:
        app = web.Application()
        app.add_routes([web.get("/metrics", self._serve)])
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/metrics"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-Inf", "-3"])
def test_a_value_that_is_no_count_fails_the_parse(value: str) -> None:
    with pytest.raises(ValueError, match="not a count"):
        parse_drops(f"{NAME} {value}\n")


async def test_a_bad_scrape_keeps_the_last_good_values(monkeypatch) -> None:
    async with Exporter(f"{NAME} 5\n") as ex:
        poller = TetragonMetricsPoller(ex.url)
        await poller.scrape_once()
        assert poller.stats.overflowed == 5.0
        ex.body = f"{NAME} NaN\n"
        await poller.scrape_once()
        assert (poller.stats.overflowed, poller.stats.scrape_errors) == (5.0, 1)
        assert "not a count" in poller.stats.last_error
        monkeypatch.setattr(tetragon_metrics, "MAX_BODY_BYTES", 64)
        ex.body = f"{NAME} 9\n" + "# padding\n" * 10
        await poller.scrape_once()
        assert (poller.stats.overflowed, poller.stats.scrape_errors) == (5.0, 2)
        assert "over 64 bytes" in poller.stats.last_error


async def test_the_agents_metrics_survive_a_nan_from_tetragon(tmp_path: Path) -> None:
    export = tmp_path / "tetragon.log"
    export.write_bytes(b"")
    async with Exporter(f"{NAME} NaN\n") as ex:
        cfg, port = h.write_config(
            tmp_path,
            tetragon={"exportFile": str(export), "metricsUrl": ex.url},
            store={"url": f"sqlite:///{tmp_path}/hot.db"},
            native={"enabled": False},
        )
        proc = h.start_agent(cfg)
        try:
            await h.wait_for(lambda: ex.requests >= 1, what="the agent read Tetragon's metrics", timeout=60)
            await asyncio.sleep(0.5)  # the scrape's answer is taken in meanwhile (it fails at once)
            m = h.scrape(port)  # {} when /metrics does not answer 200
            assert m, "the agent's /metrics did not answer"
            assert h.metric(m, "stellaops_runtime_tetragon_overflowed_events_total") == 0
        finally:
            proc.terminate()
            code, out = await asyncio.to_thread(h.finish, proc, 60)
    assert code == 0, out
    assert "HTTP handler for /metrics failed" not in out, out
