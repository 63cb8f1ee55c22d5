"""A pod's posture on a node where its policy's Tetragon object failed to LOAD is what that node gives.

The operator used to cap a policy only for objects it could not apply to the
API server (``in_force``): a policy whose uprobes object every node's
Tetragon refused to load (``LOAD_ERROR`` in the ObservationNode's
``status.policies``) still gave its pods ``EbpfDeep`` and the deep label
there, while the policy itself was Degraded ``LoadFailed``: the pod said it
was traced by uprobes nobody ran. Now a pod on such a node gets at most the
level just below what the failed object needs, its reason names the node,
object, state and Tetragon's error, pods on nodes where it loaded keep their
level, and the pod gets its level back once the node lists it loaded.

Through the real operator against kmock; the ObservationNodes are written as
the agents write them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import API_VERSION, OBSERVE_DEEP_LABEL, OBSERVE_LABEL, POLICY_KIND
from stellaops_runtime.controller.render_policy import tetragon_policy_names
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.posture_cluster import add_nodes, pod_posture

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS = "shop"
BAD, GOOD = "node-bad", "node-good"
SYSCALLS, UPROBES = tetragon_policy_names(name="web")
WEB = {
    "podSelector": {"matchLabels": {"app": "web"}},
    "maxLevel": "EbpfDeep",
    "syscalls": ["execve"],
    "functions": [{"binaryPath": "/usr/lib/libssl.so.3", "symbols": ["SSL_read"]}],
}
ERROR = "failed prog uprobe: attaching to /usr/lib/libssl.so.3: no such file or directory"


def _pod(name: str, node: str) -> dict:
    spec = {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    return obj("v1", "Pod", name, namespace=NS, labels={"app": "web"}, spec=spec)


async def _report(cluster: Cluster, node: str, uprobes_state: str) -> None:
    """The node's agent lists web's objects: the syscall object ENABLED, the uprobes one as given."""
    uprobes = {"name": UPROBES, "namespace": NS, "state": uprobes_state}
    if uprobes_state == "LOAD_ERROR":
        uprobes["error"] = ERROR
    policies = [{"name": SYSCALLS, "namespace": NS, "state": "ENABLED"}, uprobes]
    beat = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    await cluster.patch(
        r.OBSERVATION_NODES, node, {"status": {"policies": policies, "heartbeatTime": beat}}, status=True
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        await add_nodes(c, ((BAD, "tetragon"), (GOOD, "tetragon")))
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    async with OperatorRun(cluster, fast_config(cluster, stale_after_seconds=3600.0)) as op:
        await op.settle()
        yield op


async def test_a_pod_on_a_node_that_failed_to_load_its_uprobes_is_not_deep(
    cluster: Cluster, operator: OperatorRun
) -> None:
    await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace=NS, spec=WEB))
    await cluster.create(_pod("web-bad", BAD))
    await cluster.create(_pod("web-good", GOOD))
    for node in (BAD, GOOD):
        await _report(cluster, node, "ENABLED")
    for pod in ("web-bad", "web-good"):
        await wait_for(lambda p=pod: pod_posture(cluster, p, NS)[0] == "EbpfDeep", what=f"{pod} at EbpfDeep")

    await _report(cluster, BAD, "LOAD_ERROR")  # Tetragon on node-bad refuses the uprobes object
    await wait_for(
        lambda: pod_posture(cluster, "web-bad", NS)[0] == "ActiveTracing", what="web-bad capped on its node"
    )
    _, reason, labels = pod_posture(cluster, "web-bad", NS)
    assert labels == {OBSERVE_LABEL}  # no deep label: the uprobes object does not run there
    assert UPROBES in reason and BAD in reason and "LOAD_ERROR" in reason and "no such file" in reason
    assert "at most ActiveTracing" in reason
    # Where it loaded, the pod keeps its level.
    assert pod_posture(cluster, "web-good", NS)[:1] == ("EbpfDeep",)
    assert pod_posture(cluster, "web-good", NS)[2] == {OBSERVE_LABEL, OBSERVE_DEEP_LABEL}

    await _report(cluster, BAD, "ENABLED")  # loaded after all: the full level again
    await wait_for(
        lambda: pod_posture(cluster, "web-bad", NS)[0] == "EbpfDeep", what="web-bad back at EbpfDeep"
    )
    assert pod_posture(cluster, "web-bad", NS)[2] == {OBSERVE_LABEL, OBSERVE_DEEP_LABEL}
    assert UPROBES not in pod_posture(cluster, "web-bad", NS)[1]


async def test_an_old_version_listed_failed_beside_the_loaded_one_does_not_cap_the_pod(
    cluster: Cluster, operator: OperatorRun
) -> None:
    """Tetragon lists the uprobes object twice: an object of the name before (LOAD_ERROR; deleted and
    created again, as a GitOps prune and re-apply does) and the one the operator wrote (ENABLED, named
    by its uid and generation). The policy's rollout counts the node running; the
    pod there keeps its level (it was capped on the old version's failure)."""
    await cluster.create(
        obj(
            API_VERSION,
            POLICY_KIND,
            "api",
            namespace=NS,
            spec=WEB | {"podSelector": {"matchLabels": {"app": "api"}}},
        )
    )
    syscalls, uprobes = tetragon_policy_names(name="api")
    await wait_for(lambda: cluster.stored(r.TRACING_POLICIES_NAMESPACED, uprobes, NS), what="rendered")
    pod = _pod("api-bad", BAD)
    pod["metadata"]["labels"] = {"app": "api"}
    await cluster.create(pod)

    def version(name: str) -> dict:
        meta = (cluster.stored(r.TRACING_POLICIES_NAMESPACED, name, NS) or {})["metadata"]
        return {"objectUid": meta["uid"], "objectGeneration": meta["generation"]}

    now = version(uprobes)
    old = {"objectUid": "a-deleted-object-of-the-name", "objectGeneration": 1}  # pruned and re-applied
    policies = [
        {"name": syscalls, "namespace": NS, "state": "ENABLED"} | version(syscalls),
        {"name": uprobes, "namespace": NS, "state": "LOAD_ERROR", "error": ERROR} | old,
        {"name": uprobes, "namespace": NS, "state": "ENABLED"} | now,
    ]
    beat = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    await cluster.patch(
        r.OBSERVATION_NODES, BAD, {"status": {"policies": policies, "heartbeatTime": beat}}, status=True
    )

    def rollout() -> dict:
        return ((cluster.stored(r.OBSERVATION_POLICIES, "api", NS) or {}).get("status") or {}).get(
            "rollout"
        ) or {}

    await wait_for(
        lambda: rollout().get("nodesTotal") == 2 and rollout().get("nodesPending") == 1, what="folded"
    )
    await operator.settle()
    assert rollout()["nodesFailed"] == 0  # the policy: node-bad runs the current version
    assert pod_posture(cluster, "api-bad", NS)[0] == "EbpfDeep", pod_posture(cluster, "api-bad", NS)
