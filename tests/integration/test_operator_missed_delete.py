"""A deletion the operator never saw (a watch gap) must not make it act on the dead object.

kopf re-lists after a watch ends in 410 Gone (or reconnects from a
resourceVersion the API server no longer has), but it never tells its indexes
about objects deleted while the watch was down: their entries stay. A policy
pruned in such a gap and applied again under the same name (a GitOps rollback,
Argo CD's replace) is then indexed twice, the dead object first. The operator
read the first entry: it kept rendering the dead object's spec for the new one
(its Tetragon objects, stack traces and all, for a policy that no longer asked
for them) and never wrote the new object's status at all (what it computed
matched the dead object's status), so GitOps waited on a policy the operator
would never report.

The deletion is made here without a watch event (the emulator's store is
changed directly), which is exactly what the operator's indexes see after
such a gap. Of two entries under one name, the operator now takes the one
it saw last: the live object.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import API_VERSION, NODE_KIND, POLICY_KIND
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import (
    TEST_AGENT,
    Cluster,
    OperatorRun,
    _key,
    fast_config,
    obj,
    wait_for,
)
from tests.integration.test_rbac_requests import Authorizer, attributes, manifest_docs

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS = "shop"
DEEP: dict[str, Any] = {
    "podSelector": {"matchLabels": {"app": "web"}},
    "maxLevel": "EbpfDeep",
    "syscalls": ["execve"],
    "stackTraces": {"kernel": True, "user": False},
    "tcpState": True,
}
ACTIVE: dict[str, Any] = {
    "podSelector": {"matchLabels": {"app": "web"}},
    "maxLevel": "ActiveTracing",
    "syscalls": ["openat"],
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        yield c


def _ours(req: Any) -> bool:
    return not req.headers.get("User-Agent", "").startswith(TEST_AGENT)


def _names(cluster: Cluster) -> list[str]:
    return sorted(o["metadata"]["name"] for o in cluster.listed(r.TRACING_POLICIES_NAMESPACED, NS))


async def test_a_policy_recreated_after_a_missed_delete_is_the_one_reconciled(cluster: Cluster) -> None:
    async with OperatorRun(cluster, fast_config(cluster)) as op:
        await cluster.create(obj(API_VERSION, POLICY_KIND, "p", namespace=NS, spec=DEEP))
        # settle() alone returned before a starved operator had even seen the new policy (nothing
        # queued, no request for its quiet time): wait for what it renders, then for it to be done.
        deep = ["stellaops-p", "stellaops-p-stacks", "stellaops-p-tcp"]
        await wait_for(lambda: _names(cluster) == deep, limit_s=60, what="the policy's objects rendered")
        await op.settle()
        assert _names(cluster) == deep

        # Deleted while the operator's watch was down: no DELETED event ever reaches it.
        del cluster.api.objects[_key(r.OBSERVATION_POLICIES), NS, "p"]
        await cluster.create(obj(API_VERSION, POLICY_KIND, "p", namespace=NS, spec=ACTIVE))
        live = cluster.stored(r.OBSERVATION_POLICIES, "p", NS) or {}
        await wait_for(
            lambda: ((cluster.stored(r.OBSERVATION_POLICIES, "p", NS) or {}).get("status") or {}).get(
                "tetragonPolicies"
            ),
            what="the new policy's status",
        )
        await op.settle()

        # Only what the live object asks for, owned by it, and its status.
        assert _names(cluster) == ["stellaops-p"]
        tp = cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-p", NS) or {}
        assert [ref["uid"] for ref in tp["metadata"]["ownerReferences"]] == [live["metadata"]["uid"]]
        assert "openat" in str(tp["spec"]) and "execve" not in str(tp["spec"])
        status = (cluster.stored(r.OBSERVATION_POLICIES, "p", NS) or {}).get("status") or {}
        assert status["tetragonPolicies"] == ["stellaops-p"]
        assert status["observedGeneration"] == live["metadata"]["generation"]


async def test_objects_deleted_behind_the_operators_back_are_found_by_the_audit(cluster: Cluster) -> None:
    """Deleted in a watch gap and not re-created: the periodic audit notices and acts (index_audit)."""
    await cluster.create(obj(API_VERSION, NODE_KIND, "node-gone", spec={"nodeName": "node-gone"}))
    async with OperatorRun(cluster, fast_config(cluster, index_audit_seconds=1.0)) as op:
        await cluster.create(obj(API_VERSION, POLICY_KIND, "dead", namespace=NS, spec=DEEP))
        await wait_for(
            lambda: "stellaops-dead-stacks" in _names(cluster), limit_s=60, what="the dead policy's objects"
        )
        await op.settle()
        total = lambda: (  # noqa: E731
            ((cluster.stored(r.OBSERVATION_POLICIES, "p", NS) or {}).get("status") or {}).get("rollout") or {}
        ).get("nodesTotal")
        await wait_for(lambda: total() == 1, limit_s=60, what="the ObservationNode counted")

        # A policy, a Tetragon object of a live policy and an ObservationNode go in a watch gap.
        mark = cluster.mark()
        del cluster.api.objects[_key(r.OBSERVATION_POLICIES), NS, "dead"]
        del cluster.api.objects[_key(r.TRACING_POLICIES_NAMESPACED), NS, "stellaops-p"]
        del cluster.api.objects[_key(r.OBSERVATION_NODES), None, "node-gone"]

        # The dead policy's objects are removed, the live policy's object comes back, the node
        # no longer counts.
        await wait_for(
            lambda: _names(cluster) == ["stellaops-p"], limit_s=60, what="the dead policy's objects removed"
        )
        await wait_for(lambda: total() == 0, limit_s=60, what="the deleted ObservationNode no longer counted")
        await op.settle()
        assert op.reconciler.stats.errors["stale-index"] == 3
        # The audit's requests are within the operator's RBAC (it may list ObservationNodes, not get them).
        docs = manifest_docs()
        (sa,) = [d for d in docs if d["kind"] == "ServiceAccount"]
        rbac = Authorizer(docs, namespace=sa["metadata"]["namespace"], name=sa["metadata"]["name"])
        ours = [q for q in cluster.requests()[mark:] if _ours(q)]
        asked = [a for q in ours if (a := attributes(q.method.value, q.url.path, dict(q.url.query)))]
        assert [str(a) for a in asked if not rbac.allows(a)] == []
        tp = cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-p", NS) or {}
        live = cluster.stored(r.OBSERVATION_POLICIES, "p", NS) or {}
        assert [ref["uid"] for ref in tp["metadata"]["ownerReferences"]] == [live["metadata"]["uid"]]


async def test_a_kind_that_cannot_be_listed_leaves_the_others_audited(cluster: Cluster) -> None:
    """Tetragon's CRDs missing (a native-only cluster) or a list refused must not stop the audit."""

    def authorize(req: Any) -> bool:  # every list of Tetragon objects is refused, watches are not
        return not (
            req.method.value == "GET"
            and req.url.path.endswith("/tracingpoliciesnamespaced")
            and req.url.query.get("watch") not in ("true", "1")
            and "PartialObjectMetadataList" in req.headers.get("Accept", "")
        )

    cluster.api.authorize = authorize
    try:
        async with OperatorRun(cluster, fast_config(cluster, index_audit_seconds=1.0)) as op:
            await cluster.create(obj(API_VERSION, POLICY_KIND, "dead2", namespace=NS, spec=ACTIVE))
            await op.settle()
            assert "stellaops-dead2" in _names(cluster)
            del cluster.api.objects[_key(r.OBSERVATION_POLICIES), NS, "dead2"]
            await wait_for(
                lambda: "stellaops-dead2" not in _names(cluster),
                limit_s=60,
                what="the dead policy's object removed",
            )
            assert op.reconciler.stats.errors["stale-index"] == 1
    finally:
        cluster.api.authorize = None
