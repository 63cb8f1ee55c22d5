"""The API server's error answers as one exception, ``ApiError``, with what callers decide on.

Callers branch on the HTTP status (404 gone, 409 conflict, 403 refused; a 404
naming no object is a kind not served, ``kind_not_served``) and,
for a throttled request (429, or 503 with a ``Retry-After``), on how long the
server asked to wait (``retry_after``, ``kube.throttle``). The server's own
``reason`` and ``message`` are kept (cut at 500 characters) for logs, Events
and status messages.
"""

from __future__ import annotations

import json


class ApiError(RuntimeError):
    """The API server answered with an error status (``status`` is the HTTP code)."""

    def __init__(
        self,
        *,
        status: int,
        reason: str,
        message: str,
        method: str,
        path: str,
        retry_after: float | None = None,
        object_name: str = "",
    ) -> None:
        wait = f" (retry after {retry_after:g}s)" if retry_after is not None else ""
        super().__init__(f"{method} {path}: {status} {reason}: {message}{wait}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after  # seconds the server asked to wait (throttling), else None
        self.object_name = object_name  # the object the answer names (its Status's details.name), if any

    @property
    def throttled(self) -> bool:
        """The server refused for load (429, or 503 with a Retry-After): not processed; try later."""
        return self.status == 429 or (self.status == 503 and self.retry_after is not None)

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def kind_not_served(self) -> bool:
        """A 404 for the kind itself (its CRD not installed, its group or version not served), not
        for one object: kube-apiserver (v1.20) answers a bare "404 page not found" there, and a
        Status naming the object (or its namespace) in ``details.name`` for a missing object
        (tests/realkube/test_not_found_real.py)."""
        return self.status == 404 and not self.object_name

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def uid_mismatch(self) -> bool:
        """A write naming another uid than the object's (a uid precondition in a patch): the object
        was replaced under its name. The API server (v1.20, tests/realkube) says 422 Invalid,
        "metadata.uid: ... field is immutable"; its update path's precondition says 409 Conflict,
        "Precondition failed: UID in precondition"; a delete's ``preconditions.uid`` 409 Conflict,
        "the UID in the precondition (...) does not match the UID in record (...)"
        (tests/realkube/test_owned_delete_uid_real.py)."""
        if self.status == 422:
            return "metadata.uid" in self.message
        return self.status == 409 and (
            "UID in precondition" in self.message or "UID in the precondition" in self.message
        )


def api_error(
    status: int, text: str, *, method: str, path: str, retry_after: float | None = None
) -> ApiError:
    reason, message, name = "", text[:500], ""
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        reason = str(doc.get("reason") or "")
        message = str(doc.get("message") or message)[:500]
        details = doc.get("details")
        if isinstance(details, dict) and isinstance(details.get("name"), str):
            name = details["name"][:253]
    return ApiError(
        status=status,
        reason=reason,
        message=message,
        method=method,
        path=path,
        retry_after=retry_after,
        object_name=name,
    )
