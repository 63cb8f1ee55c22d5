"""After a rollout of the agents, an old agent's report is that node's rollout in progress, not Degraded.

The operator rolled the agents (here: spec.containerRuntime fixed for a node
whose agent found no runtime socket), the DaemonSet said every agent updated
and ready, and the ObservationNodes still held the old agents' reports until
each new agent wrote: the RuntimeObserver read them as the new agents' and
showed Degraded (NoRuntimeSocket, the very fault the rollout fixed) for that
time. Each report now names the rollout of the pod template its agent runs
(``status.agentTemplate``, the pod's ``stellaops.io/agent-template`` through the
downward API); one of an older rollout is Progressing (``AgentsRollingOut``),
and Degraded (``AgentReportOutdated``) only once it has outlasted
``--stale-after-seconds`` after the DaemonSet said every agent updated and
ready. Through the real operator (kopf) against kmock; the reports are the
agent's own ``build_status``; every status is checked against the CRD schema
and read by Argo CD's health script, Flux and kstatus.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.agent.observation_status import build_status
from stellaops_runtime.contracts.crd_names import AGENT_TEMPLATE_ANNOTATION
from stellaops_runtime.contracts.crds import API_VERSION, NODE_KIND, OBSERVER_KIND, OBSERVER_LABEL
from stellaops_runtime.controller.render_agent import agent_resource_name
from stellaops_runtime.kube import resources as r
from tests.crd_schema import errors, load_crd, validator_for
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.test_operator_observer_backing import CAPS, NAME, NS, SPEC, UP, observer, verdicts
from tests.integration.test_operator_policies import condition

pytestmark = pytest.mark.asyncio(loop_scope="module")

BACKING = "NotObservedBacked"
NODES = ("node-a", "node-b")
NODE_CRD = load_crd(Path(__file__).resolve().parents[2] / "manifests" / "crds" / "observationnodes.yaml")
STALE_AFTER = 6.0  # also the bound of an old report (a loaded machine's settle stays well under it)


class Reports:
    """Each node's agent: its conditions merged as the agent merges them, a new heartbeat each time."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.conditions: dict[str, list[dict[str, Any]]] = {}
        self.last: dict[str, datetime] = {}

    async def beat(self, node: str, containers: str, template: str) -> None:
        now = datetime.now(UTC)
        if node in self.last and now <= self.last[node]:
            now = self.last[node] + timedelta(seconds=1)  # a new heartbeatTime text: a new report
        self.last[node] = now
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        st = build_status(
            capabilities=CAPS, tetragon=UP, source="tetragon", policies=[], now=stamp,
            existing_conditions=self.conditions.get(node), containers=containers, agent_template=template,
        )  # fmt: skip
        self.conditions[node] = st["conditions"]
        await self.cluster.patch(
            r.OBSERVATION_NODES, node, {"status": st | {"heartbeatTime": stamp}}, status=True
        )
        stored = self.cluster.stored(r.OBSERVATION_NODES, node) or {}
        assert errors(validator_for(NODE_CRD), stored) == []
        assert stored["status"]["agentTemplate"] == template  # kept by the schema, not pruned


def template(cluster: Cluster) -> str:
    ds = cluster.stored(r.DAEMONSETS, agent_resource_name(NAME), NS) or {}
    return str(ds["spec"]["template"]["metadata"]["annotations"][AGENT_TEMPLATE_ANNOTATION])


async def rolled_out(cluster: Cluster, op: OperatorRun) -> None:
    """The DaemonSet says every agent runs its current template and is ready."""
    await op.settle()
    ds = cluster.stored(r.DAEMONSETS, agent_resource_name(NAME), NS) or {}
    ready = {"observedGeneration": ds["metadata"]["generation"], "desiredNumberScheduled": 2,
             "numberReady": 2, "updatedNumberScheduled": 2, "numberAvailable": 2}  # fmt: skip
    await cluster.patch(r.DAEMONSETS, agent_resource_name(NAME), {"status": ready}, namespace=NS, status=True)
    await op.settle()


def state(cluster: Cluster) -> tuple[str, str, str, str]:
    """(the True one of Ready/Progressing/Degraded, its reason, NotObservedBacked's status and reason)."""
    body = observer(cluster)
    true = next(t for t in ("Ready", "Progressing", "Degraded") if condition(body, t).get("status") == "True")
    backing = condition(body, BACKING)
    return true, condition(body, true)["reason"], backing["status"], backing["reason"]


def observer_writes(cluster: Cluster, mark: int) -> list[str]:
    return [w for w in cluster.writes(mark) if "runtimeobservers" in w]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        for node in NODES:
            await c.create(obj(API_VERSION, NODE_KIND, node, spec={"nodeName": node}))
        yield c


async def test_an_old_agents_report_after_a_rollout_is_progressing_then_degraded_if_it_stays(
    cluster: Cluster,
) -> None:
    config = fast_config(cluster, stale_after_seconds=STALE_AFTER, rollout_refresh_seconds=0.5)
    agents = Reports(cluster)
    async with OperatorRun(cluster, config) as op:
        await cluster.create(obj(API_VERSION, OBSERVER_KIND, NAME, spec=SPEC))
        await rolled_out(cluster, op)
        old = template(cluster)
        await agents.beat("node-a", "no_runtime_socket", old)
        await agents.beat("node-b", "in_sync", old)
        await op.settle()
        assert state(cluster) == ("Degraded", "NoRuntimeSocket", "False", "NoRuntimeSocket")

        # the fix: spec.containerRuntime named; the operator rolls the agents
        fixed = {
            **SPEC,
            "containerRuntime": {"kind": "containerd", "socketPath": "/run/k3s/containerd/containerd.sock"},
        }
        await cluster.patch(r.RUNTIME_OBSERVERS, NAME, {"spec": fixed})
        await rolled_out(cluster, op)
        new = template(cluster)
        assert new != old
        await agents.beat("node-a", "no_runtime_socket", old)  # the old agents' heartbeats: still fresh
        await agents.beat("node-b", "in_sync", old)
        await op.settle()
        # every agent updated and ready, no new agent has written yet: the old reports are no fault
        body = observer(cluster)
        assert state(cluster) == ("Progressing", "AgentsRollingOut", "Unknown", "AgentsRollingOut")
        message = condition(body, BACKING)["message"]
        assert message.startswith("2 of 2 fresh node(s) (node-a, node-b) report an older agent configuration")
        assert verdicts(body) == ("Progressing", "InProgress", "Current")
        mark = cluster.mark()
        await agents.beat("node-a", "no_runtime_socket", old)  # an old report's heartbeat: no write
        await op.settle()
        assert observer_writes(cluster, mark) == []

        await agents.beat("node-a", "in_sync", new)  # node-a's new agent finds the socket
        await op.settle()
        body = observer(cluster)
        assert state(cluster) == ("Progressing", "AgentsRollingOut", "Unknown", "AgentsRollingOut")
        assert condition(body, BACKING)["message"].startswith("1 of 2 fresh node(s) (node-b) report an older")

        # node-b's report stays the old agent's (another agent writes it): Degraded once it has lasted
        # stale_after after the DaemonSet said every agent updated and ready, and it says why
        async def late() -> bool:
            if state(cluster)[0] == "Degraded":
                return True
            await agents.beat("node-a", "in_sync", new)  # both stay fresh
            await agents.beat("node-b", "in_sync", old)
            return False

        await wait_for(late, interval=0.5, what="Degraded: node-b's report outdated")
        assert state(cluster) == ("Degraded", "AgentReportOutdated", "Unknown", "AgentReportOutdated")
        body = observer(cluster)
        message = condition(body, BACKING)["message"]
        assert message.startswith("1 of 2 fresh node(s) (node-b) still report an older agent configuration")
        assert f"{STALE_AFTER:g}s or more after the DaemonSet said every agent updated and ready" in message
        assert verdicts(body) == ("Degraded", "Failed", "Current")

        await agents.beat("node-b", "in_sync", new)
        await op.settle()
        assert state(cluster) == ("Ready", "AgentsReady", "True", "AgentsBackNotObserved")
        mark = cluster.mark()
        await agents.beat("node-a", "in_sync", new)  # heartbeats only: nothing to write
        await agents.beat("node-b", "in_sync", new)
        await op.settle()
        assert observer_writes(cluster, mark) == []


async def test_a_report_naming_no_template_is_judged_as_before_and_a_new_report_refolds(
    cluster: Cluster,
) -> None:
    """An agent of an older version writes no agentTemplate: its report is taken as it is. And with
    the observer timer off, each new agent's report re-folds the observer."""
    config = fast_config(cluster, stale_after_seconds=60.0)
    async with OperatorRun(cluster, config) as op:
        await rolled_out(cluster, op)
        for node, containers in (("node-a", "no_runtime_socket"), ("node-b", "in_sync")):
            st = build_status(
                capabilities=CAPS, tetragon=UP, source="tetragon", policies=[], now="2026-01-01T00:00:00Z",
                existing_conditions=None, containers=containers,
            )  # fmt: skip
            assert "agentTemplate" not in st
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            await cluster.patch(
                r.OBSERVATION_NODES, node, {"status": st | {"heartbeatTime": stamp}}, status=True
            )
            # a merge patch keeps the agentTemplate of the earlier test: an older agent's report has none
            await cluster.patch(r.OBSERVATION_NODES, node, {"status": {"agentTemplate": None}}, status=True)
        await op.settle()
        assert state(cluster) == ("Degraded", "NoRuntimeSocket", "False", "NoRuntimeSocket")
        # the observer timer is off: a new agent's first report alone must re-fold the observer, even
        # one that says what the old agent said (in sync on both)
        agents = Reports(cluster)
        for node in NODES:
            await agents.beat(node, "in_sync", template(cluster))
        await op.settle()
        assert state(cluster) == ("Ready", "AgentsReady", "True", "AgentsBackNotObserved")
        old = template(cluster)
        await cluster.patch(r.RUNTIME_OBSERVERS, NAME, {"spec": {"agent": {"image": "example.org/agent:2"}}})
        await rolled_out(cluster, op)
        assert template(cluster) != old
        assert state(cluster) == ("Progressing", "AgentsRollingOut", "Unknown", "AgentsRollingOut")
        await agents.beat("node-a", "in_sync", template(cluster))
        await op.settle()
        assert state(cluster)[:2] == ("Progressing", "AgentsRollingOut")
        await agents.beat("node-b", "in_sync", template(cluster))
        await op.settle()
        assert state(cluster) == ("Ready", "AgentsReady", "True", "AgentsBackNotObserved")


def _agent_pod(node: str, template: str) -> dict[str, Any]:
    """The agent pod the DaemonSet runs on ``node`` (kmock has no DaemonSet controller)."""
    return obj(
        "v1", "Pod", f"{agent_resource_name(NAME)}-{node}", namespace=NS,
        labels={OBSERVER_LABEL: NAME}, annotations={AGENT_TEMPLATE_ANNOTATION: template},
        spec={"nodeName": node, "containers": [{"name": "agent", "image": "x"}]},
    )  # fmt: skip


async def test_a_rollout_that_has_not_reached_a_node_leaves_its_running_agents_fault_in_view(
    cluster: Cluster,
) -> None:
    """The DaemonSet's rollout is under way (or stuck: a node that cannot pull the new image, a pod
    that cannot be scheduled) and has not reached node-a: its old agent still runs there, and what
    it reports (NoRuntimeSocket) is what that node's agent can back now. It was set aside as
    "their new agent has not written its ObservationNode yet", NotObservedBacked Unknown for as long
    as the rollout lasted; it is False NoRuntimeSocket. Once node-a's old pod is replaced, its last
    report is that node's rollout in progress again."""
    config = fast_config(cluster, stale_after_seconds=60.0, rollout_refresh_seconds=0.5)
    agents = Reports(cluster)
    async with OperatorRun(cluster, config) as op:
        if cluster.stored(r.RUNTIME_OBSERVERS, NAME) is None:  # run alone
            await cluster.create(obj(API_VERSION, OBSERVER_KIND, NAME, spec=SPEC))
        await rolled_out(cluster, op)
        old = template(cluster)
        await cluster.patch(r.RUNTIME_OBSERVERS, NAME, {"spec": {"agent": {"image": "example.org/agent:3"}}})
        await op.settle()
        new = template(cluster)
        assert new != old
        ds = cluster.stored(r.DAEMONSETS, agent_resource_name(NAME), NS) or {}
        halfway = {"observedGeneration": ds["metadata"]["generation"], "desiredNumberScheduled": 2,
                   "numberReady": 1, "updatedNumberScheduled": 1, "numberAvailable": 1}  # fmt: skip
        await cluster.patch(
            r.DAEMONSETS, agent_resource_name(NAME), {"status": halfway}, namespace=NS, status=True
        )
        await cluster.create(_agent_pod("node-a", old))
        await cluster.create(_agent_pod("node-b", new))
        await agents.beat("node-a", "no_runtime_socket", old)
        await agents.beat("node-b", "in_sync", new)

        def seen() -> tuple[str, str, str, str] | None:
            return state(cluster) if state(cluster)[2:] == ("False", "NoRuntimeSocket") else None

        try:
            await wait_for(seen, limit_s=30.0, what="node-a's running agent's NoRuntimeSocket in view")
        except TimeoutError:
            raise AssertionError((state(cluster), condition(observer(cluster), BACKING)["message"])) from None
        assert state(cluster)[:2] == ("Progressing", "RollingOut")
        assert "(node-a)" in condition(observer(cluster), BACKING)["message"]
        # a hostile agentTemplate (not a string) beside a live pod is no crash: judged as written
        for hostile in (None, {"x": 1}):  # kmock merges no dict into a string: removed first
            patch = {"status": {"agentTemplate": hostile}}
            await cluster.patch(r.OBSERVATION_NODES, "node-b", patch, status=True)
        # node-a's old pod goes: its report is the rollout in progress there
        await cluster.delete(r.PODS, f"{agent_resource_name(NAME)}-node-a", NS)
        await wait_for(lambda: state(cluster)[2:] == ("Unknown", "AgentsRollingOut"), what="node-a rolling")
        await cluster.delete(r.PODS, f"{agent_resource_name(NAME)}-node-b", NS)
