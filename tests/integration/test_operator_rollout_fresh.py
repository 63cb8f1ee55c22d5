"""A policy is Ready only on node reports made after its Tetragon objects were last written.

Tetragon's ``ListTracingPolicies`` says a policy of a name is ENABLED, not
which version of it: after a spec change (or a delete and re-create of the
same name) a node's ObservationNode still lists the old object as ENABLED
until its agent polls Tetragon again. Folding that report into the new
generation's rollout made the policy ``Ready`` (observedGeneration = the new
generation) at once, before any node had loaded the new syscalls, and
whether or not they would ever load: ``kubectl wait --for=condition=Ready``
and the GitOps health checks passed on a claim nothing backed.

Here, through the real operator against kmock, with the ObservationNode
written by the test (its heartbeat set explicitly, no clock race):

- a spec change turns the policy Progressing (RollingOut) while the only
  report predates the write, Ready again once the node reports after it;
- a report made after the write that says LOAD_ERROR is Degraded, never Ready;
- a heartbeat-only report (same policy list) is enough to release it: the
  operator refolds the waiting policy on the ObservationNode's event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import API_VERSION, NODE_KIND, POLICY_KIND
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.test_operator_policies import condition

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS, NODE = "shop", "node-a"
SPEC: dict[str, Any] = {"podSelector": {"matchLabels": {"app": "web"}}, "maxLevel": "ActiveTracing"}


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node_status(beat: datetime, state: str = "ENABLED") -> dict[str, Any]:
    return {
        "heartbeatTime": _stamp(beat),
        "source": "tetragon",
        "maxPosture": "FullInstrumentation",
        "capabilities": {"tetragon": {"reachable": True, "address": "unix:///t.sock", "version": "v1.7.0"}},
        "policies": [
            {
                "name": "stellaops-web",
                "namespace": NS,
                "state": state,
                "error": "" if state == "ENABLED" else "x",
            }
        ],
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        await c.create(obj("v1", "Node", NODE))
        await c.create(obj(API_VERSION, NODE_KIND, NODE, spec={"nodeName": NODE}))
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    async with OperatorRun(cluster, fast_config(cluster)) as op:
        await op.settle()
        yield op


async def _report(cluster: Cluster, state: str = "ENABLED") -> datetime:
    """A report made now (its heartbeat the next whole second: after every write so far)."""
    beat = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    await cluster.patch(r.OBSERVATION_NODES, NODE, {"status": _node_status(beat, state)}, status=True)
    return beat


async def _past(beat: datetime) -> None:
    """Wait until the clock is a second past ``beat``, so the next write comes after that report.

    (Reports have whole seconds; one stamped in the second of a write counts as after it.)
    """
    await wait_for(lambda: datetime.now(UTC) >= beat + timedelta(seconds=1), what="the clock")


def _state(cluster: Cluster) -> tuple[int, str, str]:
    """(observedGeneration, the True condition's type, its reason) of policy web."""
    pol = cluster.stored(r.OBSERVATION_POLICIES, "web", NS) or {}
    for t in ("Ready", "Progressing", "Degraded", "Stalled"):
        c = condition(pol, t)
        if c.get("status") == "True":
            return int((pol.get("status") or {}).get("observedGeneration") or 0), t, str(c.get("reason"))
    return 0, "", ""


async def test_a_report_older_than_the_write_does_not_make_the_new_generation_ready(
    cluster: Cluster, operator: OperatorRun
) -> None:
    await cluster.create(
        obj(API_VERSION, POLICY_KIND, "web", namespace=NS, spec=SPEC | {"syscalls": ["execve"]})
    )
    await wait_for(
        lambda: cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-web", NS), what="rendered"
    )
    await operator.settle()
    await _past(await _report(cluster))  # after the create: it loaded
    await wait_for(lambda: _state(cluster) == (1, "Ready", "RolledOut"), what="generation 1 ready")

    # The spec changes: the Tetragon object is patched; the node has not listed it since.
    await cluster.patch(
        r.OBSERVATION_POLICIES, "web", {"spec": {"syscalls": ["execve", "connect"]}}, namespace=NS
    )
    await wait_for(
        lambda: "connect" in str(cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-web", NS)),
        what="the new syscall rendered",
    )
    await operator.settle()
    assert _state(cluster) == (2, "Progressing", "RollingOut")
    pol = cluster.stored(r.OBSERVATION_POLICIES, "web", NS) or {}
    assert pol["status"]["rollout"]["nodesPending"] == 1 and pol["status"]["rollout"]["nodesRunning"] == 0

    # The node reports after the write that the new version failed to load: Degraded, not Ready.
    await _report(cluster, state="LOAD_ERROR")
    await wait_for(lambda: _state(cluster) == (2, "Degraded", "LoadFailed"), what="the load error")

    # It loads: a later report says so.
    await _past(await _report(cluster))
    await wait_for(lambda: _state(cluster) == (2, "Ready", "RolledOut"), what="generation 2 ready")


async def test_a_heartbeat_alone_releases_a_waiting_policy(cluster: Cluster, operator: OperatorRun) -> None:
    await cluster.patch(r.OBSERVATION_POLICIES, "web", {"spec": {"syscalls": ["openat"]}}, namespace=NS)
    await wait_for(
        lambda: "openat" in str(cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-web", NS)),
        what="the new syscall rendered",
    )
    await operator.settle()
    assert _state(cluster) == (3, "Progressing", "RollingOut")
    # Same policy list, only a newer heartbeat (what an agent writes when Tetragon reloaded the
    # object between two polls and lists it as before).
    await _report(cluster)
    await wait_for(lambda: _state(cluster) == (3, "Ready", "RolledOut"), what="generation 3 ready")
