"""A status is written only onto the policy it was computed for, on the real API server (v1.20).

tests/integration/test_status_write_uid.py runs the same race on kmock. What only the real server
shows: a merge patch of a custom resource's ``/status`` that names another ``metadata.uid`` is
applied, not refused (the status strategy copies the stored metadata over the patched object
before validation), so the precondition has to be a JSON patch ``test`` of ``/metadata/uid``.
The real Reconciler writes the status of a policy deleted and made again under its name since it
was read; the new policy keeps none of the dead policy's status, and the reconcile ends without
an error.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.crds import API_VERSION, POLICY_KIND
from stellaops_runtime.controller.reconcile import INDEX_NAMESPACES, INDEX_POLICIES, Reconciler
from stellaops_runtime.kube.client import Connection, KubeClient
from tests.realkube.controlplane import ControlPlane

pytestmark = pytest.mark.realkube
NS = "status-uid"
VALID = {"podSelector": {"matchLabels": {"app": "web"}}, "maxLevel": "ActiveTracing", "syscalls": ["connect"]}


def _policy(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": POLICY_KIND,
        "metadata": {"name": "web", "namespace": NS},
        "spec": spec,
    }


async def _reconcile(kubeconfig: Path, seen: dict[str, Any]) -> int:
    conn = await asyncio.to_thread(Connection.load, kubeconfig=str(kubeconfig))
    async with KubeClient(conn) as kube:
        reconciler = Reconciler(kube=kube)
        reconciler.bind({INDEX_POLICIES: {(POLICY_KIND, NS, "web"): [seen]}, INDEX_NAMESPACES: {NS: [{}]}})
        await reconciler.reconcile_policy(POLICY_KIND, NS, "web")
        return reconciler.stats.writes["status ObservationPolicy"]


def test_a_policy_replaced_since_it_was_read_never_gets_the_dead_policys_status(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    admin = control_plane.admin
    assert admin is not None
    admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    old = admin.create(_policy(VALID))
    admin.delete(API_VERSION, POLICY_KIND, "web", NS)
    new = admin.create(_policy({**VALID, "syscalls": ["execve"]}))
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    kubeconfig = control_plane.write_kubeconfig(tmp_path / "kubeconfig", token=None)
    assert asyncio.run(_reconcile(kubeconfig, old)) == 0  # refused, no error
    live = admin.get(API_VERSION, POLICY_KIND, "web", NS)
    assert live["metadata"]["uid"] == new["metadata"]["uid"]
    assert not live.get("status"), f"the dead policy's status on the new one: {live.get('status')}"
    admin.delete(API_VERSION, POLICY_KIND, "web", NS)  # no policy left for a later test's operator
