"""A policy is Ready only when every node reports the version of its Tetragon objects the operator wrote.

Tetragon's ``ListTracingPolicies`` lists a policy under its name whatever
its version. The operator used to count a node's report for a new spec
version when the report was made after the write (its ``heartbeatTime``
against the write's time). A report made after the write but before
Tetragon reloaded the object (the agent polled in between: Tetragon's
watch lags, a reload takes seconds) still listed the old version ENABLED,
and the policy turned Ready on the new generation with nothing loaded. And
the comparison was of two clocks: an agent whose clock runs ahead of the
operator's made every old report look new.

Tetragon's ``info`` names the object and generation it loaded; the agent
now reports them (``objectUid``/``objectGeneration``) and the operator counts
a node only when they are those of the object it wrote. Here the real
operator runs against kmock, the real agent writer reports what a replay
server playing Tetragon lists, and the test says when "Tetragon" reloads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.agent.node_status import ObservationNodeWriter
from stellaops_runtime.contracts.config import ObservationNodeConfig, TetragonConfig
from stellaops_runtime.contracts.crds import API_VERSION, POLICY_KIND
from stellaops_runtime.kube import resources as r
from stellaops_runtime.replay.server import PolicyStatus, ReplayServer
from tests.crd_schema import errors, load_crd, validator_for
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.test_operator_policies import condition

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS, NODE, TP = "shop", "node-a", "stellaops-web"
TETRAGON_API = "cilium.io/v1alpha1"
CRD = Path(__file__).resolve().parents[2] / "manifests" / "crds" / "observationnodes.yaml"
SPEC: dict[str, Any] = {"podSelector": {"matchLabels": {"app": "web"}}, "maxLevel": "ActiveTracing"}


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
    async with OperatorRun(cluster, fast_config(cluster)) as op:
        await op.settle()
        yield op


def _writer(cluster: Cluster, tetragon: ReplayServer) -> ObservationNodeWriter:
    assert tetragon.address
    return ObservationNodeWriter(
        node_name=NODE,
        config=ObservationNodeConfig(enabled=True, heartbeatSeconds=1, kubeconfig=str(cluster.kubeconfig)),
        tetragon=TetragonConfig(address=tetragon.address, timeoutSeconds=1),
    )


async def _report_now(w: ObservationNodeWriter) -> None:
    """The agent's next report (a changed list is written at once, the same one when the heartbeat is due)."""
    await wait_for(w.tick, limit_s=60, interval=0.05, what="the agent's report")


def _tracing_policy(cluster: Cluster) -> dict[str, Any]:
    tp = cluster.stored(r.TRACING_POLICIES_NAMESPACED, TP, NS)
    assert tp is not None
    return tp


def _load(tetragon: ReplayServer, tp: dict[str, Any], state: str = "ENABLED") -> None:
    """Tetragon loads this version of the object (its info as Tetragon's TpInfo writes it)."""
    meta = tp["metadata"]
    info = (
        f"{TP} (object:{meta['generation']}/{meta['uid']}) (type:TracingPolicyNamespaced/cilium.io/v1alpha1)"
    )
    tetragon.policies = [PolicyStatus(name=TP, namespace=NS, state=state, message=info)]


def _state(cluster: Cluster) -> tuple[int, str, str]:
    """(observedGeneration, the True condition's type, its reason) of policy web."""
    pol = cluster.stored(r.OBSERVATION_POLICIES, "web", NS) or {}
    for t in ("Ready", "Progressing", "Degraded", "Stalled"):
        c = condition(pol, t)
        if c.get("status") == "True":
            return int((pol.get("status") or {}).get("observedGeneration") or 0), t, str(c.get("reason"))
    return 0, "", ""


async def _spec_change(cluster: Cluster, operator: OperatorRun, syscalls: list[str]) -> dict[str, Any]:
    await cluster.patch(r.OBSERVATION_POLICIES, "web", {"spec": {"syscalls": syscalls}}, namespace=NS)
    await wait_for(
        lambda: all(s in str(_tracing_policy(cluster)["spec"]) for s in syscalls),
        what="the new spec rendered",
    )
    await operator.settle()
    return _tracing_policy(cluster)


async def test_a_report_made_before_tetragon_reloaded_does_not_make_the_new_spec_ready(
    cluster: Cluster, tetragon: ReplayServer, operator: OperatorRun
) -> None:
    w = _writer(cluster, tetragon)
    try:
        await cluster.create(
            obj(API_VERSION, POLICY_KIND, "web", namespace=NS, spec=SPEC | {"syscalls": ["execve"]})
        )
        await wait_for(lambda: cluster.stored(r.TRACING_POLICIES_NAMESPACED, TP, NS), what="rendered")
        await operator.settle()
        _load(tetragon, _tracing_policy(cluster))
        await _report_now(w)
        await wait_for(lambda: _state(cluster) == (1, "Ready", "RolledOut"), what="generation 1 ready")
        node = cluster.stored(r.OBSERVATION_NODES, NODE) or {}
        (entry,) = node["status"]["policies"]
        first = _tracing_policy(cluster)["metadata"]
        assert (entry["objectUid"], entry["objectGeneration"]) == (first["uid"], first["generation"])
        assert errors(validator_for(load_crd(CRD)), node) == []

        # The spec changes; the agent reports after the write, Tetragon has not reloaded yet.
        written = await _spec_change(cluster, operator, ["execve", "connect"])
        assert written["metadata"]["generation"] == first["generation"] + 1
        await wait_for(lambda: datetime.now(UTC) >= _written_at(written) + timedelta(seconds=1), what="clock")
        await _report_now(w)
        await operator.settle()
        assert _state(cluster) == (2, "Progressing", "RollingOut")
        rollout = (cluster.stored(r.OBSERVATION_POLICIES, "web", NS) or {})["status"]["rollout"]
        assert (rollout["nodesRunning"], rollout["nodesPending"]) == (0, 1)

        # Tetragon reloads the new version: the next report makes it Ready.
        _load(tetragon, written)
        await _report_now(w)
        await wait_for(lambda: _state(cluster) == (2, "Ready", "RolledOut"), what="generation 2 ready")
    finally:
        await w.run(_set())


async def test_a_skewed_agent_clock_neither_releases_nor_holds_a_rollout(
    cluster: Cluster, tetragon: ReplayServer, operator: OperatorRun
) -> None:
    """Reports stamped by an agent clock 10 minutes ahead, then 60 s behind, of the operator's."""
    loaded = _tracing_policy(cluster)
    entry = {
        "name": TP,
        "namespace": NS,
        "state": "ENABLED",
        "objectUid": loaded["metadata"]["uid"],
        "objectGeneration": loaded["metadata"]["generation"],
    }
    written = await _spec_change(cluster, operator, ["openat"])

    # Ahead: the old version's report looks newer than the write; it is not about the new version.
    await _report(cluster, datetime.now(UTC) + timedelta(minutes=10), entry)
    await operator.settle()
    assert _state(cluster) == (3, "Progressing", "RollingOut")

    # Behind: Tetragon loaded the new version; the report looks older than the write, it still counts.
    entry |= {"objectGeneration": written["metadata"]["generation"]}
    await _report(cluster, datetime.now(UTC) - timedelta(seconds=60), entry)
    await wait_for(lambda: _state(cluster) == (3, "Ready", "RolledOut"), what="generation 3 ready")


async def _report(cluster: Cluster, beat: datetime, entry: dict[str, Any]) -> None:
    status = {
        "heartbeatTime": beat.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": "tetragon",
        "maxPosture": "FullInstrumentation",
        "capabilities": {"tetragon": {"reachable": True, "address": "unix:///t.sock", "version": "v1.7.0"}},
        "policies": [entry],
    }
    await cluster.patch(r.OBSERVATION_NODES, NODE, {"status": status}, status=True)


def _written_at(tp: dict[str, Any]) -> datetime:
    stamp = tp["metadata"]["annotations"]["stellaops.io/spec-written-at"]
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _set() -> asyncio.Event:
    e = asyncio.Event()
    e.set()
    return e
