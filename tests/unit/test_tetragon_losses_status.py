"""A node whose Tetragon metrics cannot be read says so in its ObservationNode and its RuntimeObserver.

Since the operator renders ``tetragon.metricsUrl`` by default (8f0ef62), a node whose Tetragon
serves no metrics at ``$(NODE_IP):2112`` turns all of its time into a node-wide gap: every answer
there is unknown. Only the agent's own /metrics and a log line said why; the ObservationNode and
the RuntimeObserver read healthy (review RTM, brief item a). Now the agent writes
``TetragonLossesKnown`` (False ``MetricsUnreadable`` naming the redacted URL and what to do), and
the operator's ``NotObservedBacked`` fold names those nodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stellaops_runtime.agent.capabilities import Capabilities, TetragonInfo
from stellaops_runtime.agent.observation_status import build_status
from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.controller.node_backing import fold_fresh
from tests.integration.test_tetragon_metrics_default_url import metrics_agent

UP = TetragonInfo(address="unix:///t.sock", reachable=True, version="v1.7.0")
CAPS = Capabilities(
    kernel_version="6.1.0", btf=True, bpf_permitted=True, tracepoints=True, uprobes=True,
    kprobes=True, usdt=True, ring_buffer=True, tetragon=UP,
)  # fmt: skip
URL = "http://stella:hunter2@127.0.0.1:1/metrics"  # nothing listens on port 1


def _status(agent: Agent, existing: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    writer = agent.node_status
    assert writer is not None
    losses = writer.tetragon_losses() if writer.tetragon_losses is not None else None
    return build_status(
        capabilities=CAPS, tetragon=UP, policies=[], existing_conditions=existing, now="t",
        tetragon_losses=losses,
    )  # fmt: skip


def _losses(status: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in status["conditions"] if c["type"] == "TetragonLossesKnown"), None)


async def test_an_unreadable_metrics_endpoint_is_said_in_the_node_and_observer_status(tmp_path: Path) -> None:
    agent = metrics_agent(tmp_path, URL, observation_node=True)
    poller = agent._poller
    assert poller is not None
    await poller.scrape_once()
    first = _losses(_status(agent))
    assert first is not None and first["status"] == "True"  # one failure: the next scrape may still tell
    await poller.scrape_once()
    status = _status(agent)
    c = _losses(status)
    assert c is not None and c["status"] == "False" and c["reason"] == "MetricsUnreadable"
    assert "127.0.0.1:1/metrics" in c["message"] and 'metricsUrl to ""' in c["message"]
    assert "hunter2" not in str(status)  # conditions are readable cluster-wide
    # the RuntimeObserver: its NotObservedBacked names the node and what to do
    backing = fold_fresh(
        [("n1", status), ("n2", _status(metrics_agent(tmp_path / "b", "", observation_node=True)))],
        generation=3,
    )
    assert backing.condition["status"] == "False" and backing.condition["reason"] == "MetricsUnreadable"
    assert "1 of 2 fresh node(s)" in backing.condition["message"] and "(n1)" in backing.condition["message"]
    assert backing.state == "Degraded"
    # the source switch's probes watch: Tetragon's losses do not count, so it is no fault
    agent.source = type("Switch", (), {"mode": "bcc"})()  # type: ignore[assignment]
    probes = _losses(_status(agent))
    assert probes is not None and probes["status"] == "True"


def test_without_a_metrics_url_no_condition_and_an_old_one_is_taken_away(tmp_path: Path) -> None:
    agent = metrics_agent(tmp_path, "", observation_node=True)
    assert agent.node_status is not None and agent.node_status.tetragon_losses is None
    old = {"type": "TetragonLossesKnown", "status": "False", "reason": "MetricsUnreadable", "message": "x"}
    assert _losses(_status(agent, [old])) is None  # an earlier agent's would stay stale
