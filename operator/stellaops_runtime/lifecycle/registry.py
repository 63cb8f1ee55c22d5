"""The live map cgroup id -> container -> image digest and pod, kept by the lifecycle observer.

Every eBPF event names its process's container only by cgroup id; this
registry turns that into the container, its image digest (what hot symbols
are keyed by), its pod and its scan id. It holds one ``ContainerRecord`` per
container the runtime has (running or not): a record gains a pid and a
cgroup when its task starts and loses the cgroup index entry when the task
is deleted or the container removed, so a reused cgroup id never points at a
dead container. Kubernetes containers also name their pod: its uid (the
``io.kubernetes.pod.uid`` label kubelet gives every container of the pod)
and, kept on the pod's sandbox container (``io.cri-containerd.kind:
sandbox``), the pod's labels and, in the CRI sandbox metadata, the pod's
annotations, of which only ``stellaops.io/observe-level`` is kept
(``pod_annotations``, for the pod opt-out, privacy/optout.py).
``replace_all`` rebuilds it from the runtime's list after a (re)connect,
dropping what the runtime no longer has. Pure data: the observer does the
I/O and calls these methods from one event loop.

A removed container whose task had a cgroup is remembered apart
(``departed``, the latest DEPARTED_MAX): records of its processes can still
be on their way when the runtime reports the removal (``docker run --rm``,
``ctr run --rm``: right after the exit), and the pipeline's lookup
(lookup.py) must still name their image. A cgroup id is never given twice,
so a departed container's id can name nothing else. Every removal is also
kept for the agent's next sample (``removed_since``, the latest REMOVED_MAX):
a container created, run and removed between two samples ran all the same
(hotsymbols/container_runs.py).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from stellaops_runtime.contracts.lifecycle import (
    CONTAINER_NAME_LABEL,
    POD_NAME_LABEL,
    POD_NAMESPACE_LABEL,
    SCAN_ID_LABEL,
)

POD_UID_LABEL = "io.kubernetes.pod.uid"  # kubelet's label on the sandbox and every container of a pod
CRI_KIND_LABEL = "io.cri-containerd.kind"  # containerd's CRI plugin: "sandbox" or "container"
DEPARTED_MAX = 1024  # removed containers remembered by cgroup (see the module docstring)
REMOVED_MAX = 4096  # removals kept for the agent's next sample (``removed_since``)


@dataclass(slots=True)
class ContainerRecord:
    """What is known about one container (mutable: updated as its events arrive)."""

    container_id: str
    namespace: str
    image_ref: str = ""
    image_digest: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    # Of a CRI sandbox's pod annotations (lifecycle/decode.sandbox_facts), the kept ones.
    pod_annotations: dict[str, str] = field(default_factory=dict)
    env_vars: tuple[str, ...] = ()  # already through the privacy filter
    status: str = "created"  # created | running | paused | stopped
    pid: int = 0
    cgroup_path: str = ""
    cgroup_id: int = 0
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    exit_code: int | None = None
    oom_killed: bool | None = False  # None: not known (oom_watch.py: its cgroup was gone before read)
    # The config digest of the image_digest's image (the CRI's image id, kubelet's imageID for an
    # image with no repo digest): containerd only, "" when not read (lifecycle/image_config.py).
    image_config: str = ""
    # The other image targets of that config in containerd's store: kubelet may name the container's
    # image by any of them (lifecycle/image_aliases.py). Not shown by ``containers --json``.
    image_aliases: tuple[str, ...] = ()

    @property
    def pod_namespace(self) -> str:
        return self.labels.get(POD_NAMESPACE_LABEL, "")

    @property
    def pod_name(self) -> str:
        return self.labels.get(POD_NAME_LABEL, "")

    @property
    def pod_uid(self) -> str:
        return self.labels.get(POD_UID_LABEL, "")

    @property
    def is_sandbox(self) -> bool:
        """A CRI pod sandbox (the pause container): it carries the pod's labels and annotations."""
        return self.labels.get(CRI_KIND_LABEL) == "sandbox"

    @property
    def container_name(self) -> str:
        return self.labels.get(CONTAINER_NAME_LABEL, "")

    @property
    def scan_id(self) -> str:
        """The ``stellaops.io/scan-id`` label, else the OCI annotation of that name."""
        return self.labels.get(SCAN_ID_LABEL) or self.annotations.get(SCAN_ID_LABEL, "")

    def copy(self) -> ContainerRecord:
        return replace(
            self,
            labels=dict(self.labels),
            annotations=dict(self.annotations),
            pod_annotations=dict(self.pod_annotations),
        )

    def to_json(self) -> dict[str, Any]:
        def ts(v: datetime | None) -> str | None:
            return v.isoformat() if v is not None else None

        return {
            "container_id": self.container_id,
            "namespace": self.namespace,
            "image_ref": self.image_ref,
            "image_digest": self.image_digest,
            "image_config": self.image_config,
            "pod_namespace": self.pod_namespace,
            "pod_name": self.pod_name,
            "pod_uid": self.pod_uid,
            "container_name": self.container_name,
            "scan_id": self.scan_id,
            "status": self.status,
            "pid": self.pid,
            "cgroup_path": self.cgroup_path,
            "cgroup_id": self.cgroup_id,
            "started_at": ts(self.started_at),
            "stopped_at": ts(self.stopped_at),
            "exit_code": self.exit_code,
            "oom_killed": self.oom_killed,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "pod_annotations": dict(self.pod_annotations),
            "env_vars": list(self.env_vars),
        }


class ContainerRegistry:
    """Containers by (namespace, id) and, while their task runs, by cgroup id."""

    def __init__(self) -> None:
        self._by_id: dict[tuple[str, str], ContainerRecord] = {}
        self._by_cgroup: dict[int, ContainerRecord] = {}
        # (namespace, container id, cgroup id) -> the record as it was removed, oldest first
        self._departed: OrderedDict[tuple[str, str, int], ContainerRecord] = OrderedDict()
        self._removed: deque[ContainerRecord] = deque(maxlen=REMOVED_MAX)  # the latest removals
        self.removals = 0  # how many records were ever removed

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, namespace: str, container_id: str) -> ContainerRecord | None:
        return self._by_id.get((namespace, container_id))

    def by_cgroup(self, cgroup_id: int) -> ContainerRecord | None:
        """The container whose running task lives in cgroup ``cgroup_id`` (a copy), or ``None``."""
        rec = self._by_cgroup.get(cgroup_id)
        return rec.copy() if rec is not None else None

    def put(self, rec: ContainerRecord) -> None:
        """Add or replace a record, re-indexing its cgroup."""
        old = self._by_id.get((rec.namespace, rec.container_id))
        if old is not None and old.cgroup_id and self._by_cgroup.get(old.cgroup_id) is old:
            del self._by_cgroup[old.cgroup_id]
        self._by_id[(rec.namespace, rec.container_id)] = rec
        self._index(rec)

    def _index(self, rec: ContainerRecord) -> None:
        if rec.cgroup_id and rec.status in ("running", "paused", "created") and rec.pid:
            self._by_cgroup[rec.cgroup_id] = rec

    def set_cgroup(self, rec: ContainerRecord, cgroup_path: str, cgroup_id: int) -> None:
        """Record where the container's task runs and index it by cgroup id."""
        if rec.cgroup_id and self._by_cgroup.get(rec.cgroup_id) is rec:
            del self._by_cgroup[rec.cgroup_id]
        rec.cgroup_path = cgroup_path
        rec.cgroup_id = cgroup_id
        self._index(rec)

    def task_gone(self, rec: ContainerRecord) -> None:
        """The task no longer runs: its cgroup id no longer names this container."""
        if rec.cgroup_id and self._by_cgroup.get(rec.cgroup_id) is rec:
            del self._by_cgroup[rec.cgroup_id]

    def remove(self, namespace: str, container_id: str) -> ContainerRecord | None:
        rec = self._by_id.pop((namespace, container_id), None)
        if rec is not None:
            self.task_gone(rec)
            self._removed.append(rec)
            self.removals += 1
            if rec.cgroup_id:
                self._departed[(namespace, container_id, rec.cgroup_id)] = rec
                if len(self._departed) > DEPARTED_MAX:
                    self._departed.popitem(last=False)
        return rec

    def removed_since(self, removals: int) -> tuple[list[ContainerRecord], bool]:
        """Copies of the records removed since ``removals`` was read, oldest first, and whether
        some are no longer kept (more than REMOVED_MAX since). A container the runtime created, ran
        and removed between two looks at ``records`` is in none of them, yet it ran."""
        count = min(max(self.removals - removals, 0), len(self._removed))
        kept = list(self._removed)[len(self._removed) - count :] if count else []
        return [r.copy() for r in kept], self.removals - removals > len(self._removed)

    def departed(self) -> list[ContainerRecord]:
        """Copies of the removed containers that had a cgroup, the latest DEPARTED_MAX, oldest first."""
        return [r.copy() for r in self._departed.values()]

    def replace_all(self, namespace: str, records: list[ContainerRecord]) -> tuple[int, int]:
        """Make ``namespace``'s containers exactly ``records``: (added or changed, removed)."""
        fresh = {r.container_id: r for r in records}
        removed = 0
        for key in [k for k in self._by_id if k[0] == namespace and k[1] not in fresh]:
            self.remove(*key)
            removed += 1
        changed = 0
        for rec in fresh.values():
            old = self._by_id.get((namespace, rec.container_id))
            if old is None or old.to_json() != rec.to_json():
                changed += 1
            self.put(rec)
        return changed, removed

    def records(self) -> list[ContainerRecord]:
        """Copies of every record, ordered by namespace then container id."""
        return [self._by_id[k].copy() for k in sorted(self._by_id)]

    def cgroup_ids(self) -> dict[int, str]:
        """cgroup id -> container id of every indexed (running) container."""
        return {cg: rec.container_id for cg, rec in sorted(self._by_cgroup.items())}
