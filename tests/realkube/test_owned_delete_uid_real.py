"""An owned object to delete, replaced since it was read, on the real API server (v1.20).

tests/integration/test_owned_delete_uid.py runs a policy's reconcile on kmock, whose answer to a
delete naming another uid (409 Conflict, "the UID in the precondition (...) does not match the UID
in record (...)") is the one checked here: the real ``delete_owned`` of a Tetragon object deleted
and made again under its name since it was read deletes it when the new one is ours, and refuses
(nothing deleted) when it is not.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.crds import MANAGED_BY, TETRAGON_API_VERSION, TETRAGON_POLICY_KIND
from stellaops_runtime.controller.ownership import NotOwnedError, Owner
from stellaops_runtime.controller.patches import for_create
from stellaops_runtime.controller.reconcile import INDEX_OWNED, Reconciler
from stellaops_runtime.controller.state import obj_key
from stellaops_runtime.kube.client import Connection, KubeClient
from tests.realkube.controlplane import ControlPlane

pytestmark = pytest.mark.realkube
NAME = "stellaops-delete-uid"
OWNER = Owner(
    api_version="stellaops.io/v1alpha1", kind="ClusterObservationPolicy", name="p", uid="", entry="x"
)


def _tp(*, ours: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": NAME}
    if ours:
        meta["labels"] = {MANAGED_BY[0]: MANAGED_BY[1]}
        meta["annotations"] = {"stellaops.io/policy": "x"}
    return for_create(
        {"apiVersion": TETRAGON_API_VERSION, "kind": TETRAGON_POLICY_KIND, "metadata": meta, "spec": {}}
    )


async def _delete(kubeconfig: Path, seen: dict[str, Any]) -> bool | str:
    conn = await asyncio.to_thread(Connection.load, kubeconfig=str(kubeconfig))
    async with KubeClient(conn) as kube:
        reconciler = Reconciler(kube=kube)
        reconciler.bind({INDEX_OWNED: {obj_key(seen): [seen]}})  # kopf has not seen the new one
        try:
            return await reconciler.delete_owned(obj_key(seen), OWNER)
        except NotOwnedError as e:
            return e.why


@pytest.mark.parametrize("restored", ["ours", "another's"])
def test_an_owned_object_replaced_since_it_was_read_is_decided_on_live(
    control_plane: ControlPlane, tmp_path: Path, restored: str
) -> None:
    admin = control_plane.admin
    assert admin is not None
    seen = admin.create(_tp(ours=True))
    admin.delete(TETRAGON_API_VERSION, TETRAGON_POLICY_KIND, NAME)
    new = admin.create(_tp(ours=restored == "ours"))
    kubeconfig = control_plane.write_kubeconfig(tmp_path / "kubeconfig", token=None)
    try:
        outcome = asyncio.run(_delete(kubeconfig, seen))
        live = admin.get(TETRAGON_API_VERSION, TETRAGON_POLICY_KIND, NAME)
        if restored == "ours":
            assert outcome is True and live is None
        else:
            assert outcome == f"it is not labelled {MANAGED_BY[0]}={MANAGED_BY[1]}"
            assert live is not None and live["metadata"]["uid"] == new["metadata"]["uid"]
    finally:
        admin.delete(TETRAGON_API_VERSION, TETRAGON_POLICY_KIND, NAME)
