"""ContainerLifecycleEvent: what the container lifecycle observer (Zastava) reports.

The seed's "Zastava Container Observer" record: a container was created,
started, stopped, died, or an image was pulled, with the container's image
(reference and digest), labels, annotations, environment (already through the
privacy filter: secret values never get this far), init pid, cgroup and exit
facts. Every container runtime the observer speaks (containerd first) is
reshaped into this one record, so what consumes it (the cgroup registry, the
observation windows) never sees a runtime's wire format. Plain data only: no
I/O, no imports from other layers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Kubernetes' CRI plugins put these labels on every container they create.
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
POD_NAME_LABEL = "io.kubernetes.pod.name"
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"
# Our label: the scan (SBOM) an image's evidence belongs to, set by whoever deploys it.
SCAN_ID_LABEL = "stellaops.io/scan-id"


class LifecycleEventType(enum.StrEnum):
    """What happened (the seed's CREATE|START|STOP|DIE, image pull, and removal)."""

    CREATE = "create"  # the container exists (no process yet)
    START = "start"  # its init process runs: pid and cgroup known
    DIE = "die"  # its init process exited: exit code, OOM
    STOP = "stop"  # its task was deleted: the container no longer runs
    DELETE = "delete"  # the container is gone from the runtime
    IMAGE_PULL = "image_pull"  # an image was created or updated in the runtime's store


@dataclass(frozen=True, slots=True)
class ContainerLifecycleEvent:
    """One lifecycle event, with everything the runtime and the registry know at that moment.

    ``pid`` is 0, ``cgroup_id`` 0, and ``exit_code`` ``None`` when not known;
    ``oom_killed`` is ``None`` when neither the runtime nor the kernel's count
    could tell (a cgroup gone before the agent could open its counter).
    ``env_vars`` are ``NAME=value`` entries after the privacy filter.
    ``cgroup_id`` is the inode number of the container's cgroup v2 directory
    (what eBPF's ``bpf_get_current_cgroup_id`` returns for its processes).
    For ``IMAGE_PULL`` only ``image_ref``, ``image_digest`` and ``labels``
    (the image's labels) are set.
    """

    event_type: LifecycleEventType
    runtime: str  # "containerd"
    namespace: str  # the runtime's namespace (k8s.io for Kubernetes)
    container_id: str
    timestamp: datetime | None = None  # when the runtime published the event
    image_ref: str = ""
    image_digest: str = ""  # sha256:... of the image's manifest (or index)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    env_vars: tuple[str, ...] = ()
    pid: int = 0
    cgroup_path: str = ""
    cgroup_id: int = 0
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    exit_code: int | None = None
    oom_killed: bool | None = False
    topic: str = ""  # the runtime's own name for the event (/tasks/start ...)

    @property
    def pod_namespace(self) -> str:
        return self.labels.get(POD_NAMESPACE_LABEL, "")

    @property
    def pod_name(self) -> str:
        return self.labels.get(POD_NAME_LABEL, "")

    @property
    def container_name(self) -> str:
        return self.labels.get(CONTAINER_NAME_LABEL, "")

    @property
    def scan_id(self) -> str:
        """The ``stellaops.io/scan-id`` label, else the OCI annotation of that name."""
        return self.labels.get(SCAN_ID_LABEL) or self.annotations.get(SCAN_ID_LABEL, "")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (timestamps as RFC 3339 strings, pod identity spelled out)."""

        def ts(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "event_type": str(self.event_type),
            "runtime": self.runtime,
            "namespace": self.namespace,
            "container_id": self.container_id,
            "timestamp": ts(self.timestamp),
            "image_ref": self.image_ref,
            "image_digest": self.image_digest,
            "pod_namespace": self.pod_namespace,
            "pod_name": self.pod_name,
            "container_name": self.container_name,
            "scan_id": self.scan_id,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "env_vars": list(self.env_vars),
            "pid": self.pid,
            "cgroup_path": self.cgroup_path,
            "cgroup_id": self.cgroup_id,
            "started_at": ts(self.started_at),
            "stopped_at": ts(self.stopped_at),
            "exit_code": self.exit_code,
            "oom_killed": self.oom_killed,
            "topic": self.topic,
        }
