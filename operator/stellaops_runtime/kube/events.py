"""The core/v1 Event the operator posts about one of its objects (``KubeClient.post_event``).

Cluster-scoped objects' Events go to the ``default`` namespace; the name is
the object's plus a random suffix (Events are never updated, only created);
the message is cut at 1024 characters.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def event_body(
    involved: Mapping[str, Any], *, type: str, reason: str, message: str, component: str
) -> dict[str, Any]:
    """A core/v1 Event about ``involved`` (a whole object)."""
    meta = involved.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ref = {
        "apiVersion": involved.get("apiVersion", ""),
        "kind": involved.get("kind", ""),
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
    }
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta.get('name', 'object')}.{secrets.token_hex(8)}",
            "namespace": namespace,
        },
        "involvedObject": ref,
        "reason": reason,
        "message": message[:1024],
        "type": type,
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    return event
