"""What the API server does with an object deleted while a finalizer holds it: one check, two servers.

The operator took such an object (``deletionTimestamp`` set, a finalizer pending) as applied: the
API server still accepts a patch of it. kube-apiserver v1.20 also bumps a custom resource's
``generation`` when it marks it deleted (``markAsDeleting``), refuses a create of its name (409,
"object is being deleted") and removes it once the last finalizer goes; the emulator bumped no
generation. ``check`` asserts the real server's answers; tests/integration/test_kmock_deletion.py
runs it on the emulator and tests/realkube/test_owned_terminating_real.py on the real server.
"""

from __future__ import annotations

from typing import Any

from stellaops_runtime.contracts.crds import TETRAGON_API_VERSION, TETRAGON_NAMESPACED_KIND
from stellaops_runtime.kube import resources as r
from stellaops_runtime.kube.client import KubeClient
from tests.integration.json_patch_rules import refusal

HOLD = "test.stellaops.io/hold"


def held(name: str, namespace: str, *, finalizers: bool = True) -> dict[str, Any]:
    """A Tetragon policy (v1.7.0's schema) that a test finalizer holds when it is deleted."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if finalizers:
        meta["finalizers"] = [HOLD]
    return {
        "apiVersion": TETRAGON_API_VERSION,
        "kind": TETRAGON_NAMESPACED_KIND,
        "metadata": meta,
        "spec": {"kprobes": [{"call": "sys_execve", "syscall": True}]},
    }


async def check(kube: KubeClient, ns: str) -> None:
    """The server's answers, asserted (``ns`` exists; it is left as it was)."""
    res = r.TRACING_POLICIES_NAMESPACED
    created = await kube.create(res, held("held", ns))
    assert await kube.delete(res, name="held", namespace=ns)
    live = await kube.get(res, name="held", namespace=ns) or {}
    meta = live.get("metadata") or {}
    assert meta.get("deletionTimestamp"), "deleted with a finalizer pending: it stays, marked"
    assert meta["uid"] == created["metadata"]["uid"]
    assert meta["generation"] == created["metadata"]["generation"] + 1, "marked deleted: generation + 1"
    # Still patched: what the operator used to take as applied.
    patched = await kube.patch(res, name="held", namespace=ns, patch={"metadata": {"labels": {"a": "b"}}})
    assert patched["metadata"]["labels"] == {"a": "b"} and patched["metadata"].get("deletionTimestamp")
    # Its name is taken until it goes.
    e = await refusal(kube.create(res, held("held", ns, finalizers=False)))
    assert e.status == 409 and e.conflict, e
    # The last finalizer goes: so does the object.
    await kube.patch(res, name="held", namespace=ns, patch={"metadata": {"finalizers": None}})
    assert await kube.get(res, name="held", namespace=ns) is None
