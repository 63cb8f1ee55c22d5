"""A node whose container registry never comes in sync turns its RuntimeObserver Degraded (node_backing).

``RegistryNotInSync`` alone is Progressing (an agent's start: it retries by
itself), but one that never ends (the runtime's socket there, the runtime
hung) stayed Progressing for ever: Flux failed only at its timeout with "in
progress", Argo CD showed Progressing. Past ``registry_not_in_sync_seconds``
it is Degraded, timed by the node's own clock (``heartbeatTime`` minus the
condition's ``lastTransitionTime``), so a node clock a day off neither makes
it Degraded at once nor never; the text names the grace period, not a running
time, so a settled operator (restarted too) writes nothing. Through the real
operator (kopf) against kmock; the statuses are the agent's own
``build_status``, its conditions merged as the agent merges them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from argocd_lua import health

from stellaops_runtime.agent.observation_status import build_status
from stellaops_runtime.contracts.crds import API_VERSION, NODE_KIND, OBSERVER_KIND
from stellaops_runtime.controller.render_agent import agent_resource_name
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.test_operator_observer_backing import CAPS, NAME, NS, SPEC, UP
from tests.integration.test_operator_policies import condition
from tests.unit.test_kstatus import flux_health, kstatus

pytestmark = pytest.mark.asyncio(loop_scope="module")

BACKING_CONDITION = "NotObservedBacked"
DAY = timedelta(days=1)


class Agent:
    """A node's agent writing its ObservationNode by its own clock (off by ``skew``)."""

    def __init__(self, cluster: Cluster, node: str, skew: timedelta = timedelta(0)) -> None:
        self.cluster, self.node, self.skew = cluster, node, skew
        self.conditions: list[dict[str, Any]] | None = None
        self.last: datetime | None = None

    async def beat(self, containers: str, *, at: datetime | None = None, send: bool = True) -> None:
        """A report: the conditions merged with the last ones (a lastTransitionTime moves only on a
        change, agent/observation_status.py), at ``at`` or now, by the agent's clock (``send``: written
        to its ObservationNode, else only merged, as one the operator missed)."""
        now = at or datetime.now(UTC) + self.skew
        if at is None and self.last is not None and now <= self.last:
            now = self.last + timedelta(seconds=1)  # a new heartbeatTime text: a new report
        self.last = now
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        st = build_status(
            capabilities=CAPS, tetragon=UP, source="tetragon", policies=[],
            existing_conditions=self.conditions, now=stamp, containers=containers,
        )  # fmt: skip
        self.conditions = st["conditions"]
        if not send:
            return
        body = {"status": st | {"heartbeatTime": stamp}}
        await self.cluster.patch(r.OBSERVATION_NODES, self.node, body, status=True)


def _cond(cluster: Cluster, kind: str) -> dict[str, Any]:
    body = cluster.stored(r.RUNTIME_OBSERVERS, NAME) or {}
    return next((c for c in (body.get("status") or {}).get("conditions") or () if c["type"] == kind), {})


async def until(cluster: Cluster, kind: str, *texts: str) -> dict[str, Any]:
    """The observer once its ``kind`` condition is True and its NotObservedBacked message has ``texts``."""

    def check() -> dict[str, Any] | None:
        ok = _cond(cluster, kind).get("status") == "True"
        message = str(_cond(cluster, BACKING_CONDITION).get("message", ""))
        return cluster.stored(r.RUNTIME_OBSERVERS, NAME) if ok and all(t in message for t in texts) else None

    try:
        return await wait_for(check, what=f"{kind} True with {texts}")
    except TimeoutError:
        body = cluster.stored(r.RUNTIME_OBSERVERS, NAME) or {}
        raise AssertionError((body.get("status") or {}).get("conditions")) from None


def verdicts(body: dict[str, Any]) -> tuple[str, str, str]:
    return health(OBSERVER_KIND, body)["status"], flux_health(OBSERVER_KIND, body), kstatus(body)


def observer_writes(cluster: Cluster, mark: int) -> list[str]:
    return [w for w in cluster.writes(mark) if "runtimeobservers" in w]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        for node in ("node-a", "node-b"):
            await c.create(obj(API_VERSION, NODE_KIND, node, spec={"nodeName": node}))
        yield c


async def _ready_fleet(cluster: Cluster, op: OperatorRun) -> None:
    """The observer, its DaemonSet reporting both agents ready."""
    if cluster.stored(r.RUNTIME_OBSERVERS, NAME) is None:
        await cluster.create(obj(API_VERSION, OBSERVER_KIND, NAME, spec=SPEC))
    await op.settle()
    ds = cluster.stored(r.DAEMONSETS, agent_resource_name(NAME), NS) or {}
    ready = {"observedGeneration": ds["metadata"]["generation"], "desiredNumberScheduled": 2,
             "numberReady": 2, "updatedNumberScheduled": 2, "numberAvailable": 2}  # fmt: skip
    await cluster.patch(r.DAEMONSETS, agent_resource_name(NAME), {"status": ready}, namespace=NS, status=True)


async def test_a_node_clock_a_day_off_is_neither_degraded_at_once_nor_never(cluster: Cluster) -> None:
    """The grace period (300 s) is timed by each node's own clock: a node a day behind that has just
    lost its registry is Progressing; one a day ahead whose registry has been out of sync for an hour
    is Degraded at once, and an operator restarted then writes nothing (no flap to Progressing)."""
    config = fast_config(cluster, registry_not_in_sync_seconds=300.0, rollout_refresh_seconds=1.0)
    behind, ahead = Agent(cluster, "node-a", -DAY), Agent(cluster, "node-b", DAY)
    async with OperatorRun(cluster, config) as op:
        await _ready_fleet(cluster, op)

        async def counted() -> bool:
            """node-a's first report seen is stamped a day ago: stale until the next one (heartbeats)."""
            if "RegistryNotInSync on 1 (node-a)" in str(_cond(cluster, BACKING_CONDITION).get("message")):
                return True
            await behind.beat("not_in_sync")
            return False

        await wait_for(counted, interval=0.5, what="node-a counted")
        body = await until(cluster, "Progressing", "RegistryNotInSync on 1 (node-a)", "(Degraded after 300s)")
        assert condition(body, "Progressing")["reason"] == "RegistryNotInSync"
        assert verdicts(body) == ("Progressing", "InProgress", "Current")
        hour_ago = datetime.now(UTC) + DAY - timedelta(hours=1)
        # node-b's agent started an hour ago (by its clock) and never got in sync; the operator saw
        # none of its reports before (one it saw in sync since would bound it: heartbeats.py)
        await ahead.beat("not_in_sync", at=hour_ago, send=False)
        await ahead.beat("not_in_sync")
        body = await until(
            cluster, "Degraded", "ContainersKnown RegistryNotInSync for 300s or more on 1 (node-b)"
        )
        degraded, backing = condition(body, "Degraded"), condition(body, BACKING_CONDITION)
        assert (degraded["reason"], backing["reason"], backing["status"]) == (
            "RegistryNotInSync",
            "RegistryNotInSync",
            "False",
        )
        message = backing["message"]
        assert message.startswith("2 of 2 fresh node(s) cannot back 'not observed': ")
        assert message.index("for 300s or more on 1 (node-b)") < message.index(
            "RegistryNotInSync on 1 (node-a)"
        )
        assert "check the node's container runtime" in message
        assert degraded["message"].startswith("2/2 agents ready; 2 of 2 fresh node(s)")
        assert verdicts(body) == ("Degraded", "Failed", "Current")
        # node-a's clock set right, its registry in sync: an operator restarted now is not to be
        # misled by a clock behind (a first report seen stamped a day ago is stale: heartbeats.py)
        behind = Agent(cluster, "node-a")
        await behind.beat("in_sync")
        await until(cluster, "Degraded", "1 of 2 fresh node(s)", "for 300s or more on 1 (node-b)")
        await op.settle()
        before = cluster.stored(r.RUNTIME_OBSERVERS, NAME)
    mark = cluster.mark()
    async with OperatorRun(cluster, config) as op:  # node-b's hour is read again from its own clock
        await op.settle()
        await behind.beat("in_sync")  # heartbeats only
        await ahead.beat("not_in_sync")
        await op.settle()
        assert observer_writes(cluster, mark) == [], cluster.stored(r.RUNTIME_OBSERVERS, NAME)
        assert cluster.stored(r.RUNTIME_OBSERVERS, NAME) == before
        await ahead.beat("in_sync")
        await until(cluster, "Ready", "2 of 2 fresh node(s): ")


async def test_the_observer_timer_turns_it_degraded_when_the_grace_ends_then_writes_nothing(
    cluster: Cluster,
) -> None:
    """No watch event comes when the grace period ends: the observer timer re-folds. The text then
    stays as it is while nothing changes, through the timer's reconciles and heartbeats alike."""
    config = fast_config(cluster, registry_not_in_sync_seconds=2.0, rollout_refresh_seconds=1.0)
    agent = Agent(cluster, "node-a")
    async with OperatorRun(cluster, config) as op:
        await _ready_fleet(cluster, op)
        await Agent(cluster, "node-b").beat("in_sync")
        await agent.beat("not_in_sync")  # the test's last write until the observer is Degraded
        body = await until(cluster, "Degraded", "RegistryNotInSync for 2s or more on 1 (node-a)")
        assert condition(body, "Degraded")["message"].startswith("2/2 agents ready; 1 of 2 fresh node(s)")
        assert verdicts(body) == ("Degraded", "Failed", "Current")
        await op.settle()
        mark = cluster.mark()
        await agent.beat("not_in_sync")  # a heartbeat: its lastTransitionTime is kept

        def timer_reconciles() -> bool:  # each reads the store Secret (reconcile_observers)
            gets = [
                q
                for q in cluster.requests()[mark:]
                if q.method.value == "GET" and q.url.path.endswith("/secrets/stellaops-store")
            ]
            return len(gets) >= 3

        await wait_for(timer_reconciles, what="three reconciles by the observer timer")
        await op.settle()
        assert observer_writes(cluster, mark) == []
        await agent.beat("in_sync")
        await until(cluster, "Ready", "2 of 2 fresh node(s): ")
