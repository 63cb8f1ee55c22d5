"""Containers that ran with no image digest: the registry cannot say which image they ran.

A container gets no image digest when its reference moved after it was
created (containerd, observer.py), when its image was removed, or when its
image has no registry digest (a Docker image loaded or built on the node, a
CRI image without a repo digest). It still ran some image's code, maybe the
one asked about, and may have sent no event: a silent container of an image
the registry cannot name. So while one runs (or at the agent's sample after
one stopped) the agent takes the registry as not in sync: no window above
ActiveTracing (agent/lifecycle_part.py, docs/lifecycle.md).
"""

from __future__ import annotations

import logging

from stellaops_runtime.lifecycle.registry import ContainerRecord

log = logging.getLogger(__name__)

WARNED_MAX = 4096  # containers logged once each


def without_image(records: list[ContainerRecord], since_ns: int) -> list[ContainerRecord]:
    """The containers (not pod sandboxes) with no image digest running now, or stopped at or after
    ``since_ns`` (the agent's last sample)."""
    out = []
    for r in records:
        if r.image_digest or r.is_sandbox:
            continue
        stopped = r.stopped_at is not None and r.stopped_at.timestamp() * 1e9 >= since_ns
        if r.status in ("running", "paused") or (r.status == "stopped" and stopped):
            out.append(r)
    return out


class Imageless:
    """Whether such a container ran since the last sample; each is logged once."""

    def __init__(self) -> None:
        self._last_ns = 0
        self._warned: set[str] = set()

    def ran(self, records: list[ContainerRecord], now_ns: int) -> bool:
        found = without_image(records, self._last_ns or now_ns)
        self._last_ns = now_ns
        for r in found:
            if r.container_id not in self._warned and len(self._warned) < WARNED_MAX:
                self._warned.add(r.container_id)
                log.warning(
                    "container %s (image %s) runs an image whose digest is not known: it may be any "
                    "image's, so no window reads above ActiveTracing while it runs",
                    r.container_id[:12], r.image_ref[:200] or "(none)",
                )  # fmt: skip
        return bool(found)
