"""An agent whose clock is skewed from the operator's: staleness and rollouts do not depend on it.

The operator judged a node stale by comparing its agent's ``heartbeatTime``
(the agent's clock) with its own clock. An agent clock ten minutes behind
made a working node stale for good: its policies never counted it and its
Node lost its posture ceiling. An agent clock ten minutes ahead kept a dead
agent's last report fresh for ten minutes more: its policies stayed Ready
on a node nobody watched. Staleness is now measured from when the operator
saw each heartbeat arrive (controller/heartbeats.py), and a node counts for
a policy by the object version it names (controller/loaded_version.py).

The real agent writer runs with its clock shifted (its ``heartbeatTime``
stamps), against kmock and a replay server playing Tetragon.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.agent import node_status
from stellaops_runtime.agent.node_status import ObservationNodeWriter
from stellaops_runtime.contracts.config import ObservationNodeConfig, TetragonConfig
from stellaops_runtime.contracts.crds import API_VERSION, FEATURE_LABEL_PREFIX, POLICY_KIND
from stellaops_runtime.kube import resources as r
from stellaops_runtime.replay.server import PolicyStatus, ReplayServer
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.test_operator_policies import condition

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS, NODE, TP = "shop", "node-s", "stellaops-web"
SPEC: dict[str, Any] = {
    "podSelector": {"matchLabels": {"app": "web"}},
    "maxLevel": "ActiveTracing",
    "syscalls": ["execve"],
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        await c.create(obj("v1", "Node", NODE))
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tetragon() -> AsyncIterator[ReplayServer]:
    srv = ReplayServer([], policies=[], version="v1.7.0")
    await srv.start("127.0.0.1:0")
    yield srv
    await srv.stop(grace=0)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    config = fast_config(
        cluster, stale_after_seconds=4.0, rollout_refresh_seconds=0.5, tetragon_unreachable_seconds=2.0
    )
    async with OperatorRun(cluster, config) as op:
        await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace=NS, spec=SPEC))
        await wait_for(lambda: cluster.stored(r.TRACING_POLICIES_NAMESPACED, TP, NS), what="rendered")
        await op.settle()
        yield op


class _Skewed(datetime):
    skew = timedelta(0)

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        return datetime.now(tz) + cls.skew


@contextlib.asynccontextmanager
async def _agent(cluster: Cluster, tetragon: ReplayServer | str, skew: timedelta) -> AsyncIterator[None]:
    """The agent's ObservationNode writer, heart-beating every second by a clock off by ``skew``."""
    address = tetragon if isinstance(tetragon, str) else tetragon.address
    assert address
    _Skewed.skew = skew
    w = ObservationNodeWriter(
        node_name=NODE,
        config=ObservationNodeConfig(enabled=True, heartbeatSeconds=1, kubeconfig=str(cluster.kubeconfig)),
        tetragon=TetragonConfig(address=address, timeoutSeconds=1),
        poll_seconds=0.2,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(w.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task


def _loaded(cluster: Cluster, tetragon: ReplayServer) -> None:
    meta = (cluster.stored(r.TRACING_POLICIES_NAMESPACED, TP, NS) or {})["metadata"]
    info = (
        f"{TP} (object:{meta['generation']}/{meta['uid']}) (type:TracingPolicyNamespaced/cilium.io/v1alpha1)"
    )
    tetragon.policies = [PolicyStatus(name=TP, namespace=NS, message=info)]


def _policy(cluster: Cluster) -> tuple[str, int, int]:
    """(the True condition, nodesRunning, nodesStale) of policy web."""
    pol = cluster.stored(r.OBSERVATION_POLICIES, "web", NS) or {}
    rollout = (pol.get("status") or {}).get("rollout") or {}
    true = next(
        (t for t in ("Ready", "Progressing", "Degraded") if condition(pol, t).get("status") == "True"), ""
    )
    return true, int(rollout.get("nodesRunning") or 0), int(rollout.get("nodesStale") or 0)


def _ceiling(cluster: Cluster) -> str | None:
    labels = ((cluster.stored(r.NODES, NODE) or {}).get("metadata") or {}).get("labels") or {}
    return labels.get(FEATURE_LABEL_PREFIX + "max-posture")


async def test_an_agent_clock_behind_still_counts_its_node(
    cluster: Cluster, tetragon: ReplayServer, operator: OperatorRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node_status, "datetime", _Skewed)
    _loaded(cluster, tetragon)
    async with _agent(cluster, tetragon, -timedelta(minutes=10)):
        await wait_for(lambda: _policy(cluster) == ("Ready", 1, 0), what="the policy Ready on the node")
        assert _ceiling(cluster) not in (None, "None")
        # Heartbeats go on (each 10 minutes old by the operator's clock): the node stays fresh.
        mark = cluster.mark()
        await wait_for(lambda: _beats(cluster, mark) >= 6, what="six more heartbeats (past stale_after)")
        assert _policy(cluster) == ("Ready", 1, 0)


async def test_a_dead_agent_with_a_clock_ahead_goes_stale(
    cluster: Cluster, tetragon: ReplayServer, operator: OperatorRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node_status, "datetime", _Skewed)
    _loaded(cluster, tetragon)
    async with _agent(cluster, tetragon, timedelta(minutes=10)):
        mark = cluster.mark()
        await wait_for(lambda: _beats(cluster, mark) >= 2, what="heartbeats from the future")
        await wait_for(lambda: _policy(cluster) == ("Ready", 1, 0), what="the policy Ready on the node")
    # The agent is gone; its last heartbeat is stamped ten minutes ahead of the operator's clock.
    await wait_for(lambda: _policy(cluster)[1:] == (0, 1), limit_s=60, what="the node stale")
    assert _policy(cluster)[0] != "Ready"
    await wait_for(lambda: _ceiling(cluster) == "None", limit_s=60, what="the Node's ceiling label None")


async def test_tetragon_unreachable_behind_an_agent_clock_ahead_still_turns_degraded(
    cluster: Cluster, operator: OperatorRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent says since when it cannot reach Tetragon by its clock, a day ahead: Degraded after
    ``tetragon_unreachable_seconds`` (2 s here) all the same, not a day later."""
    monkeypatch.setattr(node_status, "datetime", _Skewed)
    ahead = timedelta(days=1)
    monkeypatch.setattr(
        node_status, "now_rfc3339", lambda: (datetime.now(UTC) + ahead).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    async with _agent(cluster, "127.0.0.1:1", ahead):  # nothing listens there
        await wait_for(lambda: _policy(cluster)[0] == "Progressing", what="the policy waiting on the node")
        await wait_for(
            lambda: _policy(cluster)[0] == "Degraded", limit_s=60, what="Degraded: Tetragon unreachable"
        )
        pol = cluster.stored(r.OBSERVATION_POLICIES, "web", NS) or {}
        assert condition(pol, "Degraded")["reason"] == "TetragonUnreachable"


def _beats(cluster: Cluster, mark: int) -> int:
    """The agent's status writes since ``mark``."""
    return sum(
        1
        for q in cluster.requests()[mark:]
        if q.method.value == "PATCH"
        and q.url.path.endswith(f"/observationnodes/{NODE}/status")
        and q.headers.get("User-Agent", "").startswith("stellaops-runtime-agent")
    )
