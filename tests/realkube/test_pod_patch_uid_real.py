"""A pod's posture patch names the uid it was decided for, on the real API server (v1.20).

tests/integration/test_pod_patch_uid.py runs the same race on kmock, whose answer to a merge patch
naming another uid (422 Invalid, "metadata.uid ... field is immutable") is the one checked here:
the real Reconciler patches a pod deleted and made again under its name since it was read, the new
pod keeps none of the dead pod's posture, and the reconcile ends without an error.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.crds import (
    OBSERVE_LABEL,
    OBSERVE_LEVEL_ANNOTATION,
    POLICY_KIND,
    POSTURE_ANNOTATION,
)
from stellaops_runtime.controller.reconcile import (
    INDEX_NAMESPACES,
    INDEX_OBSERVATION_NODES,
    INDEX_PODS,
    INDEX_POLICIES,
    PodSnapshot,
    Reconciler,
)
from stellaops_runtime.kube.client import Connection, KubeClient
from tests.realkube.controlplane import ControlPlane
from tests.unit.test_pod_overlay_uid import POLICY, _node

pytestmark = pytest.mark.realkube
NS = "uid-race"


def _pod(annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": NS, "labels": {"app": "web"}, "annotations": annotations},
        "spec": {"automountServiceAccountToken": False, "containers": [{"name": "c", "image": "busybox"}]},
    }


async def _reconcile(kubeconfig: Path, pods: dict[Any, list[PodSnapshot]]) -> int:
    conn = await asyncio.to_thread(Connection.load, kubeconfig=str(kubeconfig))
    async with KubeClient(conn) as kube:
        reconciler = Reconciler(kube=kube)
        policy = {**POLICY, "metadata": {**POLICY["metadata"], "namespace": NS}}
        reconciler.bind(
            {
                INDEX_PODS: pods,
                INDEX_NAMESPACES: {NS: [{}]},
                INDEX_OBSERVATION_NODES: {"node-a": [_node()]},
                INDEX_POLICIES: {(POLICY_KIND, NS, "web"): [policy]},
            }
        )
        await reconciler.reconcile_pod(NS, "web-0")
        return reconciler.stats.writes["pod"]


def test_a_pod_replaced_since_it_was_read_keeps_its_own_posture(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    admin = control_plane.admin
    admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    old = admin.create(_pod({}))
    admin.request("DELETE", admin.path("v1", "Pod", "web-0", NS) + "?gracePeriodSeconds=0")
    new = admin.create(_pod({OBSERVE_LEVEL_ANNOTATION: "none"}))  # opted out
    snapshot = PodSnapshot.of({**old, "spec": {"nodeName": "node-a"}})
    kubeconfig = control_plane.write_kubeconfig(tmp_path / "kubeconfig", token=None)
    assert asyncio.run(_reconcile(kubeconfig, {(NS, "web-0"): [snapshot]})) == 0  # refused, no error
    meta = admin.get("v1", "Pod", "web-0", NS)["metadata"]
    assert meta["uid"] == new["metadata"]["uid"]
    assert OBSERVE_LABEL not in (meta.get("labels") or {}) and POSTURE_ANNOTATION not in meta["annotations"]
