"""A policy is not Ready on a node whose agent gets no events, however Tetragon loaded it.

A node whose Tetragon lists the policy's object ``ENABLED`` while the agent's
own event stream from Tetragon is not connected reports ``source: none`` (its
pods are at posture None there). The policy's rollout counted such a node as
running, so the policy read Ready (``RolledOut``, "1/1 nodes running") about a
node where nothing it traces reaches the store. Such a node now counts as
pending, with a ``NoEventSource`` entry in ``rollout.failures``, and the
policy's Progressing message says why; once the stream connects it is running
and the policy Ready. Through the real operator (kopf) against kmock; the
report is the agent's own ``build_status``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.agent.node_status import build_status
from stellaops_runtime.contracts.crds import API_VERSION, FEATURE_LABEL_PREFIX, NODE_KIND, POLICY_KIND
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.test_operator_clock_skew import SPEC
from tests.integration.test_operator_observer_backing import CAPS, UP
from tests.integration.test_operator_policies import condition

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS, NODE, TP = "shop", "node-deaf", "stellaops-web"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        await c.create(obj("v1", "Node", NODE))
        await c.create(obj(API_VERSION, NODE_KIND, NODE, spec={"nodeName": NODE}))
        yield c


async def _report(cluster: Cluster, *, stream_connected: bool, lasted: float = 0.0) -> None:
    """The agent's report: Tetragon answers and lists the policy's object ENABLED (this version);
    ``lasted``: for how long (by the agent's clock) its source has been what it reports."""
    meta = (cluster.stored(r.TRACING_POLICIES_NAMESPACED, TP, NS) or {})["metadata"]
    entry = {"name": TP, "namespace": NS, "state": "ENABLED", "sensors": ["generic_tracepoint_sensor"]}
    entry |= {"objectUid": meta["uid"], "objectGeneration": meta["generation"]}
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    st: dict[str, Any] = build_status(
        capabilities=CAPS,
        tetragon=UP,
        policies=[entry],
        existing_conditions=None,
        now=(now - timedelta(seconds=lasted)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        stream_connected=stream_connected,
    )
    assert st["source"] == ("tetragon" if stream_connected else "none")
    await cluster.patch(r.OBSERVATION_NODES, NODE, {"status": st | {"heartbeatTime": stamp}}, status=True)


def _policy(cluster: Cluster) -> dict[str, Any]:
    return cluster.stored(r.OBSERVATION_POLICIES, "web", NS) or {}


def _true(cluster: Cluster) -> str:
    return next(
        (
            t
            for t in ("Ready", "Progressing", "Degraded")
            if condition(_policy(cluster), t).get("status") == "True"
        ),
        "",
    )


async def test_a_node_whose_agent_gets_no_events_does_not_make_the_policy_ready(cluster: Cluster) -> None:
    config = fast_config(cluster, stale_after_seconds=60.0, tetragon_unreachable_seconds=3600.0)
    async with OperatorRun(cluster, config) as op:
        await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace=NS, spec=SPEC))
        await wait_for(lambda: cluster.stored(r.TRACING_POLICIES_NAMESPACED, TP, NS), what="rendered")
        await _report(cluster, stream_connected=False)
        await wait_for(
            lambda: (_policy(cluster).get("status") or {}).get("rollout", {}).get("nodesTotal") == 1
        )
        await op.settle()
        rollout = _policy(cluster)["status"]["rollout"]
        assert (rollout["nodesRunning"], rollout["nodesPending"]) == (0, 1), rollout
        assert [(f["node"], f["policy"], f["state"]) for f in rollout["failures"]] == [
            (NODE, f"{NS}/{TP}", "NoEventSource")
        ]
        assert "event stream is not connected" in rollout["failures"][0]["message"]
        assert _true(cluster) == "Progressing"
        message = condition(_policy(cluster), "Progressing")["message"]
        assert "no event source" in message and NODE in message, message

        await _report(cluster, stream_connected=True)  # the stream connects: the node observes
        await wait_for(lambda: _true(cluster) == "Ready", what="Ready once the agent gets events")
        assert _policy(cluster)["status"]["rollout"]["failures"] == []


async def test_the_nodes_feature_labels_heartbeat_included_go_with_its_observation_node(
    cluster: Cluster,
) -> None:
    """docs/install.md (Uninstall): the operator removes the labels when the ObservationNode goes."""

    def feature_labels() -> dict[str, str]:
        labels = ((cluster.stored(r.NODES, NODE) or {}).get("metadata") or {}).get("labels") or {}
        return {k: v for k, v in labels.items() if k.startswith(FEATURE_LABEL_PREFIX)}

    async with OperatorRun(cluster, fast_config(cluster, stale_after_seconds=60.0)) as op:
        await _report(cluster, stream_connected=True)
        await wait_for(lambda: feature_labels().get(FEATURE_LABEL_PREFIX + "heartbeat") == "fresh")
        await cluster.delete(r.OBSERVATION_NODES, NODE)
        await wait_for(lambda: not feature_labels(), what="the Node's feature labels removed")
        await op.settle()
        assert feature_labels() == {}


async def test_a_node_without_events_for_longer_than_the_bound_makes_the_policy_degraded(
    cluster: Cluster,
) -> None:
    """The agent's EventSource condition says since when (its own clock): past
    ``tetragon_unreachable_seconds`` the policy is Degraded ``NoEventSource``, naming the node, not
    Progressing for ever; once events flow it is Ready again."""
    config = fast_config(cluster, stale_after_seconds=60.0, tetragon_unreachable_seconds=120.0)
    async with OperatorRun(cluster, config) as op:
        if cluster.stored(r.OBSERVATION_POLICIES, "web", NS) is None:
            await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace=NS, spec=SPEC))
        if cluster.stored(r.OBSERVATION_NODES, NODE) is None:  # the test before deletes it
            await cluster.create(obj(API_VERSION, NODE_KIND, NODE, spec={"nodeName": NODE}))
        await wait_for(lambda: cluster.stored(r.TRACING_POLICIES_NAMESPACED, TP, NS), what="rendered")
        await _report(cluster, stream_connected=False, lasted=600.0)  # no events for 10 min, by its clock
        await wait_for(lambda: _true(cluster) == "Degraded", what="Degraded after the bound")
        degraded = condition(_policy(cluster), "Degraded")
        assert degraded["reason"] == "NoEventSource", degraded
        assert NODE in degraded["message"] and "delivered no events for 120s" in degraded["message"]
        await _report(cluster, stream_connected=True)
        await wait_for(lambda: _true(cluster) == "Ready", what="Ready once the agent gets events")
        await op.settle()
