"""An owned object replaced under its name before the operator saw it is decided on as it is live.

``apply`` patches an owned object (a Tetragon policy, the agent DaemonSet or ConfigMap) to its
rendering with the uid of the object as the operator last saw it (``metadata.uid``, a
precondition: controller/owned.py). When the object was deleted and made again under its name
since (a backup restore, ``kubectl replace --force``, a GitOps tool's re-create) and kopf has
not indexed the new one yet, the API server refuses that patch: 422 Invalid,
``metadata.uid ... field is immutable`` (tests/realkube/test_pod_patch_uid_real.py). That
refusal failed the whole reconcile: the policy's status said "422 Invalid" and the live object
stayed as restored (an older policy, without the calls the policy now asks for) until a retry
found the index caught up. ``apply`` now reads the live object on that refusal and decides on
it, once: ours is patched to its rendering under its own uid; another's is refused
(NotOwnedError, nothing written), as a write to it always was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.controller.ownership import NotOwnedError
from stellaops_runtime.controller.patches import for_create
from stellaops_runtime.controller.reconcile import INDEX_OWNED, Reconciler
from stellaops_runtime.controller.state import obj_key
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, obj
from tests.unit.test_owned_overlay_uid import _desired


@pytest.mark.parametrize("restored", ["ours", "another's"])
async def test_an_owned_object_replaced_before_the_index_saw_it_is_decided_on_live(
    tmp_path: Path, restored: str
) -> None:
    async with Cluster(tmp_path) as cluster:
        await cluster.create(obj("v1", "Namespace", "stellaops-system"))
        old = await cluster.create(for_create(_desired("old")))
        reconciler = Reconciler(kube=cluster.kube)
        key = obj_key(_desired("old"))
        reconciler.bind({INDEX_OWNED: {key: [old]}})  # the operator saw the first object only

        # Deleted and made again under its name before kopf indexed the new one.
        await cluster.delete(r.CONFIGMAPS, "stellaops-agent", namespace="stellaops-system")
        again = for_create(_desired("old"))
        if restored != "ours":  # a user's own ConfigMap of that name: not ours to write
            again["metadata"] = {"name": "stellaops-agent", "namespace": "stellaops-system"}
        new = await cluster.create(again)
        assert new["metadata"]["uid"] != old["metadata"]["uid"]

        if restored == "ours":
            assert await reconciler.apply(_desired("new")) == "patched"
            live: dict[str, Any] = cluster.stored(r.CONFIGMAPS, "stellaops-agent", "stellaops-system") or {}
            assert live["data"] == {"agent.yaml": "new"}, "the restored object kept its old content"
            assert live["metadata"]["uid"] == new["metadata"]["uid"]
        else:
            with pytest.raises(NotOwnedError):
                await reconciler.apply(_desired("new"))
            live = cluster.stored(r.CONFIGMAPS, "stellaops-agent", "stellaops-system") or {}
            assert live["data"] == {"agent.yaml": "old"}, "another's object was written"


async def test_an_owned_object_replaced_and_then_deleted_is_created(tmp_path: Path) -> None:
    """Replaced, then deleted again before the live read: the refusal failed the reconcile (the
    policy read "ApplyFailed: 422 Invalid: metadata.uid ... field is immutable"); it is wanted and
    absent, so it is created, as a reconcile that had read it gone would have."""
    async with Cluster(tmp_path) as cluster:
        await cluster.create(obj("v1", "Namespace", "stellaops-system"))
        old = await cluster.create(for_create(_desired("old")))
        reconciler = Reconciler(kube=cluster.kube)
        reconciler.bind({INDEX_OWNED: {obj_key(_desired("old")): [old]}})
        await cluster.delete(r.CONFIGMAPS, "stellaops-agent", namespace="stellaops-system")
        await cluster.create(for_create(_desired("old")))
        read = cluster.kube.get

        async def get_after_a_delete(res: Any, *, name: str, namespace: str | None = None) -> dict | None:
            await cluster.delete(res, name, namespace=namespace)  # deleted between the refusal and the read
            return await read(res, name=name, namespace=namespace)

        cluster.kube.get = get_after_a_delete  # type: ignore[method-assign]
        assert await reconciler.apply(_desired("new")) == "created"
        live: dict[str, Any] = cluster.stored(r.CONFIGMAPS, "stellaops-agent", "stellaops-system") or {}
        assert live["data"] == {"agent.yaml": "new"}
