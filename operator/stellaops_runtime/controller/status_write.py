"""Status writes that land only on the object they were computed for: a JSON patch testing the uid.

The reconciler computes a status from an object as kopf's index shows it, and writes it to the
status subresource by name. An object deleted and made again under that name in between
(``kubectl replace --force``, a GitOps tool's re-create) would take the dead object's status: a
wrong status a user reads with kubectl until the new object's own event is reconciled.

The precondition cannot be ``metadata.uid`` in a merge patch, as it is for pods and owned
objects: for a custom resource's ``/status`` the API server copies the stored object's metadata
over the patched object before it validates, so the uid is silently dropped and the patch is
applied (checked on kube-apiserver v1.20, tests/realkube/test_status_write_uid_real.py). A JSON
patch is applied to the stored object as it is, so its first operation, a ``test`` of
``/metadata/uid``, refuses any other object (422). That answer says nothing more specific, so on
a 422 the object is read: gone or another uid means "replaced" (nothing written, no error);
the same uid with another status than the one the ops were made against means a stale copy (the
ops are made again against the live status, once); the same status means a real refusal, raised.

``status_ops`` is pure: the JSON patch equivalent of ``patches.status_patch``'s changes, each
changed key replaced whole (``add``; a merge patch would merge a nested mapping such as
``rollout`` and keep a key the new value dropped) and each dropped key removed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from stellaops_runtime.kube.client import JSON_PATCH, ApiError, KubeClient
from stellaops_runtime.kube.resources import Resource

log = logging.getLogger(__name__)


def _pointer(key: str) -> str:
    """One RFC 6901 reference token (``~`` and ``/`` escaped)."""
    return key.replace("~", "~0").replace("/", "~1")


def status_ops(
    uid: str | None, current: Mapping[str, Any] | None, changes: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The JSON patch writing ``changes`` (status key -> new value, ``None`` to remove) over
    ``current`` (the status the changes were computed against), after a test of the object's uid.

    With no current status the whole status is added (a key-wise ``add`` needs ``/status`` to exist).
    """
    ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/uid", "value": uid}] if uid else []
    if not current:
        ops.append(
            {"op": "add", "path": "/status", "value": {k: v for k, v in changes.items() if v is not None}}
        )
        return ops
    for key, value in changes.items():
        path = f"/status/{_pointer(str(key))}"
        if value is None:
            if key in current:
                ops.append({"op": "remove", "path": path})
        else:
            ops.append({"op": "add", "path": path, "value": value})
    return ops


async def patch_status(
    api: KubeClient,
    res: Resource,
    *,
    name: str,
    namespace: str | None,
    uid: str | None,
    current: Mapping[str, Any] | None,
    changes: Mapping[str, Any],
) -> Mapping[str, Any] | None:
    """Write ``changes`` onto the status subresource; the status they were written over, or None
    when the object is gone or was replaced.

    ``current`` may be a write behind the live status (kopf's index between two of our writes'
    watch events): an op it makes that the live status refuses (``remove`` of a key already gone)
    is made again once against the live status, as the merge patch it replaced never failed.
    Raises the API server's refusal when the object is still the one of ``uid``.
    """
    path = res.path(namespace=namespace, name=name, subresource="status")
    base: Mapping[str, Any] = current or {}
    retried = False
    while True:  # at most twice: once more against the live status
        ops = status_ops(uid, base, changes)
        try:
            await api.request("PATCH", path, verb="patch", resource=res, body=ops, content_type=JSON_PATCH)
            return base
        except ApiError as e:
            if e.not_found:
                return None
            if e.status != 422 or not uid:
                raise
            live = await api.get(res, name=name, namespace=namespace)
            live_uid = ((live or {}).get("metadata") or {}).get("uid")
            if live_uid != uid:
                log.info(
                    "%s %s%s was replaced (uid %s, now %s) since it was read: its status is not written",
                    res.kind, f"{namespace}/" if namespace else "", name, uid, live_uid or "none",
                )  # fmt: skip
                return None
            status = (live or {}).get("status")
            live_status = dict(status) if isinstance(status, Mapping) else {}
            if retried or live_status == dict(base):
                raise  # not a stale copy: a real refusal
            retried, base = True, live_status
