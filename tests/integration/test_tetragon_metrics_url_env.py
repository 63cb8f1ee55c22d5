"""``tetragon.metricsUrl`` expands only the operator's ``$(NODE_IP)`` (brief s43/F5 item 1).

The agent expanded ANY ``$(NAME)`` of its environment in the URL, among them
``STELLA_RUNTIME_STORE``: the store's URL with its password, from the store Secret. A metricsUrl
such as ``http://host:2112/metrics?x=$(STELLA_RUNTIME_STORE)`` then sent that password to a server
of the URL writer's choosing, every 15 s. Now only the names the operator renders for the URL
(``NODE_IP``) are expanded; any other ``$(NAME)`` is kept as written, with a warning naming it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aiohttp import web

from stellaops_runtime.sources.tetragon_metrics import expand_url
from tests.integration.test_tetragon_metrics_default_url import metrics_agent

SECRET = "hunter2"
STORE = f"postgresql://stella:{SECRET}@db.stellaops-system:5432/runtime"


@pytest.mark.parametrize(
    "name", ["STELLA_RUNTIME_STORE", "NODE_NAME", "HOME", "PATH", "A", "node_ip", "NODE_IP_X"]
)
def test_a_name_other_than_node_ip_is_kept_as_written(name: str, caplog) -> None:
    env = {name: STORE, "NODE_IP": "10.0.0.7"}
    url = f"http://$(NODE_IP):2112/metrics?x=$({name})"
    with caplog.at_level(logging.WARNING):
        assert expand_url(url, env) == f"http://10.0.0.7:2112/metrics?x=$({name})"
    # the warning names what was left alone, never the value or the URL's secrets
    assert f"$({name})" in caplog.text and SECRET not in caplog.text


async def test_the_store_password_never_reaches_a_metrics_server(tmp_path: Path, monkeypatch) -> None:
    """The way an attacker who may write ``spec.tetragon.metricsUrl`` would: the real Agent, its
    real environment holding the store URL, a server recording every request it is sent."""
    seen: list[str] = []

    async def serve(req: web.Request) -> web.Response:
        seen.append(str(req.rel_url) + "\n" + "\n".join(f"{k}: {v}" for k, v in req.headers.items()))
        return web.Response(text="tetragon_notify_overflowed_events_total 1\n")

    app = web.Application()
    app.add_routes([web.get("/metrics", serve)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        monkeypatch.setenv("STELLA_RUNTIME_STORE", STORE)
        monkeypatch.setenv("NODE_IP", "127.0.0.1")
        agent = metrics_agent(tmp_path, f"http://$(NODE_IP):{port}/metrics?s=$(STELLA_RUNTIME_STORE)")
        assert agent._poller is not None
        await agent._poller.scrape_once()
    finally:
        await runner.cleanup()
    assert seen, "the scrape reached no server: the test would prove nothing"
    assert not any(SECRET in s for s in seen), seen
