"""An owned object re-created under its name is read as itself, not through the dead one's patch.

The reconciler remembers each write of an object it owns (a Tetragon policy,
the agent ConfigMap) until the watch echo comes back (the read-your-writes
overlay, controller/state.py), keyed by the part of the index entry the write
was based on. That part was the object's managed view only, which holds no
uid: the pod and status overlays gained the uid in 2a53c81, this one had not.
When the watch ends in 410 Gone before the echo of a spec patch and the object
is deleted and made again under its name with the content it had before that
patch (a backup restore, ``kubectl replace --force`` of a saved copy), kopf
indexes the new object after the dead one, with exactly that part. The
overlay then answered with the dead object as patched: ``apply`` found
nothing to write, and the live object kept the old spec for good (a Tetragon
policy without the syscall the policy now asks for, while the operator
counted its new version). The overlay's part now holds the uid too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from stellaops_runtime.controller.patches import for_create
from stellaops_runtime.controller.reconcile import INDEX_OWNED, Reconciler
from stellaops_runtime.controller.state import obj_key

OWNER = {
    "apiVersion": "stellaops.io/v1alpha1",
    "kind": "RuntimeObserver",
    "name": "default",
    "uid": "obs-uid",
}


def _desired(value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "stellaops-agent",
            "namespace": "stellaops-system",
            "labels": {"app.kubernetes.io/managed-by": "stellaops-runtime"},
            "ownerReferences": [{**OWNER, "controller": True, "blockOwnerDeletion": True}],
        },
        "data": {"agent.yaml": value},
    }


def _live(value: str, uid: str) -> dict[str, Any]:
    body = for_create(_desired(value))
    body["metadata"]["uid"] = uid
    return body


class _Api:
    """Records the patches the reconciler sends; answers with the patched object."""

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    async def patch(
        self, res: Any, *, name: str, namespace: str | None, patch: dict[str, Any]
    ) -> dict[str, Any]:
        self.patches.append(patch)
        return _live(patch.get("data", {}).get("agent.yaml", ""), patch["metadata"]["uid"])


def test_an_owned_object_recreated_in_a_watch_gap_is_patched_again() -> None:
    api = _Api()
    reconciler = Reconciler(kube=api)  # type: ignore[arg-type]
    key = obj_key(_desired("old"))
    owned: dict[Any, list[dict[str, Any]]] = {key: [_live("old", "uid-old")]}
    reconciler.bind({INDEX_OWNED: owned})

    assert asyncio.run(reconciler.apply(_desired("new"))) == "patched"
    assert api.patches[0]["metadata"]["uid"] == "uid-old"

    # The echo is lost in a watch gap; the object is deleted and restored as it was before the
    # patch; kopf's re-list indexes the restored one (a new uid) after the dead one.
    owned[key] = [_live("old", "uid-old"), _live("old", "uid-new")]
    assert asyncio.run(reconciler.apply(_desired("new"))) == "patched", (
        "the restored object kept the old data"
    )
    assert api.patches[1]["data"] == {"agent.yaml": "new"}
    assert api.patches[1]["metadata"]["uid"] == "uid-new"  # the precondition names the live object

    # Its own echo comes back: nothing more to write.
    owned[key] = [_live("new", "uid-new")]
    assert asyncio.run(reconciler.apply(_desired("new"))) == "unchanged"
    assert len(api.patches) == 2
