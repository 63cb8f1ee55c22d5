"""Issue 16 end to end on kmock: a node's posture is what its working source delivers, now.

The real agent-side ObservationNode writer talks to a Tetragon played by the
replay server (gRPC GetVersion, GetHealth, ListTracingPolicies); the real
operator (kopf and our handlers) reads what it writes. When Tetragon stops:

- the agent reports ``source: none`` and ``maxPosture: None`` (not
  ``source: tetragon`` beside ``reachable: false``);
- the Node's ``feature.stellaops.io/max-posture`` drops to None, whatever the
  kernel could do;
- pods drop to posture None and lose every level label, so no rendered
  Tetragon policy selects them;
- the policy turns Degraded with reason TetragonUnreachable, naming the node,
  once the node has been unreachable for ``tetragon_unreachable_seconds``.

When Tetragon comes back, all of it returns. With the agent's event stream
connected while Tetragon's API does not answer, the node is Passive.

Also here: level labels on pods at every level, and a namespace being
deleted, in which nothing is created again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.agent.capabilities import Capabilities, TetragonInfo
from stellaops_runtime.agent.node_status import ObservationNodeWriter
from stellaops_runtime.contracts.config import ObservationNodeConfig, TetragonConfig
from stellaops_runtime.contracts.crds import (
    API_VERSION,
    FEATURE_LABEL_PREFIX,
    OBSERVE_LEVEL_ANNOTATION,
    POLICY_KIND,
    POSTURE_ANNOTATION,
    POSTURE_REASON_ANNOTATION,
)
from stellaops_runtime.controller.posture import LEVEL_LABEL_KEYS
from stellaops_runtime.kube import resources as r
from stellaops_runtime.replay.server import PolicyStatus, ReplayServer
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.test_observation_node import first_seen_with_old_heartbeat
from tests.integration.test_operator_policies import condition

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS, NODE = "shop", "node-a"
SPEC = {
    "podSelector": {"matchLabels": {"app": "web"}},
    "maxLevel": "FullInstrumentation",
    "syscalls": ["execve"],
    "functions": [{"binaryPath": "/usr/bin/python3.11", "symbols": ["PyEval_EvalCode"]}],
    "stackTraces": {"kernel": True, "user": False},
}
TETRAGON_OBJECTS = ("stellaops-web", "stellaops-web-stacks", "stellaops-web-uprobes")
# pod -> (annotation value or None, posture with Tetragon up)
PODS: dict[str, tuple[str | None, str]] = {
    "p-none": ("none", "None"),
    "p-passive": ("passive", "Passive"),
    "p-active": ("active-tracing", "ActiveTracing"),
    "p-deep": ("EbpfDeep", "EbpfDeep"),
    "p-full": (None, "FullInstrumentation"),  # no annotation: the policy opts it in
}
LEVEL_KEYS = {
    "None": set(),
    "Passive": set(),
    "ActiveTracing": {"stellaops.io/observe"},
    "EbpfDeep": {"stellaops.io/observe", "stellaops.io/observe-deep"},
    "FullInstrumentation": set(LEVEL_LABEL_KEYS),
}


@dataclass
class Stream:
    """The agent's event source as the writer sees it (``connected``)."""

    connected: bool


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        await c.create(obj("v1", "Node", NODE))
        await c.create(obj(API_VERSION, POLICY_KIND, "web", namespace=NS, spec=SPEC))
        for name, (level, _) in PODS.items():
            await c.create(
                obj(
                    "v1",
                    "Pod",
                    name,
                    namespace=NS,
                    labels={"app": "web"},
                    annotations={OBSERVE_LEVEL_ANNOTATION: level} if level else {},
                    spec={"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}]},
                )
            )
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tetragon() -> AsyncIterator[ReplayServer]:
    srv = ReplayServer(
        [], policies=[PolicyStatus(name=n, namespace=NS) for n in TETRAGON_OBJECTS], version="v1.7.0"
    )
    await srv.start("127.0.0.1:0")
    yield srv
    await srv.stop(grace=0)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    config = fast_config(cluster, tetragon_unreachable_seconds=2.0, rollout_refresh_seconds=0.5)
    async with OperatorRun(cluster, config) as op:
        await op.settle()
        yield op


def make_writer(cluster: Cluster, address: str, stream: Stream | None = None) -> ObservationNodeWriter:
    w = ObservationNodeWriter(
        node_name=NODE,
        config=ObservationNodeConfig(enabled=True, heartbeatSeconds=3600, kubeconfig=str(cluster.kubeconfig)),
        tetragon=TetragonConfig(address=address, timeoutSeconds=1),
        stream=stream,
        poll_seconds=0.05,
    )
    # What the kernel allows, fixed (detection itself is test_capabilities.py): every probe kind.
    w.capabilities = Capabilities(
        kernel_version="6.1.0-18-amd64",
        btf=True,
        bpf_permitted=True,
        tracepoints=True,
        uprobes=True,
        kprobes=True,
        usdt=True,
        ring_buffer=True,
        tetragon=TetragonInfo(address=address),
    )
    return w


async def report(w: ObservationNodeWriter) -> None:
    """One poll of the writer, as its loop does it, then close its client."""
    w._written = None  # write even if only the heartbeat would be due
    assert await w.tick()
    stop = asyncio.Event()
    stop.set()
    await w.run(stop)


def pod(cluster: Cluster, name: str) -> dict[str, Any]:
    found = cluster.stored(r.PODS, name, NS)
    assert found is not None
    return found


def posture_of(cluster: Cluster, name: str) -> tuple[str, set[str]]:
    meta = pod(cluster, name)["metadata"]
    labels = {k for k in meta.get("labels") or {} if k in LEVEL_LABEL_KEYS}
    return (meta.get("annotations") or {}).get(POSTURE_ANNOTATION, ""), labels


def all_at(cluster: Cluster, want: dict[str, str]) -> bool:
    return all(posture_of(cluster, name) == (level, LEVEL_KEYS[level]) for name, level in want.items())


def node_labels(cluster: Cluster) -> dict[str, str]:
    labels = (cluster.stored(r.NODES, NODE) or {})["metadata"].get("labels") or {}
    return {
        k.removeprefix(FEATURE_LABEL_PREFIX): v
        for k, v in labels.items()
        if k.startswith(FEATURE_LABEL_PREFIX)
    }


def policy_state(cluster: Cluster) -> tuple[str, str, str]:
    pol = cluster.stored(r.OBSERVATION_POLICIES, "web", NS)
    for t in ("Ready", "Degraded", "Progressing", "Stalled"):
        c = condition(pol, t)
        if c.get("status") == "True":
            return t, c["reason"], c["message"]
    return "", "", ""


UP = {name: level for name, (_, level) in PODS.items()}
DOWN = dict.fromkeys(PODS, "None")


async def test_tetragon_up_every_level_gets_its_labels(
    cluster: Cluster, tetragon: ReplayServer, operator: OperatorRun
) -> None:
    assert tetragon.address
    await report(make_writer(cluster, tetragon.address))
    status = (cluster.stored(r.OBSERVATION_NODES, NODE) or {})["status"]
    assert (status["source"], status["maxPosture"]) == ("tetragon", "FullInstrumentation")
    await wait_for(lambda: all_at(cluster, UP), what="pods at their levels, with level labels")
    await wait_for(lambda: policy_state(cluster)[0] == "Ready", what="policy Ready")
    assert (node_labels(cluster)["source"], node_labels(cluster)["max-posture"]) == (
        "tetragon",
        "FullInstrumentation",
    )
    # each rendered part requires the level label its probes need
    parts = {
        name: (cluster.stored(r.TRACING_POLICIES_NAMESPACED, name, NS) or {})["spec"]["podSelector"]
        for name in TETRAGON_OBJECTS
    }
    assert parts["stellaops-web"]["matchLabels"] == {"app": "web", "stellaops.io/observe": "true"}
    assert parts["stellaops-web"]["matchExpressions"] == [
        {"key": "stellaops.io/observe-deep", "operator": "DoesNotExist"}
    ]
    for name in ("stellaops-web-stacks", "stellaops-web-uprobes"):
        assert parts[name] == {"matchLabels": {"app": "web", "stellaops.io/observe-deep": "true"}}


async def test_tetragon_down_nothing_is_claimed_then_the_policy_is_degraded(
    cluster: Cluster, tetragon: ReplayServer, operator: OperatorRun
) -> None:
    address = tetragon.address
    assert address
    await tetragon.stop(grace=0)
    await report(make_writer(cluster, address))
    status = (cluster.stored(r.OBSERVATION_NODES, NODE) or {})["status"]
    assert (status["source"], status["maxPosture"]) == ("none", "None")
    assert status["capabilities"]["uprobes"] is True  # the kernel could; no source does
    assert status["maxPostureReason"].startswith(
        f"no event source works: Tetragon at {address} does not answer"
    )
    await wait_for(lambda: all_at(cluster, DOWN), what="every pod at None without level labels")
    reason = (pod(cluster, "p-full")["metadata"]["annotations"])[POSTURE_REASON_ANNOTATION]
    assert reason == "node supports at most None (Tetragon is unreachable: no source delivers events)"
    await wait_for(lambda: node_labels(cluster)["max-posture"] == "None", what="node ceiling label")
    assert node_labels(cluster)["source"] == "none" and node_labels(cluster)["uprobes"] == "true"
    # Degraded naming the node once the bound has passed (Progressing before: tests/unit/test_rollout.py)
    await wait_for(lambda: policy_state(cluster)[1] == "TetragonUnreachable", limit_s=60, what="Degraded")
    state, _, message = policy_state(cluster)
    assert state == "Degraded" and f"{NODE} since " in message and "does not answer" in message
    pol = cluster.stored(r.OBSERVATION_POLICIES, "web", NS) or {}
    for other in ("Ready", "Progressing", "Stalled"):  # Degraded is the one True condition
        assert (
            condition(pol, other)["status"] == "False"
            and condition(pol, other)["reason"] == "TetragonUnreachable"
        )
    failures = pol["status"]["rollout"]["failures"]
    assert [(f["node"], f["state"]) for f in failures] == [(NODE, "TetragonUnreachable")]


async def test_stream_without_api_is_passive(cluster: Cluster, operator: OperatorRun) -> None:
    """The event stream still delivers (process events) while Tetragon's API does not answer."""
    await report(make_writer(cluster, "127.0.0.1:1", stream=Stream(connected=True)))
    status = (cluster.stored(r.OBSERVATION_NODES, NODE) or {})["status"]
    assert (status["source"], status["maxPosture"]) == ("tetragon", "Passive")
    want = {name: ("None" if level == "None" else "Passive") for name, level in UP.items()}
    await wait_for(lambda: all_at(cluster, want), what="pods at Passive at most")
    assert node_labels(cluster)["max-posture"] == "Passive"


async def test_tetragon_back_everything_returns(cluster: Cluster, operator: OperatorRun) -> None:
    srv = ReplayServer([], policies=[PolicyStatus(name=n, namespace=NS) for n in TETRAGON_OBJECTS])
    await srv.start("127.0.0.1:0")
    try:
        assert srv.address
        # Tetragon answers but the agent's stream is not connected: still nothing delivered
        await report(make_writer(cluster, srv.address, stream=Stream(connected=False)))
        status = (cluster.stored(r.OBSERVATION_NODES, NODE) or {})["status"]
        assert (status["source"], status["maxPosture"]) == ("none", "None")
        await wait_for(lambda: all_at(cluster, DOWN), what="pods at None")
        await report(make_writer(cluster, srv.address, stream=Stream(connected=True)))
        await wait_for(lambda: all_at(cluster, UP), what="pods back at their levels")
        await wait_for(lambda: policy_state(cluster)[0] == "Ready", what="policy Ready again")
        assert node_labels(cluster)["max-posture"] == "FullInstrumentation"
        await operator.settle()
    finally:
        await srv.stop(grace=0)


async def test_an_agent_that_stops_heart_beating_claims_nothing(
    cluster: Cluster, operator: OperatorRun
) -> None:
    """Its last report said FullInstrumentation, stamped 2020 when the operator first sees it.

    (An ObservationNode restored from a backup; an agent
    that stops heart-beating while the operator watches: test_operator_clock_skew.py.)
    """
    assert all_at(cluster, UP)
    await first_seen_with_old_heartbeat(cluster, NODE)
    # Waited for with the stale node's reason: the ObservationNode is deleted before it is made
    # again, and the pods pass through None with "no ObservationNode" on the way (a loaded machine's
    # operator writes that before it sees the stale status), which a wait for None alone took.
    stale = "node supports at most None (its agent's heartbeat is stale: nothing it reported can be trusted)"
    await wait_for(
        lambda: (
            all_at(cluster, DOWN)
            and all(
                pod(cluster, name)["metadata"]["annotations"][POSTURE_REASON_ANNOTATION] == stale
                for name, (level, _) in PODS.items()
                if level != "none"  # opted out: its own reason
            )
        ),
        what="pods at None on a stale node, for its stale heartbeat",
    )
    await wait_for(
        lambda: (
            (node_labels(cluster).get("max-posture"), node_labels(cluster).get("source")) == ("None", "none")
        ),
        what="stale node's ceiling label",
    )
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    await cluster.patch(r.OBSERVATION_NODES, NODE, {"status": {"heartbeatTime": now}}, status=True)
    await wait_for(lambda: all_at(cluster, UP), what="pods back once it reports again")
    await wait_for(lambda: node_labels(cluster)["max-posture"] == "FullInstrumentation", what="label back")
    await operator.settle()


async def test_nothing_is_created_in_a_namespace_being_deleted(
    cluster: Cluster, operator: OperatorRun
) -> None:
    """What the namespace controller deletes there stays deleted; no 403, no warning, no retry."""
    await cluster.patch(r.NAMESPACES, NS, {"status": {"phase": "Terminating"}})
    await operator.settle()
    mark = cluster.mark()
    failures = operator.reconciler.scheduler.stats.failures
    for name in TETRAGON_OBJECTS:  # the namespace controller at work
        await cluster.delete(r.TRACING_POLICIES_NAMESPACED, name, namespace=NS)
    await asyncio.sleep(0.5)
    await operator.settle()
    ours = [w for w in cluster.writes(mark) if "tracingpoliciesnamespaced" in w or "observationpolicies" in w]
    assert ours == [] and cluster.writes(mark, rejected=True) == []
    assert all(cluster.stored(r.TRACING_POLICIES_NAMESPACED, n, NS) is None for n in TETRAGON_OBJECTS)
    assert operator.reconciler.scheduler.stats.failures == failures  # no failed reconcile, no retry
    # the namespace in use again (its deletion was refused by a finalizer elsewhere, say): rendered again
    await cluster.patch(r.NAMESPACES, NS, {"status": {"phase": "Active"}})
    await wait_for(
        lambda: all(
            cluster.stored(r.TRACING_POLICIES_NAMESPACED, n, NS) is not None for n in TETRAGON_OBJECTS
        ),
        what="re-rendered once the namespace is active",
    )
    await operator.settle()
