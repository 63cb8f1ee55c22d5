"""A RuntimeObserver says when its agents cannot back "not observed" (controller/node_backing.py).

Through the real operator (kopf) against kmock, with ObservationNodes whose
status is built by the agent's own ``build_status`` (every ``ContainersKnown``
state; ``ExportPositionRecorded`` of a watch record that cannot be written).
Argo CD and Flux judge an Application by the objects in git (the
RuntimeObserver, the policies), not by ObservationNodes: a fleet whose agents
find no runtime socket must not show Healthy. Each status the operator writes
is also run through the shipped Argo CD health script (tests/argocd_lua.py),
Flux's healthCheckExprs and kstatus (tests/unit/test_kstatus.py), and checked
against the CRD schema. The observer timer is off (``fast_config``): only the
ObservationNode's watch event can bring the change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from argocd_lua import health

from stellaops_runtime.agent.capabilities import Capabilities, TetragonInfo
from stellaops_runtime.agent.observation_status import build_status, export_position
from stellaops_runtime.contracts.crds import API_VERSION, NODE_KIND, OBSERVER_KIND
from stellaops_runtime.controller.render_agent import agent_resource_name
from stellaops_runtime.kube import resources as r
from tests.crd_schema import errors, load_crd, validator_for
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.test_operator_policies import condition
from tests.unit.test_kstatus import flux_health, kstatus

pytestmark = pytest.mark.asyncio(loop_scope="module")

BACKING_CONDITION = "NotObservedBacked"  # docs/operator.md names it: a contract, not an import

NS, NAME = "stellaops-system", "fleet"
NODES = ("node-a", "node-b")
SPEC: dict[str, Any] = {
    "agentNamespace": NS,
    "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
    "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
}
UP = TetragonInfo(address="unix:///var/run/tetragon/tetragon.sock", reachable=True, version="v1.7.0")
CAPS = Capabilities(
    kernel_version="6.1.0-18-amd64", btf=True, bpf_permitted=False, tracepoints=True, uprobes=True,
    kprobes=True, usdt=True, ring_buffer=True, tetragon=UP,
)  # fmt: skip
HELD = SimpleNamespace(
    enabled=True, path="/var/lib/stellaops/spool.alive", unrecorded=True,
    export=SimpleNamespace(positions=object(), held=3),
)  # fmt: skip
OBSERVER_CRD = load_crd(Path(__file__).resolve().parents[2] / "manifests" / "crds" / "runtimeobservers.yaml")


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_status(containers: str, *, held: bool = False, age: float = 0.0) -> dict[str, Any]:
    """What the node's agent writes (its heartbeat ``age`` seconds old)."""
    now = datetime.now(UTC) - timedelta(seconds=age)
    st = build_status(
        capabilities=CAPS, tetragon=UP, source="tetragon", policies=[], existing_conditions=None,
        now=_stamp(now), containers=containers, export_position=export_position(HELD) if held else None,
    )  # fmt: skip
    return st | {"heartbeatTime": _stamp(now)}


async def report(cluster: Cluster, node: str, containers: str, *, held: bool = False) -> None:
    await cluster.patch(
        r.OBSERVATION_NODES, node, {"status": node_status(containers, held=held)}, status=True
    )


def observer(cluster: Cluster) -> dict[str, Any]:
    got = cluster.stored(r.RUNTIME_OBSERVERS, NAME)
    assert got is not None
    assert errors(validator_for(OBSERVER_CRD), got) == []
    return got


def verdicts(body: dict[str, Any]) -> tuple[str, str, str]:
    """(Argo CD health, Flux healthCheckExprs, kstatus) of the RuntimeObserver the operator wrote."""
    return health(OBSERVER_KIND, body)["status"], flux_health(OBSERVER_KIND, body), kstatus(body)


async def until(cluster: Cluster, kind: str, status: str, message: str = "") -> dict[str, Any]:
    """The observer once its ``kind`` condition has ``status`` (and its message starts with ``message``)."""

    def check() -> dict[str, Any] | None:
        body = cluster.stored(r.RUNTIME_OBSERVERS, NAME) or {}
        c = next((c for c in (body.get("status") or {}).get("conditions") or () if c["type"] == kind), None)
        ok = c is not None and c["status"] == status and str(c.get("message", "")).startswith(message)
        return body if ok else None

    return await wait_for(check, what=f"{kind} {status} {message}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    async with OperatorRun(cluster, fast_config(cluster)) as op:
        await cluster.create(obj(API_VERSION, OBSERVER_KIND, NAME, spec=SPEC))
        await op.settle()
        ds = cluster.stored(r.DAEMONSETS, agent_resource_name(NAME), NS) or {}
        ready = {"observedGeneration": ds["metadata"]["generation"], "desiredNumberScheduled": 2,
                 "numberReady": 2, "updatedNumberScheduled": 2, "numberAvailable": 2}  # fmt: skip
        await cluster.patch(
            r.DAEMONSETS, agent_resource_name(NAME), {"status": ready}, namespace=NS, status=True
        )
        await op.settle()
        yield op


async def test_no_node_report_yet_is_unknown_and_the_agents_ready(
    cluster: Cluster, operator: OperatorRun
) -> None:
    body = await until(cluster, "Ready", "True")
    backing = condition(observer(cluster), BACKING_CONDITION)
    assert (backing["status"], backing["reason"]) == ("Unknown", "NoNodeReports")
    assert verdicts(body) == ("Healthy", "Current", "Current")


async def test_every_agent_in_sync_is_backed(cluster: Cluster, operator: OperatorRun) -> None:
    for node in NODES:
        await cluster.create(obj(API_VERSION, NODE_KIND, node, spec={"nodeName": node}))
        await report(cluster, node, "in_sync")
    body = await until(cluster, BACKING_CONDITION, "True", "2 of 2 fresh node(s)")  # not node-a's alone
    assert condition(body, BACKING_CONDITION)["reason"] == "AgentsBackNotObserved"
    assert condition(body, "Ready")["status"] == "True"
    assert verdicts(observer(cluster)) == ("Healthy", "Current", "Current")


async def test_a_node_without_a_runtime_socket_degrades_the_observer(
    cluster: Cluster, operator: OperatorRun
) -> None:
    await report(cluster, "node-a", "no_runtime_socket")
    body = await until(cluster, "Degraded", "True")
    degraded, backing = condition(body, "Degraded"), condition(body, BACKING_CONDITION)
    assert (degraded["reason"], backing["status"], backing["reason"]) == (
        "NoRuntimeSocket",
        "False",
        "NoRuntimeSocket",
    )
    for text in (
        "1 of 2 fresh node(s) cannot back 'not observed'",
        "ContainersKnown NoRuntimeSocket on 1 (node-a)",
        "set spec.containerRuntime",
    ):
        assert text in backing["message"], backing["message"]
    assert degraded["message"].startswith("2/2 agents ready; 1 of 2 fresh node(s)")
    assert condition(body, "Ready")["status"] == "False"
    argo = health(OBSERVER_KIND, observer(cluster))
    assert argo["message"].startswith("NoRuntimeSocket: 2/2 agents ready; ")
    assert verdicts(observer(cluster)) == ("Degraded", "Failed", "Current")  # kstatus reads Stalled only


async def test_nothing_changed_writes_nothing(cluster: Cluster, operator: OperatorRun) -> None:
    await operator.settle()
    mark = cluster.mark()
    operator.call(operator.reconciler.resync)
    await report(cluster, "node-b", "in_sync")  # a heartbeat only (the test's own write)
    await operator.settle()
    assert cluster.writes(mark) == []


async def test_registry_not_in_sync_is_progressing_not_degraded(
    cluster: Cluster, operator: OperatorRun
) -> None:
    await report(cluster, "node-a", "not_in_sync")  # the agent (re)started: it retries by itself
    body = await until(cluster, "Progressing", "True")
    assert condition(body, "Progressing")["reason"] == "RegistryNotInSync"
    assert condition(body, "Degraded")["status"] == "False"
    assert "it retries by itself" in condition(body, BACKING_CONDITION)["message"]
    assert verdicts(observer(cluster)) == ("Progressing", "InProgress", "Current")


async def test_the_worst_reason_wins_and_each_is_named(cluster: Cluster, operator: OperatorRun) -> None:
    await report(cluster, "node-b", "in_sync", held=True)  # its watch record cannot be written
    body = await until(cluster, "Degraded", "True")
    backing = condition(body, BACKING_CONDITION)
    assert backing["reason"] == condition(body, "Degraded")["reason"] == "WatchRecordUnwritable"
    message = backing["message"]
    assert message.startswith("2 of 2 fresh node(s)")
    assert message.index("ExportPositionRecorded WatchRecordUnwritable on 1 (node-b)") < message.index(
        "ContainersKnown RegistryNotInSync on 1 (node-a)"
    )
    assert verdicts(observer(cluster)) == ("Degraded", "Failed", "Current")


async def test_a_stale_node_is_not_counted_and_fixed_nodes_are_ready(
    cluster: Cluster, operator: OperatorRun
) -> None:
    # an ObservationNode whose agent is gone (heartbeat an hour old) says nothing about now
    await cluster.create(obj(API_VERSION, NODE_KIND, "node-old", spec={"nodeName": "node-old"}))
    old = node_status("no_runtime_socket", age=3600)
    await cluster.patch(r.OBSERVATION_NODES, "node-old", {"status": old}, status=True)
    for node in NODES:
        await report(cluster, node, "in_sync")
    body = await until(cluster, "Ready", "True")
    backing = condition(body, BACKING_CONDITION)
    assert (backing["status"], backing["message"][:22]) == ("True", "2 of 2 fresh node(s): ")
    assert verdicts(observer(cluster)) == ("Healthy", "Current", "Current")


async def test_an_invalid_spec_keeps_the_fold_current(cluster: Cluster, operator: OperatorRun) -> None:
    """Stalled (the agents keep their last valid configuration, and still run): what they can back
    is still said, not left as it was before the spec went wrong."""
    await cluster.patch(r.RUNTIME_OBSERVERS, NAME, {"spec": {"privacy": {"extraPatterns": ["("]}}})
    body = await until(cluster, "Stalled", "True")
    assert condition(body, BACKING_CONDITION)["status"] == "True"
    await report(cluster, "node-a", "off")
    body = await until(cluster, BACKING_CONDITION, "False")
    assert condition(body, BACKING_CONDITION)["reason"] == "LifecycleDisabled"
    assert condition(body, "Stalled")["status"] == "True"  # the invalid spec still decides the state
    assert verdicts(observer(cluster))[:2] == ("Degraded", "Failed")
    await cluster.patch(r.RUNTIME_OBSERVERS, NAME, {"spec": {"privacy": {"extraPatterns": None}}})
    body = await until(cluster, "Degraded", "True")
    assert condition(body, "Degraded")["reason"] == "LifecycleDisabled"
    await report(cluster, "node-a", "in_sync")
    await until(cluster, "Ready", "True")


async def _ds_ready(cluster: Cluster, operator: OperatorRun, agents: int) -> None:
    await operator.settle()
    ds = cluster.stored(r.DAEMONSETS, agent_resource_name(NAME), NS) or {}
    ready = {"observedGeneration": ds["metadata"]["generation"], "desiredNumberScheduled": agents,
             "numberReady": agents, "updatedNumberScheduled": agents, "numberAvailable": agents}  # fmt: skip
    await cluster.patch(r.DAEMONSETS, agent_resource_name(NAME), {"status": ready}, namespace=NS, status=True)


async def test_a_node_its_agents_do_not_run_on_is_not_its_fault(
    cluster: Cluster, operator: OperatorRun
) -> None:
    """With several RuntimeObservers (node pools), a node outside this one's spec.agent.nodeSelector
    runs another's agent: telling this one to set its spec.containerRuntime would be wrong."""
    await cluster.create(obj("v1", "Node", "node-a", labels={"pool": "general"}))
    await cluster.create(obj("v1", "Node", "node-b", labels={"pool": "k3s"}))
    await cluster.patch(r.RUNTIME_OBSERVERS, NAME, {"spec": {"agent": {"nodeSelector": {"pool": "general"}}}})
    await _ds_ready(cluster, operator, 1)
    await report(cluster, "node-b", "no_runtime_socket")  # the k3s pool's observer's node
    await report(cluster, "node-a", "in_sync")

    def only_its_node() -> dict[str, Any] | None:
        body = cluster.stored(r.RUNTIME_OBSERVERS, NAME) or {}
        kinds = {c["type"]: c for c in (body.get("status") or {}).get("conditions") or ()}
        folded = kinds.get(BACKING_CONDITION, {}).get("message", "").startswith("1 of 1 fresh node(s)")
        return body if folded and kinds.get("Ready", {}).get("status") == "True" else None

    try:
        body = await wait_for(only_its_node, what="the fold of node-a alone, Ready")
    except TimeoutError:
        raise AssertionError(observer(cluster)["status"]["conditions"]) from None
    assert condition(body, BACKING_CONDITION)["status"] == "True"
    # without a selector its agents run on every node: node-b is its own again
    await cluster.patch(r.RUNTIME_OBSERVERS, NAME, {"spec": {"agent": {"nodeSelector": None}}})
    await _ds_ready(cluster, operator, 2)
    body = await until(cluster, "Degraded", "True")
    assert "ContainersKnown NoRuntimeSocket on 1 (node-b)" in condition(body, BACKING_CONDITION)["message"]


async def _ds_status(cluster: Cluster, operator: OperatorRun, *, ready: int, updated: int) -> None:
    await operator.settle()
    ds = cluster.stored(r.DAEMONSETS, agent_resource_name(NAME), NS) or {}
    st = {"observedGeneration": ds["metadata"]["generation"], "desiredNumberScheduled": 2,
          "numberReady": ready, "updatedNumberScheduled": updated, "numberAvailable": ready}  # fmt: skip
    await cluster.patch(r.DAEMONSETS, agent_resource_name(NAME), {"status": st}, namespace=NS, status=True)


async def test_an_agent_holding_what_it_read_is_degraded_though_not_ready(
    cluster: Cluster, operator: OperatorRun
) -> None:
    """An agent whose watch record cannot be written answers /readyz 503 (agent/runner.py readiness),
    so its DaemonSet never reads every agent ready: waiting for that left the observer Progressing
    (RollingOut) for good while the node stored nothing. It is Degraded, in a finished rollout and in
    one the unready agent holds up alike."""
    await report(cluster, "node-a", "in_sync")
    await report(cluster, "node-b", "in_sync", held=True)
    await _ds_status(cluster, operator, ready=1, updated=2)  # node-b's agent is not ready
    body = await until(cluster, "Degraded", "True", "1/2 agents ready; 1 of 2 fresh node(s)")
    assert condition(body, "Degraded")["reason"] == "WatchRecordUnwritable"
    assert (
        "ExportPositionRecorded WatchRecordUnwritable on 1 (node-b)" in condition(body, "Degraded")["message"]
    )
    assert verdicts(observer(cluster)) == ("Degraded", "Failed", "Current")
    await _ds_status(cluster, operator, ready=0, updated=1)  # a rollout held up by the unready agent
    body = await until(cluster, "Degraded", "True", "0/2 agents ready; 1 of 2 fresh node(s)")
    assert condition(body, "Degraded")["reason"] == "WatchRecordUnwritable"
    # a rollout whose agents are merely not ready yet is Progressing, as before
    await report(cluster, "node-b", "in_sync")
    body = await until(cluster, "Progressing", "True", "0/2 agents ready")
    assert condition(body, "Progressing")["reason"] == "RollingOut"
    await _ds_status(cluster, operator, ready=2, updated=2)
    await until(cluster, "Ready", "True")
