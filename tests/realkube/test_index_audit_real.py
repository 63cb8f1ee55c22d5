"""The index audit's metadata-only lists on the real kube-apiserver (v1.20), under the operator's RBAC.

``controller.index_audit`` lists policies, our Tetragon objects,
ObservationNodes and pods as ``PartialObjectMetadataList`` (metadata only: an audit
must not pull every ObservationNode's whole status every few minutes). kmock
ignores that Accept header; here the real server must honour it for our CRDs
and Tetragon's, and the operator's ServiceAccount must be allowed each list
(tests/integration/test_operator_missed_delete.py runs the audit itself).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from stellaops_runtime.contracts.crds import API_VERSION, NODE_KIND, POLICY_KIND
from stellaops_runtime.controller.index_audit import listed_uids
from stellaops_runtime.kube import resources as r
from stellaops_runtime.kube.client import KubeClient
from tests.realkube.controlplane import OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, ControlPlane

pytestmark = pytest.mark.realkube

NS = "audit-real"


async def _lists(kubeconfig: Path) -> dict[str, list[dict]]:
    kube = await KubeClient.connect(kubeconfig=str(kubeconfig))
    async with kube:
        by_name = {  # how the audit confirms a missing object: a list by name (RBAC: no get)
            "node-by-name": await kube.list(
                r.OBSERVATION_NODES, field_selector="metadata.name=audit-node", metadata_only=True
            ),
            "policy-by-name": await kube.list(
                r.OBSERVATION_POLICIES, namespace=NS, field_selector="metadata.name=a", metadata_only=True
            ),
            "no-such-name": await kube.list(
                r.OBSERVATION_NODES, field_selector="metadata.name=no-such-node", metadata_only=True
            ),
            "pod-by-name": await kube.list(
                r.PODS, namespace=NS, field_selector="metadata.name=no-such-pod", metadata_only=True
            ),
        }
        state = SimpleNamespace(api=kube)
        paged = {  # the audit's own lists: one object per page, followed by ``continue``
            res.plural: await listed_uids(state, res, page=1)  # type: ignore[arg-type]
            for res in (r.OBSERVATION_POLICIES, r.PODS)
        }
        by_name |= {f"paged-{k}": [{"metadata": {"uid": u}} for u in sorted(v)] for k, v in paged.items()}
        return by_name | {
            res.plural: await kube.list(res, label_selector=selector, metadata_only=True)
            for res, selector in (
                (r.OBSERVATION_POLICIES, None),
                (r.CLUSTER_OBSERVATION_POLICIES, None),
                (r.TRACING_POLICIES, "app.kubernetes.io/managed-by=stellaops-runtime"),
                (r.TRACING_POLICIES_NAMESPACED, "app.kubernetes.io/managed-by=stellaops-runtime"),
                (r.OBSERVATION_NODES, None),
                (r.PODS, None),
            )
        }


def test_metadata_only_lists_work_under_the_operators_rbac(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    admin = control_plane.admin
    assert admin is not None
    admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    spec = {
        "podSelector": {"matchLabels": {"app": "audit"}},
        "maxLevel": "ActiveTracing",
        "syscalls": ["execve"],
    }
    admin.apply(
        {
            "apiVersion": API_VERSION,
            "kind": POLICY_KIND,
            "metadata": {"name": "a", "namespace": NS},
            "spec": spec,
        }
    )
    admin.apply(
        {
            "apiVersion": API_VERSION,
            "kind": POLICY_KIND,
            "metadata": {"name": "b", "namespace": NS},
            "spec": spec,
        }
    )
    admin.apply(
        {
            "apiVersion": API_VERSION,
            "kind": NODE_KIND,
            "metadata": {"name": "audit-node"},
            "spec": {"nodeName": "audit-node"},
        }
    )
    try:
        token = control_plane.service_account_token(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT)
        kubeconfig = control_plane.write_kubeconfig(tmp_path / "operator.kubeconfig", token=token)

        lists = asyncio.run(_lists(kubeconfig))

        policies = [i for i in lists[r.OBSERVATION_POLICIES.plural] if i["metadata"]["namespace"] == NS]
        nodes = [i for i in lists[r.OBSERVATION_NODES.plural] if i["metadata"]["name"] == "audit-node"]
        for item in (*policies, *nodes):
            assert item["metadata"]["uid"]
            assert item.get("kind") == "PartialObjectMetadata"  # the server honoured the Accept header
            assert "spec" not in item and "status" not in item
        assert len(policies) == 2 and len(nodes) == 1
        assert [i["metadata"]["uid"] for i in lists["node-by-name"]] == [nodes[0]["metadata"]["uid"]]
        (a,) = [i for i in policies if i["metadata"]["name"] == "a"]
        assert [i["metadata"]["uid"] for i in lists["policy-by-name"]] == [a["metadata"]["uid"]]
        assert lists["no-such-name"] == []
        # Pods too (a list refused by RBAC would have raised): every item metadata only.
        assert lists["pod-by-name"] == []
        assert all(i.get("kind") == "PartialObjectMetadata" for i in lists[r.PODS.plural])
        # Paged one by one (limit=1, continue), the audit finds every object the unpaged list has.
        for res in (r.OBSERVATION_POLICIES, r.PODS):
            assert {i["metadata"]["uid"] for i in lists[f"paged-{res.plural}"]} == {
                i["metadata"]["uid"] for i in lists[res.plural]
            }
        assert len(lists[f"paged-{r.OBSERVATION_POLICIES.plural}"]) >= 2
    finally:
        # Later modules share the control plane: an ObservationNode left here is one more node every
        # later policy must roll out to (test_loaded_version_real waited 60 s for "Ready" after it).
        admin.delete(API_VERSION, NODE_KIND, "audit-node")
        for name in ("a", "b"):
            admin.delete(API_VERSION, POLICY_KIND, name, NS)
