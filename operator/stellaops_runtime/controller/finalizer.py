"""Releasing a deleted policy's finalizer, and saying so loudly when the API server refuses.

kopf removes its finalizer with a JSON patch; when that patch comes back 422
it takes it for a lost race and retries "on the next cycle", logging only at
DEBUG. A 422 is also what a server without CRD validation ratcheting
(Kubernetes before 1.30) answers for *any* write to an object whose spec the
current schema rejects (a CRD tightened after the object was created): the
finalizer can then never be removed, the policy stays ``Terminating``, and
nothing said why.

So the operator removes its own finalizer as the last step of its delete
handler: a JSON patch that tests the finalizer is still at the index it was
seen at and removes it (kopf then finds nothing left to do). A patch the
server throttled (429) or failed (5xx) is no refusal: kopf tries again,
nothing is reported. When that patch
is refused for another reason than the test (the object is re-read: the
finalizer is still where it was), ``release_finalizer`` logs an ERROR with
the object, the status code and the server's message, and posts a Warning
Event ``FinalizerRemovalRejected`` on the policy. docs/operator-operations.md
gives the recipe that works on such a server (the finalizer removed in the
same patch that makes the spec valid again).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from stellaops_runtime.kube.client import JSON_PATCH, ApiError, KubeClient
from stellaops_runtime.kube.resources import Resource

log = logging.getLogger(__name__)

REJECTED_REASON = "FinalizerRemovalRejected"


def removal_ops(finalizers: list[str], finalizer: str) -> list[dict[str, Any]] | None:
    """The JSON patch removing ``finalizer`` if it is still at the index it is at now; None if absent."""
    if finalizer not in finalizers:
        return None
    i = finalizers.index(finalizer)
    path = f"/metadata/finalizers/{i}"
    return [{"op": "test", "path": path, "value": finalizer}, {"op": "remove", "path": path}]


def rejected_message(*, kind: str, ref: str, status: int, message: str) -> str:
    """What the ERROR log and the Event say about a refused finalizer removal."""
    return (
        f"{kind} {ref}: the API server refused to remove the finalizer (HTTP {status}): {message}. "
        "The policy stays Terminating until the object is valid under the installed CRD again; see "
        "docs/operator-operations.md, 'A policy stuck in Terminating'"
    )


async def release_finalizer(
    api: KubeClient,
    resource: Resource,
    body: Mapping[str, Any],
    *,
    finalizer: str,
    event: Callable[[Mapping[str, Any], str, str], Awaitable[None]],
) -> bool:
    """Remove ``finalizer`` from the deleted object ``body``; True when it is gone (or the object is).

    A refusal that is not a lost race is logged at ERROR and posted as a
    Warning Event (``event(involved, reason, message)``); the caller lets
    kopf go on (its own removal meets the same refusal, silently).
    """
    meta = body.get("metadata") or {}
    name, namespace = str(meta.get("name") or ""), meta.get("namespace") or None
    ops = removal_ops(list(meta.get("finalizers") or ()), finalizer)
    if ops is None:
        return True
    path = resource.path(namespace=namespace, name=name)
    try:
        await api.request("PATCH", path, verb="patch", resource=resource, body=ops, content_type=JSON_PATCH)
        return True
    except ApiError as e:
        if e.not_found:
            return True
        if e.throttled or e.status >= 500:  # load or an outage, not a refusal: kopf tries again
            log.info("%s %s: finalizer removal not done yet (%s); tried again", resource.kind, name, e)
            return False
        refusal = e
    # A failed "test" (the finalizers changed since kopf's copy) is a lost race: kopf retries.
    try:
        current = await api.get(resource, name=name, namespace=namespace)
    except ApiError:
        current = None
    if current is None:
        return True
    if removal_ops(list((current.get("metadata") or {}).get("finalizers") or ()), finalizer) != ops:
        return False
    ref = f"{namespace}/{name}" if namespace else name
    message = rejected_message(kind=resource.kind, ref=ref, status=refusal.status, message=refusal.message)
    log.error("%s", message)
    await event(current, REJECTED_REASON, message[:1024])
    return False
