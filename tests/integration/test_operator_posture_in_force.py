"""A pod's posture rests only on what is in force: applied Tetragon objects, and never on the agents.

Two ways the operator used to label pods for probes nobody ran:

- A policy whose Tetragon object was refused (another owner holds its name,
  ``NotOwned``) or failed to apply still gave the pods it selects its whole
  ``maxLevel``: ``observe-posture: EbpfDeep`` and the deep label for a pod
  whose uprobes object is not in the cluster. The policy is Degraded, but
  the pod's posture is what says what is collected about it. Now the policy
  gives such pods the level just below the lowest one a missing object
  needs (``in_force``), the reason names the objects, and the pod gets its
  full level back once they are applied. Native nodes read the policy from
  the probe ConfigMap, not from Tetragon's objects: no cap there.
- A ClusterObservationPolicy without a namespaceSelector (every namespace)
  gave the agent's own pods observe labels: Tetragon would trace the agent's
  own syscalls and uprobes (libssl for its own PostgreSQL TLS), feeding on
  itself. Now the pods of the DaemonSet the operator rendered for a
  RuntimeObserver (found by the DaemonSet's uid in their controller
  reference, never by a name or labels a pod could copy) get posture None.

Through the real operator against kmock (which has no DaemonSet controller:
the test creates the agent pods with the owner reference it would set).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.crds import (
    API_VERSION,
    CLUSTER_POLICY_KIND,
    OBSERVE_DEEP_LABEL,
    OBSERVE_LABEL,
    OBSERVER_KIND,
    POLICY_KIND,
)
from stellaops_runtime.controller.render_agent import agent_resource_name
from stellaops_runtime.controller.render_policy import tetragon_policy_names
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.posture_cluster import add_nodes, observer_spec, pod_posture
from tests.integration.test_operator_policies import condition

pytestmark = pytest.mark.asyncio(loop_scope="module")

AGENT_NS, NS, OBSERVER = "stellaops-agent", "shop", "fleet"
TETRAGON_NODE, NATIVE_NODE = "node-t", "node-n"
UPROBES = tetragon_policy_names(name="web")[1]
WEB = {
    "podSelector": {"matchLabels": {"app": "web"}},
    "maxLevel": "EbpfDeep",
    "syscalls": ["execve"],
    "functions": [{"binaryPath": "/usr/lib/libssl.so.3", "symbols": ["SSL_read"]}],
}
OBSERVER_SPEC = observer_spec(AGENT_NS)


def _pod(name: str, namespace: str, node: str, labels: dict[str, str], owner: dict | None = None) -> dict:
    body = obj(
        "v1",
        "Pod",
        name,
        namespace=namespace,
        labels=labels,
        spec={"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
    )
    if owner is not None:
        body["metadata"]["ownerReferences"] = [owner]
    return body


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        for ns in (AGENT_NS, NS):
            await c.create(obj("v1", "Namespace", ns))
        await add_nodes(c, ((TETRAGON_NODE, "tetragon"), (NATIVE_NODE, "native")))
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    # Heartbeats written once: they must not go stale (None for that reason) on a slow machine.
    async with OperatorRun(cluster, fast_config(cluster, stale_after_seconds=3600.0)) as op:
        await op.settle()
        yield op


def _posture(cluster: Cluster, name: str, namespace: str = NS) -> tuple[str, str, set[str]]:
    return pod_posture(cluster, name, namespace)


async def test_a_policy_whose_uprobes_object_is_refused_gives_pods_only_what_is_applied(
    cluster: Cluster, operator: OperatorRun
) -> None:
    # Another team's object holds the name of web's uprobes object: it is refused (NotOwned).
    foreign = obj(
        crds.TETRAGON_API_VERSION, crds.TETRAGON_NAMESPACED_KIND, UPROBES, namespace=NS, spec={"kprobes": []}
    )
    await cluster.create(foreign)
    await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace=NS, spec=WEB))
    await cluster.create(_pod("web-t", NS, TETRAGON_NODE, {"app": "web"}))
    await cluster.create(_pod("web-n", NS, NATIVE_NODE, {"app": "web"}))
    await wait_for(
        lambda: (
            condition(cluster.stored(r.OBSERVATION_POLICIES, "web", NS), "Degraded").get("reason")
            == "NotOwned"
        ),
        what="web refused its uprobes object",
    )
    await wait_for(lambda: _posture(cluster, "web-t")[0] == "ActiveTracing", what="web-t at ActiveTracing")
    _, reason, labels = _posture(cluster, "web-t")
    assert labels == {OBSERVE_LABEL}  # no deep label: no uprobes object selects it
    assert UPROBES in reason and "at most ActiveTracing" in reason
    # The native probes read the policy from the probe ConfigMap: in force there.
    await wait_for(lambda: _posture(cluster, "web-n")[0] == "EbpfDeep", what="web-n at EbpfDeep")

    # The foreign object goes: web applies its own, and the pod gets its level back.
    await cluster.delete(r.TRACING_POLICIES_NAMESPACED, UPROBES, namespace=NS)
    await wait_for(
        lambda: _posture(cluster, "web-t")[0] == "EbpfDeep", limit_s=60, what="web-t back at EbpfDeep"
    )
    assert _posture(cluster, "web-t")[2] == {OBSERVE_LABEL, OBSERVE_DEEP_LABEL}
    assert UPROBES not in _posture(cluster, "web-t")[1]


async def test_the_agents_own_pods_are_never_observed(cluster: Cluster, operator: OperatorRun) -> None:
    everything = {"podSelector": {}, "maxLevel": "EbpfDeep", "syscalls": ["execve"]}
    await cluster.create(obj(API_VERSION, CLUSTER_POLICY_KIND, "everything", spec=everything))
    await cluster.create(obj(API_VERSION, OBSERVER_KIND, OBSERVER, spec=OBSERVER_SPEC))
    ds_name = agent_resource_name(OBSERVER)
    await wait_for(lambda: cluster.stored(r.DAEMONSETS, ds_name, AGENT_NS) is not None, what="the DaemonSet")
    ds = cluster.stored(r.DAEMONSETS, ds_name, AGENT_NS) or {}
    labels = ds["spec"]["template"]["metadata"]["labels"]
    ref = {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": ds_name, "controller": True}
    # The agent pod, as the DaemonSet controller creates it.
    await cluster.create(
        _pod("agent-1", AGENT_NS, TETRAGON_NODE, labels, ref | {"uid": ds["metadata"]["uid"]})
    )
    # Look-alikes: the same labels and controller name, but not that DaemonSet object.
    await cluster.create(_pod("copy-1", AGENT_NS, TETRAGON_NODE, labels, ref | {"uid": "not-the-ds-uid"}))
    await cluster.create(_pod("copy-2", NS, TETRAGON_NODE, labels, ref | {"uid": ds["metadata"]["uid"]}))
    await cluster.create(_pod("copy-3", AGENT_NS, TETRAGON_NODE, labels))

    await wait_for(lambda: _posture(cluster, "agent-1", AGENT_NS)[0] == "None", what="the agent at None")
    _, reason, ours = _posture(cluster, "agent-1", AGENT_NS)
    assert ours == set()
    assert reason == (
        f"a StellaOps agent pod (DaemonSet {AGENT_NS}/{ds_name} of RuntimeObserver {OBSERVER}): "
        "the agents do not observe themselves"
    )
    for name, ns in (("copy-1", AGENT_NS), ("copy-2", NS), ("copy-3", AGENT_NS)):
        await wait_for(lambda n=name, s=ns: _posture(cluster, n, s)[0] == "EbpfDeep", what=f"{name} observed")
        assert _posture(cluster, name, ns)[2] == {OBSERVE_LABEL, OBSERVE_DEEP_LABEL}


async def test_an_object_that_cannot_be_created_caps_but_a_failed_update_does_not(
    cluster: Cluster, operator: OperatorRun
) -> None:
    """Not created (403 here): nothing traces, the cap holds. An update refused while the
    previous version of ours exists: that version still traces, and a transient API error
    must not strip the pods' level labels (which would stop that tracing too)."""
    db_uprobes = tetragon_policy_names(name="db")[1]
    refuse = {"on": True}

    def authorize(request: Any) -> bool:
        if not refuse["on"] or request.method.value not in ("POST", "PATCH", "PUT"):
            return True
        data = request.data if isinstance(request.data, dict) else {}
        named = str(request.url.path).endswith(f"/{db_uprobes}") or (
            (data.get("metadata") or {}).get("name") == db_uprobes
        )
        return not named

    # The previous test's policy selects every pod (EbpfDeep, all applied): not in this one.
    await cluster.delete(r.CLUSTER_OBSERVATION_POLICIES, "everything")
    await wait_for(
        lambda: cluster.stored(r.CLUSTER_OBSERVATION_POLICIES, "everything") is None, what="everything gone"
    )
    cluster.api.authorize = authorize
    try:
        db = WEB | {"podSelector": {"matchLabels": {"app": "db"}}}
        await cluster.create(obj(API_VERSION, POLICY_KIND, "db", namespace=NS, spec=db))
        await cluster.create(_pod("db-t", NS, TETRAGON_NODE, {"app": "db"}))
        await wait_for(
            lambda: _posture(cluster, "db-t")[0] == "ActiveTracing", limit_s=60, what="db-t capped"
        )
        assert db_uprobes in _posture(cluster, "db-t")[1]
        assert cluster.stored(r.TRACING_POLICIES_NAMESPACED, db_uprobes, NS) is None

        refuse["on"] = False  # created on the next retry: the full level
        await wait_for(lambda: _posture(cluster, "db-t")[0] == "EbpfDeep", limit_s=60, what="db-t full")

        refuse["on"] = True  # a spec change whose update of that object is refused
        functions = [{"binaryPath": "/usr/lib/libssl.so.3", "symbols": ["SSL_read", "SSL_write"]}]
        await cluster.patch(r.OBSERVATION_POLICIES, "db", {"spec": {"functions": functions}}, namespace=NS)
        await wait_for(
            lambda: (
                condition(cluster.stored(r.OBSERVATION_POLICIES, "db", NS), "Degraded").get("reason")
                == "ApplyFailed"
            ),
            what="db's update refused",
        )
        # A pod created now is decided on the same record a re-evaluation of db-t would use.
        await cluster.create(_pod("db-t2", NS, TETRAGON_NODE, {"app": "db"}))
        await wait_for(lambda: _posture(cluster, "db-t2")[0], limit_s=60, what="db-t2 decided")
        for pod in ("db-t2", "db-t"):
            assert _posture(cluster, pod)[0] == "EbpfDeep"
            assert _posture(cluster, pod)[2] == {OBSERVE_LABEL, OBSERVE_DEEP_LABEL}
    finally:
        cluster.api.authorize = None
