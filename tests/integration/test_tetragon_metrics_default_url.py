"""Tetragon's own losses are gaps in operator-managed installs (brief s43/TM).

The agent reads Tetragon's lost-event counters only from ``tetragon.metricsUrl``. The operator
never set it, and the shipped ConfigMap's ``http://localhost:2112/metrics`` is the agent pod's own
loopback (the agent does not use the host network; Tetragon's metrics server listens on the
node's): so on a normal install no drop of Tetragon ever became a gap, and a window in which
Tetragon threw calls away could answer "not observed". And a scrape that failed was logged at
debug level only: the time it could not read stayed watched.

Now the operator renders ``http://$(NODE_IP):2112/metrics`` (``spec.tetragon.metricsUrl``, "" turns
it off) and the pod's ``NODE_IP`` from the downward API (``status.hostIP``); the agent expands
``$(NAME)`` in the URL from its environment. Scrapes failing for longer than one interval (two in a
row) make the time since the last good one a node-wide gap, marked up to now on every tick of the
outage marker until a scrape answers again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.crds import parse_observer_spec
from stellaops_runtime.contracts.hotsymbols import NODE_WIDE
from stellaops_runtime.controller.agent_config import AGENT_CONFIG_KEY
from stellaops_runtime.controller.render_agent import render_agent_objects
from stellaops_runtime.sources.tetragon_metrics import TetragonMetricsPoller
from tests.integration.test_tetragon_metrics_hostile import Exporter

OVER = "tetragon_notify_overflowed_events_total"
BASE: dict[str, Any] = {
    "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
    "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
}


def _render(extra: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = parse_observer_spec({**BASE, **(extra or {})})
    objs = render_agent_objects(name="default", uid="u1", namespace="stellaops-agent", spec=spec)
    cm = next(o for o in objs if o["kind"] == "ConfigMap")
    ds = next(o for o in objs if o["kind"] == "DaemonSet")
    return json.loads(cm["data"][AGENT_CONFIG_KEY]), ds["spec"]["template"]["spec"]["containers"][0]


def test_the_operator_renders_a_metrics_url_that_reaches_the_node_s_tetragon() -> None:
    config, container = _render()
    assert config["tetragon"]["metricsUrl"] == "http://$(NODE_IP):2112/metrics"
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    assert not container.get("hostNetwork")
    # the rendered document is one the agent reads, and its poller asks the node's address
    agent_cfg = parse_config({**config, "store": {"url": "sqlite:///unused"}})
    assert agent_cfg.tetragon.metrics_url == "http://$(NODE_IP):2112/metrics"


def test_the_metrics_url_can_be_changed_or_turned_off() -> None:
    config, _ = _render({"tetragon": {"metricsUrl": "http://$(NODE_IP):9999/metrics"}})
    assert config["tetragon"]["metricsUrl"] == "http://$(NODE_IP):9999/metrics"
    config, _ = _render({"tetragon": {"metricsUrl": ""}})
    assert config["tetragon"]["metricsUrl"] == ""
    with pytest.raises(ValueError):
        parse_observer_spec({**BASE, "tetragon": {"metricsUrl": 5}})
    with pytest.raises(ValueError):
        parse_observer_spec({**BASE, "tetragon": {"metricsUrl": "http://x/\x00"}})


@pytest.mark.parametrize(
    ("url", "env", "want"),
    [
        ("http://$(NODE_IP):2112/metrics", {"NODE_IP": "10.0.0.7"}, "http://10.0.0.7:2112/metrics"),
        ("http://$(NODE_IP):2112/metrics", {"NODE_IP": "fd00::7"}, "http://[fd00::7]:2112/metrics"),
        ("http://[$(NODE_IP)]:2112/metrics", {"NODE_IP": "fd00::7"}, "http://[fd00::7]:2112/metrics"),
        ("http://$(NODE_IP):2112/metrics", {}, "http://$(NODE_IP):2112/metrics"),  # unset: kept, fails
        ("http://localhost:2112/metrics", {"NODE_IP": "10.0.0.7"}, "http://localhost:2112/metrics"),
        # only NODE_IP: another name, set or not, is kept (test_tetragon_metrics_url_env.py)
        ("http://$(A)$(B)/m", {"A": "h", "B": ":1"}, "http://$(A)$(B)/m"),
        ("http://$$(NODE_IP)/m", {"NODE_IP": "x"}, "http://$(NODE_IP)/m"),  # Kubernetes' escape
    ],
)
def test_the_agent_expands_the_node_ip_in_the_url(url: str, env: dict[str, str], want: str) -> None:
    from stellaops_runtime.sources.tetragon_metrics import expand_url

    assert expand_url(url, env) == want


async def test_the_agent_reads_tetragon_s_drops_through_the_node_ip(tmp_path: Path, monkeypatch) -> None:
    async with Exporter(f"{OVER} 5\n") as ex:
        port = ex.url.rsplit(":", 1)[1].split("/")[0]
        monkeypatch.setenv("NODE_IP", "127.0.0.1")
        agent = metrics_agent(tmp_path, f"http://$(NODE_IP):{port}/metrics")
        poller = agent._poller
        assert poller is not None and poller.url == ex.url
        await poller.scrape_once()
        await agent.outages.mark()
        ex.body = f"{OVER} 12\n"  # Tetragon overflowed in the middle
        await poller.scrape_once()
        await agent.outages.mark()
        gaps = await _gaps(agent)
    assert {(r.image_digest, r.node_name) for r in gaps} == {(NODE_WIDE, "n1")}
    assert sum(r.dropped_events for r in gaps) == 7


async def test_scrapes_failing_for_longer_than_an_interval_are_a_gap(tmp_path: Path) -> None:
    async with Exporter(f"{OVER} 5\n") as ex:
        url = ex.url
        agent = metrics_agent(tmp_path, url)
        poller = agent._poller
        assert poller is not None
        await poller.scrape_once()
        good = poller.known_through()
        await agent.outages.mark()
        assert await _gaps(agent) == []
    # Tetragon's metrics server stopped: nothing says what it lost from here on
    await poller.scrape_once()
    await agent.outages.mark()
    assert await _gaps(agent) == []  # one failed scrape: the next good one would still tell
    await poller.scrape_once()
    before = time.time_ns()
    await agent.outages.mark()
    gaps = await _gaps(agent)
    assert gaps, "scrapes failed for over an interval, yet the time reads as watched"
    assert {(r.image_digest, r.node_name) for r in gaps} == {(NODE_WIDE, "n1")}
    assert min(r.gap_start_ns for r in gaps) <= good
    assert max(r.gap_end_ns for r in gaps) >= before
    # still failing: the next tick marks on from there
    await poller.scrape_once()
    later = time.time_ns()
    await agent.outages.mark()
    assert max(r.gap_end_ns for r in await _gaps(agent)) >= later
    assert poller.stats.scrape_errors == 3
    # and the agent's /metrics says so: the failures, and that the time is a gap now
    assert _metric(agent, "stellaops_runtime_tetragon_metrics_scrape_errors_total") == 3
    assert _metric(agent, "stellaops_runtime_tetragon_metrics_unreadable") == 1


def _metric(agent: Agent, name: str) -> float:
    from stellaops_runtime.agent.metrics import AgentCollector

    for family in AgentCollector(agent).collect():
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} not served")


def test_a_failure_never_answered_marks_from_the_first_try() -> None:
    p = TetragonMetricsPoller("http://unused", interval=15.0)
    p.failed(100)
    assert p.take_unknown(120) is None  # one failure: not yet an interval
    p.failed(115)
    assert p.take_unknown(130) == (100, 130)
    assert p.take_unknown(140) == (130, 140)
    p.give_back_unknown((130, 140))
    assert p.take_unknown(150) == (130, 150)
    p.note({"overflowed": 3.0}, 160, 155)  # answered: the first good scrape counts from the first try
    assert p.take_unknown(170) is None
    assert p.take() == [(100, 160, 3)]


async def test_while_the_native_probes_watch_tetragon_s_silence_is_no_gap(tmp_path: Path) -> None:
    """The source switch runs its BCC probes while Tetragon is down, its metrics server with it: that
    time is watched. Once Tetragon is the source again and its metrics still do not answer, the time
    from then on is unknown, not the BCC time before."""
    from stellaops_runtime.agent.outages import unknown_counts

    class Switch:
        mode = "bcc"

    assert unknown_counts(object()) is True  # Tetragon's own source (gRPC, or its export file)
    agent = metrics_agent(tmp_path, "http://127.0.0.1:1/metrics")  # nothing listens on port 1
    poller = agent._poller
    assert poller is not None
    switch = Switch()
    agent.outages.source = switch
    # the switch's first tick on the probes marks the Tetragon time before it (none here: no try yet)
    await agent.outages.mark()
    for _ in range(3):
        await poller.scrape_once()
        await agent.outages.mark()
    assert await _gaps(agent) == []
    back = time.time_ns()
    switch.mode = "tetragon"
    await poller.scrape_once()
    await agent.outages.mark()
    gaps = await _gaps(agent)
    assert gaps and min(r.gap_start_ns for r in gaps) >= back - 2_000_000_000  # its window, not before
    assert poller.stats.scrape_errors == 4


async def test_tetragon_s_losses_before_the_switch_to_the_probes_stay_a_gap(tmp_path: Path) -> None:
    """Review RTM: Tetragon loses 7 calls after its last good scrape, then its stream breaks and the
    source switch moves to the BCC probes. The next scrape tells the 7, but the poller's baseline had
    been moved to the first BCC tick (watched_elsewhere), so their gap began after the switch: the
    Tetragon time between the last good scrape and the switch, where they were lost, read as
    watched. Now the first tick in BCC mode marks that time (its losses unread) as a gap."""

    class Switch:
        mode = "tetragon"

    async with Exporter(f"{OVER} 5\n") as ex:
        agent = metrics_agent(tmp_path, ex.url)
        poller = agent._poller
        assert poller is not None
        switch = Switch()
        agent.outages.source = switch
        await poller.scrape_once()
        good = poller.known_through()
        assert good is not None
        await agent.outages.mark()
        assert await _gaps(agent) == []
        ex.body = f"{OVER} 12\n"  # lost before the switch (Tetragon still the source)
        switched = time.time_ns()
        switch.mode = "bcc"
        for _ in range(2):
            await agent.outages.mark()
            await poller.scrape_once()
        await agent.outages.mark()
    gaps = await _gaps(agent)
    assert gaps, "Tetragon counted 7 lost calls, yet no gap"
    assert min(r.gap_start_ns for r in gaps) <= good, "the Tetragon time before the switch reads as watched"
    assert max(r.gap_end_ns for r in gaps) >= switched
    # once the probes watch, the ticks after the first add no gap over their time
    await agent.outages.mark()
    assert await _gaps(agent) == []


def test_a_scrape_after_the_bcc_time_counts_from_its_end() -> None:
    p = TetragonMetricsPoller("http://unused")
    p.note({"overflowed": 2.0}, 100)
    p.failed(115)
    p.watched_elsewhere(200)  # BCC watched until 200: the 7 lost are placed after it
    p.note({"overflowed": 9.0}, 230, 215)
    assert p.take() == [(200, 230, 7)]


def metrics_agent(tmp_path: Path, url: str, *, observation_node: bool = False) -> Agent:
    """A real agent on Tetragon's export file scraping ``url``, storing into SQLite under ``tmp_path``
    (``observation_node``: with its ObservationNode writer, not run; test_tetragon_losses_status.py)."""
    doc: dict[str, Any] = {
        "tetragon": {"exportFile": str(tmp_path / "tetragon.log"), "metricsUrl": url},
        "symbols": {"enabled": False},
        "attribution": {"enabled": False},
        "lifecycle": {"enabled": False},
        "observationNode": {"enabled": observation_node},
        "store": {"url": f"sqlite:///{tmp_path / 'hot.db'}", "spoolPath": str(tmp_path / "spool")},
    }
    return Agent(parse_config(doc), node_name="n1")


async def _gaps(agent: Agent) -> list[Any]:
    rows = await agent.in_pipeline(agent.pipeline.gaps.drain, [])
    return [r for r in rows if r.gap_start_ns]


def test_the_crd_takes_the_setting_as_the_operator_does() -> None:
    from tests.crd_schema import errors, load_crd, validator_for

    root = Path(__file__).resolve().parents[2]
    v = validator_for(load_crd(root / "manifests" / "crds" / "runtimeobservers.yaml"))
    for url in ("", "http://$(NODE_IP):2112/metrics", "https://tetragon.example:2112/metrics"):
        assert errors(v, {"spec": {**BASE, "tetragon": {"metricsUrl": url}}}) == [], url
        parse_observer_spec({**BASE, "tetragon": {"metricsUrl": url}})
    for bad in (5, "http://x/\x00", "ftp://x/m", "http://a b/m", "http://x/" + "a" * 1024):
        assert errors(v, {"spec": {**BASE, "tetragon": {"metricsUrl": bad}}}), bad
        with pytest.raises(ValueError):
            parse_observer_spec({**BASE, "tetragon": {"metricsUrl": bad}})


async def test_a_page_without_a_length_is_read_to_its_end() -> None:
    """A body framed by the connection's end (no Content-Length, not chunked) arriving in two parts:
    kube/streams_http.py read only what had arrived (``read(n)``), so the counters in the second part
    read as missing."""
    import asyncio

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n# HELP x\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(f"{OVER} 5\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        poller = TetragonMetricsPoller(f"http://127.0.0.1:{port}/metrics")
        await poller.scrape_once()
    finally:
        server.close()
        await server.wait_closed()
    assert (poller.stats.scrape_errors, poller.stats.overflowed) == (0, 5.0)


async def test_a_password_in_the_url_is_sent_and_an_https_certificate_is_verified(
    tmp_path: Path, monkeypatch
) -> None:
    """What aiohttp did before the poller moved to plain asyncio streams, kept: the URL's userinfo
    as basic authentication, an https endpoint's certificate checked against the trusted CAs."""
    import ssl

    from aiohttp import web

    from tests.integration.test_kube_incluster_tls import _certificate

    seen: list[str] = []

    async def serve(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(text=f"{OVER} 3\n")

    app = web.Application()
    app.add_routes([web.get("/metrics", serve)])
    runner = web.AppRunner(app)
    await runner.setup()
    cert, key = _certificate(tmp_path, "tetragon")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        poller = TetragonMetricsPoller(f"https://prom:s%40cret@127.0.0.1:{port}/metrics")
        await poller.scrape_once()  # a certificate no trusted CA signed
        assert poller.stats.scrape_errors == 1 and "certificate" in poller.stats.last_error
        assert "s@cret" not in poller.stats.last_error and "s%40cret" not in poller.stats.last_error
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now trusted
        await poller.scrape_once()
    finally:
        await runner.cleanup()
    assert (poller.stats.scrape_errors, poller.stats.overflowed) == (1, 3.0)
    assert seen == ["Basic cHJvbTpzQGNyZXQ="]  # prom:s@cret
