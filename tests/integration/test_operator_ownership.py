"""The operator writes only what it owns: foreign objects of a rendered name are refused and reported.

RBAC lets the operator write every Tetragon policy (docs/security.md says why
it cannot be narrower), so the operator checks ownership itself before every
patch and delete (``controller.ownership``). Here, through the real operator
against kmock:

- another team's TracingPolicyNamespaced that happens to have the name a
  policy renders is neither overwritten nor deleted: the policy is Degraded
  with reason NotOwned, one Warning Event says which object and why, and the
  operator sends no write to that object;
- an object carrying our label and annotation but controlled by someone else
  is not deleted, and does not hold the policy's deletion;
- the same for the agent objects of a RuntimeObserver;
- an object of ours whose owner references were stripped by hand is still
  ours (our label and annotation say whose) and is repaired.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.crds import API_VERSION, MANAGED_BY, OBSERVER_KIND, POLICY_KIND
from stellaops_runtime.controller.ownership import NOT_OWNED_REASON, POLICY_ANNOTATION
from stellaops_runtime.controller.render_agent import agent_resource_name
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, OperatorRun, obj, wait_for
from tests.integration.test_operator_policies import assert_applied_on_no_node, condition

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS = "shop"
AGENT_NS = crds.DEFAULT_AGENT_NAMESPACE
SYSCALLS = {"maxLevel": "ActiveTracing", "syscalls": ["execve"]}
TETRAGON_PATH = f"/apis/{crds.TETRAGON_API_VERSION}/namespaces/{NS}/{crds.TETRAGON_NAMESPACED_PLURAL}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        for ns in (NS, AGENT_NS):
            await c.create(obj("v1", "Namespace", ns))
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    async with OperatorRun(cluster) as op:
        yield op


def _foreign_policy(name: str, **meta: Any) -> dict[str, Any]:
    body = obj(
        crds.TETRAGON_API_VERSION,
        crds.TETRAGON_NAMESPACED_KIND,
        name,
        namespace=NS,
        spec={"kprobes": [{"call": "security_file_open", "syscall": False}]},  # someone's enforcement
    )
    body["metadata"].update(meta)
    return body


def _writes_to(cluster: Cluster, since: int, path: str) -> list[str]:
    return [
        w for w in cluster.writes(since) + cluster.writes(since, rejected=True) if w.split(" ", 1)[1] == path
    ]


def _events(cluster: Cluster, name: str, namespace: str) -> list[dict[str, Any]]:
    return [
        e
        for e in cluster.listed(r.EVENTS, namespace)
        if e["involvedObject"]["name"] == name and e["reason"] == NOT_OWNED_REASON
    ]


def _operator_requests(cluster: Cluster, since: int, method: str, path: str) -> list[Any]:
    return [
        q
        for q in cluster.requests()[since:]
        if q.method.value == method
        and q.url.path == path
        and not q.headers.get("User-Agent", "").startswith("stellaops-tests")
    ]


async def test_a_foreign_policy_of_a_rendered_name_is_left_alone(
    cluster: Cluster, operator: OperatorRun, caplog: pytest.LogCaptureFixture
) -> None:
    foreign = await cluster.create(_foreign_policy("stellaops-web"))
    before = copy.deepcopy(cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-web", NS))
    mark = cluster.mark()
    spec = {"podSelector": {"matchLabels": {"app": "web"}}, **SYSCALLS}
    await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace=NS, spec=spec))
    await wait_for(
        lambda: (
            condition(cluster.stored(r.OBSERVATION_POLICIES, "web", NS), "Degraded").get("reason")
            == NOT_OWNED_REASON
        ),
        what="the policy reports NotOwned",
    )
    await asyncio.sleep(1.5)  # several retries with backoff (it keeps retrying: no settling)
    policy = cluster.stored(r.OBSERVATION_POLICIES, "web", NS)
    degraded = condition(policy, "Degraded")
    assert degraded["status"] == "True" and condition(policy, "Ready")["status"] == "False"
    assert "TracingPolicyNamespaced shop/stellaops-web is not ours" in degraded["message"]
    assert f"not labelled {MANAGED_BY[0]}={MANAGED_BY[1]}" in degraded["message"]
    assert cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-web", NS) == before
    assert foreign["metadata"]["uid"] == before["metadata"]["uid"]
    # the create that found it (409) is the only write aimed at that name: no patch, no delete
    assert _writes_to(cluster, mark, f"{TETRAGON_PATH}/stellaops-web") == []
    (event,) = _events(cluster, "web", NS)  # once, not once per retry
    assert event["type"] == "Warning" and "stellaops-web is not ours" in event["message"]
    assert operator.reconciler.stats.errors["not-owned"] >= 2
    assert any(
        "refused to write TracingPolicyNamespaced shop/stellaops-web is not ours" in rec.getMessage()
        for rec in caplog.records
        if rec.levelname == "WARNING"
    )

    # the other team removes theirs: the policy takes the name and recovers
    await cluster.delete(r.TRACING_POLICIES_NAMESPACED, "stellaops-web", namespace=NS)
    await wait_for(
        lambda: (
            (cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-web", NS) or {})
            .get("metadata", {})
            .get("labels", {})
            .get(MANAGED_BY[0])
            == MANAGED_BY[1]
        ),
        limit_s=60,
        what="the policy renders its own object",
    )
    await wait_for(
        lambda: (
            condition(cluster.stored(r.OBSERVATION_POLICIES, "web", NS), "Degraded").get("status") == "False"
        ),
        what="the NotOwned condition clears",
    )


async def test_an_object_controlled_by_another_owner_is_not_deleted(
    cluster: Cluster, operator: OperatorRun
) -> None:
    # Labelled ours and annotated for policy "api", but its controller is another policy.
    imposter = _foreign_policy(
        "stellaops-api-uprobes",
        labels={MANAGED_BY[0]: MANAGED_BY[1]},
        annotations={POLICY_ANNOTATION: f"{POLICY_KIND}/{NS}/api"},
        ownerReferences=[
            {
                "apiVersion": API_VERSION,
                "kind": POLICY_KIND,
                "name": "other",
                "uid": "u-other",
                "controller": True,
            }
        ],
    )
    await cluster.create(imposter)
    mark = cluster.mark()
    await cluster.create(
        obj(API_VERSION, POLICY_KIND, "api", namespace=NS, spec=SYSCALLS)
    )  # renders no uprobes
    await wait_for(
        lambda: (
            condition(cluster.stored(r.OBSERVATION_POLICIES, "api", NS), "Degraded").get("reason")
            == NOT_OWNED_REASON
        ),
        what="the policy reports NotOwned",
    )
    message = condition(cluster.stored(r.OBSERVATION_POLICIES, "api", NS), "Degraded")["message"]
    assert "its controller is ObservationPolicy other, not ObservationPolicy api" in message
    assert cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-api", NS) is not None  # its own: written
    # deleting the policy is not held by an object it does not own, and leaves that object alone
    own_uid = (cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-api", NS) or {})["metadata"]["uid"]
    before_delete = cluster.mark()
    await cluster.delete(r.OBSERVATION_POLICIES, "api", namespace=NS)
    await wait_for(lambda: cluster.stored(r.OBSERVATION_POLICIES, "api", NS) is None, what="policy released")
    await operator.settle()
    # the delete names the uid it checked (a precondition the API server enforces)
    (delete,) = _operator_requests(cluster, before_delete, "DELETE", f"{TETRAGON_PATH}/stellaops-api")
    assert delete.data["preconditions"] == {"uid": own_uid}
    assert cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-api", NS) is None  # its own: deleted
    assert cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-api-uprobes", NS) is not None
    assert _writes_to(cluster, mark, f"{TETRAGON_PATH}/stellaops-api-uprobes") == []


async def test_stripped_owner_references_are_repaired(cluster: Cluster, operator: OperatorRun) -> None:
    spec = {"podSelector": {"matchLabels": {"app": "db"}}, **SYSCALLS}
    await cluster.create(obj(API_VERSION, POLICY_KIND, "db", namespace=NS, spec=spec))
    await operator.settle()
    owned = cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-db", NS) or {}
    refs = owned["metadata"]["ownerReferences"]
    mark = cluster.mark()
    await cluster.patch(
        r.TRACING_POLICIES_NAMESPACED, "stellaops-db", {"metadata": {"ownerReferences": None}}, namespace=NS
    )
    await wait_for(
        lambda: (
            (cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-db", NS) or {})
            .get("metadata", {})
            .get("ownerReferences")
            == refs
        ),
        what="owner references restored",
    )
    await operator.settle()
    assert_applied_on_no_node(cluster.stored(r.OBSERVATION_POLICIES, "db", NS))  # no node: not Ready
    # the repair names the uid it checked: a re-created object of that name would be refused
    (patch,) = _operator_requests(cluster, mark, "PATCH", f"{TETRAGON_PATH}/stellaops-db")
    assert patch.data["metadata"]["uid"] == owned["metadata"]["uid"]


async def test_a_foreign_agent_object_is_left_alone(cluster: Cluster, operator: OperatorRun) -> None:
    name = agent_resource_name("fleet")
    theirs = obj("v1", "ConfigMap", name, namespace=AGENT_NS, data={"theirs": "yes"})
    await cluster.create(theirs)
    mark = cluster.mark()
    spec = {
        "agentNamespace": AGENT_NS,
        "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
        "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
    }
    await cluster.create(obj(API_VERSION, OBSERVER_KIND, "fleet", spec=spec))
    await wait_for(
        lambda: (
            condition(cluster.stored(r.RUNTIME_OBSERVERS, "fleet"), "Degraded").get("reason")
            == NOT_OWNED_REASON
        ),
        what="the observer reports NotOwned",
    )
    await asyncio.sleep(1.0)  # retries
    assert (cluster.stored(r.CONFIGMAPS, name, AGENT_NS) or {}).get("data") == {"theirs": "yes"}
    assert _writes_to(cluster, mark, f"/api/v1/namespaces/{AGENT_NS}/configmaps/{name}") == []
    assert cluster.stored(r.DAEMONSETS, name, AGENT_NS) is not None  # the rest of the fleet is rendered
    assert len(_events(cluster, "fleet", "default")) == 1
