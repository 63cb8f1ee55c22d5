"""Pure conversions: containerd messages -> registry records -> ContainerLifecycleEvents.

Kept apart from the observer's I/O so that the rules (which process is the
init process, what a task status means, what an event carries) are plain
functions of their inputs. The environment of a container is passed through
``env_filter`` (the privacy filter's ``filter_env``) before it is stored in a
record: a secret value never reaches the registry, an event or a log line.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from stellaops_runtime.contracts.events import KEPT_POD_ANNOTATIONS
from stellaops_runtime.contracts.lifecycle import ContainerLifecycleEvent, LifecycleEventType
from stellaops_runtime.lifecycle.decode import sandbox_facts, spec_facts, timestamp_of
from stellaops_runtime.lifecycle.registry import ContainerRecord
from stellaops_runtime.wire.containerd import containers_pb2, task_pb2

RUNTIME = "containerd"
EnvFilter = Callable[[list[str]], list[str]]

_STATUS = {
    task_pb2.CREATED: "created",
    task_pb2.RUNNING: "running",
    task_pb2.STOPPED: "stopped",
    task_pb2.PAUSED: "paused",
    task_pb2.PAUSING: "paused",
}


def record_from_container(
    c: containers_pb2.Container, *, namespace: str, image_digest: str, env_filter: EnvFilter
) -> tuple[ContainerRecord, str]:
    """A record for ``c`` (no task facts yet) and why its spec could not be read ("" if it could)."""
    facts = spec_facts(c.spec.value if c.HasField("spec") else b"")
    sandbox = sandbox_facts(c.extensions, KEPT_POD_ANNOTATIONS)
    rec = ContainerRecord(
        container_id=c.id,
        namespace=namespace,
        image_ref=c.image,
        image_digest=image_digest,
        labels=dict(c.labels),
        annotations=dict(facts.annotations),
        pod_annotations=sandbox.annotations,
        env_vars=tuple(env_filter(list(facts.env))),
        cgroup_path=facts.cgroups_path,
    )
    return rec, "; ".join(p for p in (facts.problem, sandbox.problem) if p)


def is_init(container_id: str, process_id: str) -> bool:
    """Whether a task event's process is the container's init process (not an exec)."""
    return process_id in ("", container_id)


def apply_task(rec: ContainerRecord, process: task_pb2.Process) -> None:
    """Task facts from Tasks/List or Tasks/Get onto the record."""
    rec.status = _STATUS.get(process.status, "stopped")
    rec.pid = process.pid
    if rec.status == "stopped":
        rec.exit_code = process.exit_status
        rec.stopped_at = timestamp_of(process.exited_at)


def lifecycle_event(
    kind: LifecycleEventType,
    rec: ContainerRecord,
    *,
    timestamp: datetime | None,
    topic: str,
    runtime: str = RUNTIME,
) -> ContainerLifecycleEvent:
    """The event for ``rec`` as it is now."""
    return ContainerLifecycleEvent(
        event_type=kind,
        runtime=runtime,
        namespace=rec.namespace,
        container_id=rec.container_id,
        timestamp=timestamp,
        image_ref=rec.image_ref,
        image_digest=rec.image_digest,
        labels=dict(rec.labels),
        annotations=dict(rec.annotations),
        env_vars=rec.env_vars,
        pid=rec.pid,
        cgroup_path=rec.cgroup_path,
        cgroup_id=rec.cgroup_id,
        started_at=rec.started_at,
        stopped_at=rec.stopped_at,
        exit_code=rec.exit_code,
        oom_killed=rec.oom_killed,
        topic=topic,
    )


def image_event(
    *,
    namespace: str,
    name: str,
    digest: str,
    labels: dict[str, str],
    timestamp: datetime | None,
    topic: str,
    runtime: str = RUNTIME,
) -> ContainerLifecycleEvent:
    return ContainerLifecycleEvent(
        event_type=LifecycleEventType.IMAGE_PULL,
        runtime=runtime,
        namespace=namespace,
        container_id="",
        timestamp=timestamp,
        image_ref=name,
        image_digest=digest,
        labels=dict(labels),
        topic=topic,
    )
