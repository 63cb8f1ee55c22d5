"""End to end: an agent that cannot see the node's containers backs no "not observed".

A window's evidenced posture counts the containers of the image that ran in
it without sending an event (hotsymbols/container_runs.py), but only an agent
with the lifecycle part knows them. With ``lifecycle.enabled: auto`` and no
runtime socket found (a missing mount, an odd path: a Kubernetes node always
has a runtime), a silent pod of the image may have run the function, so the
real agent records no window above ActiveTracing, warns at start saying what
to set, and the real CLI answers unknown (exit 3). With ``enabled: false`` the
operator chose it: the windows rest on the containers that sent events, as
documented (docs/lifecycle.md, "Without the lifecycle part"), and a start-up
warning says so. The node's ObservationNode (in the Kubernetes API emulator of
tests/integration/kubeharness.py) carries ``ContainersKnown``: False,
``NoRuntimeSocket``, and ``/readyz`` and ``/metrics`` name the state.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.kube import resources as r
from tests.e2e import export_agents as x
from tests.e2e import harness as h
from tests.e2e.test_posture_mixed_pods_e2e import BOTH, NEVER, export_lines, observed
from tests.integration.kubeharness import Cluster, obj
from tests.node_alive import each_node_alive_after

pytestmark = [pytest.mark.e2e]


def _absent(tmp: Path) -> dict[str, Any]:
    """``lifecycle.enabled: auto`` with no runtime socket at any of the configured paths."""
    absent = str(tmp / "absent")
    return {
        "enabled": "auto",
        "containerdAddress": f"{absent}/containerd.sock",
        "dockerAddress": f"{absent}/docker.sock",
        "criAddresses": [f"{absent}/crio.sock"],
    }


def _run(tmp: Path, url: str, lifecycle: dict[str, Any]) -> str:
    lines = [o for o in export_lines() if BOTH in str(o)]
    export = tmp / "export.jsonl"
    export.write_text("".join(json.dumps(o) + "\n" for o in lines))
    cfg, _port = h.write_config(
        tmp,
        tetragon={"exportFile": str(export), "exportFromStart": True},
        store={"url": url},
        symbols={"hostRoot": "/"},
        attribution={"hostRoot": "/"},
        lifecycle=lifecycle,
    )
    code, out = h.finish(h.start_agent(cfg, "--exit-when-idle", "2"), 120)
    assert code == 0, out
    assert h.stopped_counts(out).get("received") == len(lines), out
    each_node_alive_after(url)  # the agent exits after the stream: its nodes ran on (tests/node_alive.py)
    return out


def test_auto_without_a_runtime_socket_answers_unknown(tmp_path: Path, sqlite_at_head: Any) -> None:
    url = sqlite_at_head(
        tmp_path / "hot.db"
    )  # at head (tests/conftest.py): no migration at the agent's start
    out = _run(tmp_path, url, _absent(tmp_path))
    code, doc = observed(url, BOTH, NEVER)
    assert (code, doc["answer"]) == (3, "unknown"), doc
    assert "only at posture ActiveTracing" in doc["reason"], doc["reason"]
    warned = [line for line in out.splitlines() if "WARNING" in line and "no runtime socket" in line]
    assert warned, out
    assert "ActiveTracing" in warned[0] and "containerdAddress" in warned[0], warned[0]


def test_enabled_false_is_the_operators_choice_and_says_so(tmp_path: Path, sqlite_at_head: Any) -> None:
    url = sqlite_at_head(tmp_path / "hot.db")
    out = _run(tmp_path, url, {"enabled": False})
    warned = [line for line in out.splitlines() if "WARNING" in line and "lifecycle.enabled: false" in line]
    assert warned, out
    assert "only on the containers that sent events" in warned[0], warned[0]
    code, doc = observed(url, BOTH, NEVER)
    assert (code, doc["answer"]) == (1, "not_observed"), doc
    assert doc["coverage"]["posture"]["highest"] == "EbpfDeep"


def _containers_known(cluster: Cluster) -> dict[str, Any]:
    on = cluster.stored(r.OBSERVATION_NODES, x.NODE) or {}
    for c in (on.get("status") or {}).get("conditions") or ():
        if c.get("type") == "ContainersKnown":
            return dict(c)
    return {}


async def test_the_observation_node_readyz_and_metrics_say_why(tmp_path: Path, sqlite_at_head: Any) -> None:
    export = tmp_path / "tetragon.log"
    await asyncio.to_thread(export.write_bytes, b"")
    await asyncio.to_thread((tmp_path / "kube").mkdir)
    async with Cluster(tmp_path / "kube") as cluster:
        await cluster.create(obj("v1", "Node", x.NODE))
        cfg, port = h.write_config(
            tmp_path,
            **x.conf(sqlite_at_head(tmp_path / "hot.db"), str(tmp_path / "spool.jsonl"), export),
            observationNode={"enabled": True, "heartbeatSeconds": 1, "kubeconfig": str(cluster.kubeconfig)},
            lifecycle=_absent(tmp_path),
        )
        proc = h.start_agent(cfg)
        try:
            await h.wait_for(lambda: bool(_containers_known(cluster)), what="ContainersKnown", timeout=60)
            cond = _containers_known(cluster)
            assert (cond["status"], cond["reason"]) == ("False", "NoRuntimeSocket"), cond
            assert "ActiveTracing" in cond["message"] and "containerdAddress" in cond["message"], cond
            # The status is written after the HTTP endpoints started (agent/runner.py).
            assert (await asyncio.to_thread(x.readyz, port))[1]["lifecycle"] == "no_runtime_socket"
            m = await asyncio.to_thread(h.scrape, port)
            assert h.metric(m, "stellaops_runtime_lifecycle_state", state="no_runtime_socket") == 1
            assert h.metric(m, "stellaops_runtime_lifecycle_state", state="in_sync") == 0
            code, out = await x.stop(proc)
        finally:
            x.kill_all([proc])
    assert code == 0, out
