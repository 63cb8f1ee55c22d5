"""A Tetragon object being deleted is not applied, on the real API server (v1.20).

tests/integration/test_owned_terminating.py runs the operator (kopf) on kmock. What only the real
server shows (asserted by tests/integration/deletion_rules.py, run here too): an object a finalizer
holds, deleted, stays with ``deletionTimestamp`` set and its ``generation`` bumped, still accepts a
patch (so the operator took it as applied and its policy said so), and refuses a create of its
name with 409 "object is being deleted". The real Reconciler then, whether kopf has indexed the
object being deleted or not (a create refused 409 reads the live object), writes nothing to it and
says ``Progressing``/``WaitingForDeletion``; once it is gone, it creates it again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.crds import API_VERSION, POLICY_KIND, TETRAGON_API_VERSION
from stellaops_runtime.controller.conditions import WAITING_FOR_DELETION
from stellaops_runtime.controller.reconcile import INDEX_NAMESPACES, INDEX_OWNED, INDEX_POLICIES, Reconciler
from stellaops_runtime.controller.state import obj_key
from stellaops_runtime.kube.client import Connection, KubeClient
from tests.integration import deletion_rules
from tests.realkube.controlplane import ApiError, ControlPlane

pytestmark = pytest.mark.realkube
NS, TP, KIND = "owned-terminating", "stellaops-web", "TracingPolicyNamespaced"
SPEC = {"podSelector": {"matchLabels": {"app": "web"}}, "maxLevel": "ActiveTracing", "syscalls": ["connect"]}


async def _run(kubeconfig: Path, policy: dict[str, Any], owned: list[dict[str, Any]], rules: bool) -> None:
    conn = await asyncio.to_thread(Connection.load, kubeconfig=str(kubeconfig))
    async with KubeClient(conn) as kube:
        if rules:
            await deletion_rules.check(kube, NS)
        reconciler = Reconciler(kube=kube)
        reconciler.bind(
            {
                INDEX_POLICIES: {(POLICY_KIND, NS, "web"): [policy]},
                INDEX_NAMESPACES: {NS: [{}]},
                INDEX_OWNED: {obj_key(o): [o] for o in owned},
            }
        )
        await reconciler.reconcile_policy(POLICY_KIND, NS, "web")


def _true(body: dict[str, Any]) -> tuple[str, str, str]:
    for c in (body.get("status") or {}).get("conditions") or ():
        if c["status"] == "True":
            return c["type"], c["reason"], c["message"]
    return "", "", ""


def test_a_tetragon_object_being_deleted_is_not_applied_and_is_made_again_once_gone(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    admin = control_plane.admin
    assert admin is not None
    admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    kubeconfig = control_plane.write_kubeconfig(tmp_path / "kubeconfig", token=None)
    policy = admin.create(
        {
            "apiVersion": API_VERSION,
            "kind": POLICY_KIND,
            "metadata": {"name": "web", "namespace": NS},
            "spec": SPEC,
        }
    )
    try:
        asyncio.run(_run(kubeconfig, policy, [], rules=True))
        first = admin.get(TETRAGON_API_VERSION, KIND, TP, NS)
        assert first is not None
        admin.patch(TETRAGON_API_VERSION, KIND, TP, {"metadata": {"finalizers": [deletion_rules.HOLD]}}, NS)
        admin.delete(TETRAGON_API_VERSION, KIND, TP, NS)
        going = admin.get(TETRAGON_API_VERSION, KIND, TP, NS)
        assert going["metadata"].get("deletionTimestamp")
        # kopf has indexed it being deleted, or not (then the create is refused 409 and it is read).
        for owned in ([going], []):
            asyncio.run(_run(kubeconfig, policy, owned, rules=False))
            state, reason, message = _true(admin.get(API_VERSION, POLICY_KIND, "web", NS))
            assert (state, reason) == ("Progressing", WAITING_FOR_DELETION), f"{state} {reason}: {message}"
            assert f"{KIND} {NS}/{TP} is being deleted" in message
            now = admin.get(TETRAGON_API_VERSION, KIND, TP, NS)
            assert now["metadata"]["resourceVersion"] == going["metadata"]["resourceVersion"], "written to"
        admin.patch(TETRAGON_API_VERSION, KIND, TP, {"metadata": {"finalizers": None}}, NS)
        assert admin.get(TETRAGON_API_VERSION, KIND, TP, NS) is None
        asyncio.run(_run(kubeconfig, policy, [], rules=False))
        again = admin.get(TETRAGON_API_VERSION, KIND, TP, NS)
        assert again is not None and again["metadata"]["uid"] != first["metadata"]["uid"]
        assert _true(admin.get(API_VERSION, POLICY_KIND, "web", NS))[1] == "NoNodeRunning"
    finally:
        admin.delete(API_VERSION, POLICY_KIND, "web", NS)  # no policy left for a later test's operator
        try:  # a hold left by a failure released; the garbage collector may take the object first
            admin.patch(TETRAGON_API_VERSION, KIND, TP, {"metadata": {"finalizers": None}}, NS)
            admin.delete(TETRAGON_API_VERSION, KIND, TP, NS)
        except ApiError as e:
            if e.status != 404:
                raise
