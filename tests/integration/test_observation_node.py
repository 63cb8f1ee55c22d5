"""The agent's ObservationNode writer against kmock, with Tetragon played by the replay server.

The writer creates the node's ObservationNode (owned by the Node), records
capabilities and ListTracingPolicies' load states, writes only on change or
when the heartbeat is due, survives every failure, and the operator folds
what it wrote into a policy's rollout status. Capability detection runs on
this machine's real kernel (test_capabilities.py covers detection itself).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from stellaops_runtime.agent.capabilities import detect_kernel
from stellaops_runtime.agent.node_status import ObservationNodeWriter
from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import ObservationNodeConfig, TetragonConfig, parse_config
from stellaops_runtime.contracts.crds import API_VERSION, NODE_KIND, POLICY_KIND
from stellaops_runtime.kube import resources as r
from stellaops_runtime.replay.server import HookReport, PolicyStatus, ReplayServer
from tests.crd_schema import errors, load_crd, validator_for
from tests.integration.kubeharness import Cluster, OperatorRun, http_get, obj, wait_for
from tests.integration.test_operator_policies import condition
from tests.ports import free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")

REPO = Path(__file__).resolve().parents[2]
AGENT_UA = "stellaops-runtime-agent"


def agent_writes(cluster: Cluster, since: int) -> list[str]:
    return [
        f"{q.method.value} {q.url.path}"
        for q in cluster.requests()[since:]
        if q.method.value != "GET" and q.headers.get("User-Agent", "").startswith(AGENT_UA)
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", "shop"))
        for node in ("node-a", "node-b"):
            await c.create(obj("v1", "Node", node))
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tetragon_a() -> AsyncIterator[ReplayServer]:
    policies = [
        PolicyStatus(name="stellaops-web", namespace="shop", state="ENABLED"),
        PolicyStatus(name="broken", state="LOAD_ERROR", message="failed prog /sys/fs/bpf: invalid argument"),
    ]
    srv = ReplayServer([], policies=policies, version="v1.7.0")
    await srv.start("127.0.0.1:0")
    yield srv
    await srv.stop(grace=0)


def writer(
    cluster: Cluster, tetragon: ReplayServer | str, node: str = "node-a", heartbeat: float = 3600
) -> ObservationNodeWriter:
    address = tetragon if isinstance(tetragon, str) else tetragon.address
    assert address
    return ObservationNodeWriter(
        node_name=node,
        config=ObservationNodeConfig(
            enabled=True, heartbeatSeconds=heartbeat, kubeconfig=str(cluster.kubeconfig)
        ),
        tetragon=TetragonConfig(address=address, timeoutSeconds=1),
        poll_seconds=0.05,
    )


async def test_creates_the_observation_node_owned_by_the_node(
    cluster: Cluster, tetragon_a: ReplayServer
) -> None:
    w = writer(cluster, tetragon_a)
    try:
        assert await w.tick()
    finally:
        await w.run(_set_event())  # a stopped run only closes the client
    on = cluster.stored(r.OBSERVATION_NODES, "node-a")
    node = cluster.stored(r.NODES, "node-a")
    assert on is not None and node is not None
    assert on["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "node-a", "uid": node["metadata"]["uid"]}
    ]
    assert on["spec"] == {"nodeName": "node-a"}
    status = on["status"]
    kernel = detect_kernel()
    caps = status["capabilities"]
    assert caps["kernelVersion"] == kernel["kernel_version"]
    assert (caps["btf"], caps["uprobes"], caps["kprobes"], caps["usdt"]) == (
        kernel["btf"], kernel["uprobes"], kernel["kprobes"], kernel["usdt"],
    )  # fmt: skip
    assert caps["tetragon"] == {"reachable": True, "address": tetragon_a.address, "version": "v1.7.0"}
    assert status["source"] == "tetragon"
    assert status["heartbeatTime"]
    by_name = {p["name"]: p for p in status["policies"]}
    assert by_name["stellaops-web"]["state"] == "ENABLED" and by_name["stellaops-web"]["namespace"] == "shop"
    assert by_name["broken"]["state"] == "LOAD_ERROR"
    assert by_name["broken"]["error"] == "failed prog /sys/fs/bpf: invalid argument"
    assert condition(on, "Ready")["status"] == "True"
    assert errors(validator_for(load_crd(REPO / "manifests" / "crds" / "observationnodes.yaml")), on) == []


async def first_seen_with_old_heartbeat(cluster: Cluster, name: str) -> None:
    """The ObservationNode deleted and created again with its status stamped 2020 (a new object)."""
    body = cluster.stored(r.OBSERVATION_NODES, name) or {}
    await cluster.delete(r.OBSERVATION_NODES, name)
    await cluster.create(obj(API_VERSION, NODE_KIND, name, spec=body["spec"]))
    status = {**body["status"], "heartbeatTime": "2020-01-01T00:00:00Z"}
    await cluster.patch(r.OBSERVATION_NODES, name, {"status": status}, status=True)


def _set_event() -> asyncio.Event:
    e = asyncio.Event()
    e.set()
    return e


async def test_writes_only_on_change_or_when_the_heartbeat_is_due(
    cluster: Cluster, tetragon_a: ReplayServer
) -> None:
    w = writer(cluster, tetragon_a, heartbeat=1.0)
    try:
        mark = cluster.mark()
        assert await w.tick()  # first status of this writer
        for _ in range(5):
            assert not await w.tick()  # nothing changed, heartbeat not due
        assert len(agent_writes(cluster, mark)) == 1
        await asyncio.sleep(1.05)
        assert await w.tick()  # heartbeat due
        assert w.stats.writes["heartbeat"] == 1
        tetragon_a.policies.append(PolicyStatus(name="new", state="LOADING"))
        try:
            assert await w.tick()  # a state changed
        finally:
            tetragon_a.policies.pop()
        assert w.stats.writes["changed"] == 2
    finally:
        await w.run(_set_event())


async def test_tetragon_down_is_recorded_not_fatal(cluster: Cluster) -> None:
    w = writer(cluster, "127.0.0.1:1", node="node-b")
    try:
        assert await w.tick()
    finally:
        await w.run(_set_event())
    on = cluster.stored(r.OBSERVATION_NODES, "node-b")
    assert on is not None
    assert on["status"]["capabilities"]["tetragon"]["reachable"] is False
    assert on["status"]["policies"] == []
    ready = condition(on, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "TetragonUnreachable"
    assert w.stats.errors["tetragon"] == 1


async def test_missing_node_and_deleted_object_are_retried(
    cluster: Cluster, tetragon_a: ReplayServer
) -> None:
    w = writer(cluster, tetragon_a, node="node-late")
    try:
        assert not await w.tick()
        assert w.stats.errors["node"] == 1
        assert cluster.stored(r.OBSERVATION_NODES, "node-late") is None
        await cluster.create(obj("v1", "Node", "node-late"))
        assert await w.tick()
        assert cluster.stored(r.OBSERVATION_NODES, "node-late") is not None
        await cluster.delete(r.OBSERVATION_NODES, "node-late")
        tetragon_a.version = "v1.7.1"  # a change, so the next poll writes and finds it gone
        try:
            assert not await w.tick()  # 404: noticed
            assert await w.tick()  # re-created
        finally:
            tetragon_a.version = "v1.7.0"
        assert cluster.stored(r.OBSERVATION_NODES, "node-late") is not None
        assert w.stats.errors["kubernetes"] == 1
    finally:
        await w.run(_set_event())
    await cluster.delete(r.OBSERVATION_NODES, "node-late")  # the rollout test counts nodes


async def test_no_credentials_is_counted(tmp_path: Path, tetragon_a: ReplayServer) -> None:
    w = ObservationNodeWriter(
        node_name="node-a",
        config=ObservationNodeConfig(enabled=True, kubeconfig=str(tmp_path / "missing.yaml")),
        tetragon=TetragonConfig(address=tetragon_a.address or "", timeoutSeconds=1),
    )
    assert not await w.tick()
    assert w.stats.errors["kubernetes"] == 1
    assert "missing.yaml" in w.stats.last_error


async def test_operator_folds_nodes_into_policy_rollout(cluster: Cluster, tetragon_a: ReplayServer) -> None:
    failing = ReplayServer(
        [],
        policies=[PolicyStatus(name="stellaops-web", namespace="shop", state="LOAD_ERROR", message="no BTF")],
    )
    await failing.start("127.0.0.1:0")
    try:
        async with OperatorRun(cluster) as op:
            spec = {
                "podSelector": {"matchLabels": {"app": "web"}},
                "maxLevel": "ActiveTracing",
                "syscalls": ["execve"],
            }
            await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace="shop", spec=spec))
            # The nodes report after the Tetragon object exists, as a real Tetragon can only list it
            # then (a report made before it was created says nothing of it: rollout.fold_rollout).
            await wait_for(
                lambda: cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-web", "shop"),
                what="the Tetragon object created",
            )
            for node, srv in (("node-a", tetragon_a), ("node-b", failing)):
                w = writer(cluster, srv, node=node)
                try:
                    await w.tick()
                finally:
                    await w.run(_set_event())

            def rollout() -> dict:
                pol = cluster.stored(r.OBSERVATION_POLICIES, "web", "shop") or {}
                return (pol.get("status") or {}).get("rollout") or {}

            await wait_for(lambda: rollout().get("nodesFailed") == 1, what="rollout folded")
            await op.settle()
            ro = rollout()
            assert (ro["nodesRunning"], ro["nodesFailed"]) == (1, 1)
            assert ro["failures"] == [
                {"node": "node-b", "policy": "shop/stellaops-web", "state": "LOAD_ERROR", "message": "no BTF"}
            ]
            pol = cluster.stored(r.OBSERVATION_POLICIES, "web", "shop")
            degraded = condition(pol, "Degraded")
            assert degraded["status"] == "True" and degraded["reason"] == "LoadFailed"
            assert "no BTF" in degraded["message"]
            # a node whose heartbeat is old when the operator first sees it is stale, whatever it
            # says (ObservationNodes restored from a backup; an agent gone before the operator
            # started). An agent that stops heart-beating: test_operator_clock_skew.py.
            await first_seen_with_old_heartbeat(cluster, "node-b")
            await wait_for(lambda: rollout().get("nodesStale") == 1, what="stale node folded")
            assert (rollout()["nodesFailed"], rollout()["failures"]) == (0, [])
            assert (
                condition(cluster.stored(r.OBSERVATION_POLICIES, "web", "shop"), "Ready")["status"] == "True"
            )
            labels = (cluster.stored(r.NODES, "node-a") or {})["metadata"]["labels"]
            assert labels["feature.stellaops.io/tetragon"] == "true"

            def tetragon_label(node: str) -> str | None:
                return (
                    ((cluster.stored(r.NODES, node) or {}).get("metadata") or {})
                    .get("labels", {})
                    .get("feature.stellaops.io/tetragon")
                )

            # node-b's ObservationNode was created again without a status, then given one: its labels
            # say "false" (nothing known) until the Node handler has seen the status, which is not
            # ordered with the rollout fold awaited above. Stale or not, it reports Tetragon reachable.
            await wait_for(lambda: tetragon_label("node-b") == "true", what="node-b's labels from its status")
            await op.settle()
            assert tetragon_label("node-b") == "true"
    finally:
        await failing.stop(grace=0)


async def test_partial_and_skipped_policies_are_reported_as_such(
    cluster: Cluster, tetragon_a: ReplayServer
) -> None:
    """PARTIALLY_ENABLED (with hook statuses) and SKIPPED, through the writer and the operator."""
    hooks = (
        HookReport("kprobes", 0, "__x64_sys_execve"),
        HookReport("kprobes", 1, "do_sys_missing", "CALL_NOT_FOUND"),
        HookReport("uprobes", 0, "/usr/lib/libssl.so.3", "DIGEST_REJECTED"),
    )
    partial = ReplayServer(
        [],
        policies=[
            PolicyStatus(name="stellaops-web", namespace="shop", state="PARTIALLY_ENABLED", hooks=hooks),
            PolicyStatus(name="elsewhere", state="SKIPPED"),
        ],
    )
    await partial.start("127.0.0.1:0")
    try:
        async with OperatorRun(cluster) as op:
            for node, srv in (("node-a", tetragon_a), ("node-b", partial)):
                w = writer(cluster, srv, node=node)
                try:
                    await w.tick()
                finally:
                    await w.run(_set_event())
            on = cluster.stored(r.OBSERVATION_NODES, "node-b") or {}
            by_name = {p["name"]: p for p in on["status"]["policies"]}
            assert by_name["elsewhere"]["state"] == "SKIPPED"
            web = by_name["stellaops-web"]
            assert (web["state"], web["hooksTotal"], web["hooksLoaded"]) == ("PARTIALLY_ENABLED", 3, 1)
            assert web["failedHooks"] == [
                {"section": "kprobes", "index": 1, "hook": "do_sys_missing", "state": "CALL_NOT_FOUND"},
                {
                    "section": "uprobes",
                    "index": 0,
                    "hook": "/usr/lib/libssl.so.3",
                    "state": "DIGEST_REJECTED",
                },
            ]
            crd = load_crd(REPO / "manifests" / "crds" / "observationnodes.yaml")
            assert errors(validator_for(crd), on) == []

            def rollout() -> dict:
                pol = cluster.stored(r.OBSERVATION_POLICIES, "web", "shop") or {}
                return (pol.get("status") or {}).get("rollout") or {}

            if cluster.stored(r.OBSERVATION_POLICIES, "web", "shop") is None:  # run on its own
                spec = {
                    "podSelector": {"matchLabels": {"app": "web"}},
                    "maxLevel": "ActiveTracing",
                    "syscalls": ["execve"],
                }
                await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace="shop", spec=spec))

            async def folded() -> bool:
                """node-b was judged stale by the operator before this one (the test above): its
                heartbeat label says so, and a report first seen by a restarted operator then counts
                as stale until the next one (controller/heartbeats.py), which its agent sends here."""
                if rollout().get("nodesPartial") == 1:
                    return True
                beat = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                await cluster.patch(
                    r.OBSERVATION_NODES, "node-b", {"status": {"heartbeatTime": beat}}, status=True
                )
                return False

            await wait_for(folded, interval=0.3, what="partial node folded")
            await op.settle()
            ro = rollout()
            assert (ro["nodesRunning"], ro["nodesPartial"], ro["nodesFailed"]) == (1, 1, 0)
            assert ro["failures"] == [
                {
                    "node": "node-b",
                    "policy": "shop/stellaops-web",
                    "state": "PARTIALLY_ENABLED",
                    "message": (
                        "1 of 3 hooks loaded: kprobes[1] do_sys_missing: CALL_NOT_FOUND; "
                        "uprobes[0] /usr/lib/libssl.so.3: DIGEST_REJECTED"
                    ),
                    "hooks": [
                        "kprobes[1] do_sys_missing: CALL_NOT_FOUND",
                        "uprobes[0] /usr/lib/libssl.so.3: DIGEST_REJECTED",
                    ],
                }
            ]
            pol = cluster.stored(r.OBSERVATION_POLICIES, "web", "shop")
            degraded = condition(pol, "Degraded")
            assert degraded["status"] == "True" and degraded["reason"] == "PartiallyLoaded"
            assert "do_sys_missing: CALL_NOT_FOUND" in degraded["message"]
            assert condition(pol, "Ready")["status"] == "False"
    finally:
        await partial.stop(grace=0)


async def test_agent_runs_the_writer_and_exports_its_counters(
    cluster: Cluster, tetragon_a: ReplayServer, tmp_path: Path
) -> None:
    config = parse_config(
        {
            "nodeName": "node-b",
            "tetragon": {"address": tetragon_a.address, "connectionTimeout": 1},
            "store": {"url": f"sqlite:///{tmp_path / 'hot.db'}"},
            "metrics": {"address": "127.0.0.1", "port": 0},
            "observationNode": {
                "enabled": True,
                "heartbeatSeconds": 1,
                "kubeconfig": str(cluster.kubeconfig),
            },
        }
    )
    agent = Agent(config)
    task = asyncio.create_task(agent.run())
    try:
        await wait_for(
            lambda: agent.node_status is not None and agent.node_status.stats.writes["changed"] >= 1,
            what="the agent wrote its ObservationNode",
        )
        on = cluster.stored(r.OBSERVATION_NODES, "node-b") or {}
        assert on["status"]["capabilities"]["tetragon"]["reachable"] is True
        status, text = await http_get(f"http://127.0.0.1:{agent.http_port}/metrics")
        assert status == 200
        assert 'stellaops_runtime_observation_node_writes_total{reason="changed"}' in text
    finally:
        agent.stop("test")
        assert await asyncio.wait_for(task, 30) == 0


async def test_reports_the_rollout_of_its_pod_template_from_the_downward_api(
    cluster: Cluster, tetragon_a: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``STELLA_AGENT_TEMPLATE`` (the pod's ``stellaops.io/agent-template``): written as
    ``agentTemplate``, kept by the CRD schema; one that is no such digest is not written."""
    crd = validator_for(load_crd(REPO / "manifests" / "crds" / "observationnodes.yaml"))
    for value, written in (("0123456789abcdef", "0123456789abcdef"), ("a" * 65, None), ("ab cd\n", None)):
        monkeypatch.setenv("STELLA_AGENT_TEMPLATE", value)
        await cluster.patch(r.OBSERVATION_NODES, "node-b", {"status": {"agentTemplate": None}}, status=True)
        w = writer(cluster, tetragon_a, node="node-b")
        try:
            assert await w.tick()
        finally:
            await w.run(_set_event())
        on = cluster.stored(r.OBSERVATION_NODES, "node-b") or {}
        assert on["status"].get("agentTemplate") == written
        assert errors(crd, on) == []


async def test_an_agent_with_no_template_takes_away_the_one_an_earlier_agent_wrote(
    cluster: Cluster, tetragon_a: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its status is a merge patch: an agent that names no rollout (run outside a RuntimeObserver's
    pod, or the env not a digest) after one that did left the old ``agentTemplate`` in place, and the
    operator read every later report as the old rollout's (its faults set aside, then Degraded
    AgentReportOutdated for good). It now writes the field away."""
    for value in ("0123456789abcdef", None, "0123456789abcdef", "not hex"):
        if value is None:
            monkeypatch.delenv("STELLA_AGENT_TEMPLATE", raising=False)
        else:
            monkeypatch.setenv("STELLA_AGENT_TEMPLATE", value)
        w = writer(cluster, tetragon_a, node="node-b")
        try:
            assert await w.tick()
        finally:
            await w.run(_set_event())
        on = cluster.stored(r.OBSERVATION_NODES, "node-b") or {}
        wanted = value if value == "0123456789abcdef" else None
        assert on["status"].get("agentTemplate") == wanted, value
    operator = " ".join((REPO / "docs" / "operator.md").read_text().split())
    assert "absent outside such a pod (an agent that names none takes away one an earlier agent" in operator


async def test_an_agent_on_a_node_made_again_under_its_name_does_not_take_the_old_nodes_conditions(
    cluster: Cluster,
) -> None:
    """A Node deleted and made again under its name (a machine reinstalled or replaced, same hostname)
    while the garbage collector has not yet removed the old Node's ObservationNode: the new node's agent
    takes that object over (its owner set to the new Node), and it kept the old node's conditions'
    ``lastTransitionTime``: a Tetragon unreachable on the old node since 2020 and not yet up on the new
    one (the agent started first) read "unreachable since 2020", so the operator, timing it by the
    agent's own account, turned the node's policies Degraded ``TetragonUnreachable`` at once for a node
    up for seconds. Conditions of another Node's object are not carried over."""
    await cluster.create(obj("v1", "Node", "node-r"))
    old = {"apiVersion": "v1", "kind": "Node", "name": "node-r", "uid": "uid-of-the-deleted-node"}
    made = obj(API_VERSION, NODE_KIND, "node-r", spec={"nodeName": "node-r"})
    made["metadata"]["ownerReferences"] = [old]
    await cluster.create(made)
    down_since = "2020-01-01T00:00:00Z"
    ready = {"type": "Ready", "status": "False", "reason": "TetragonUnreachable", "message": "x"}
    stale = {"conditions": [{**ready, "lastTransitionTime": down_since}], "heartbeatTime": down_since}
    await cluster.patch(r.OBSERVATION_NODES, "node-r", {"status": stale}, status=True)
    w = writer(cluster, f"127.0.0.1:{free_port()}", node="node-r")  # Tetragon not up yet there
    try:
        assert await w.tick()
    finally:
        await w.run(_set_event())
    on = cluster.stored(r.OBSERVATION_NODES, "node-r") or {}
    node = cluster.stored(r.NODES, "node-r") or {}
    assert [ref["uid"] for ref in on["metadata"]["ownerReferences"]] == [node["metadata"]["uid"]]
    assert condition(on, "Ready")["status"] == "False"
    assert condition(on, "Ready")["lastTransitionTime"] != down_since, "the old node's transition kept"
    await cluster.delete(r.OBSERVATION_NODES, "node-r")  # the rollout test counts nodes
