"""Pure conversions for the CRI observer: CRI statuses -> registry records -> lifecycle transitions.

The CRI reports state, not a history: a relist (or one event of the
``GetContainerEvents`` stream, which carries the pod's container statuses)
says what each container is now. ``transitions`` turns the difference between
what the registry held and what the runtime says into the same
ContainerLifecycleEvent types the containerd observer emits (a container that
was created and has already exited since the last look yields CREATE, START,
DIE and STOP, each at the time the runtime recorded), so the events and the
relist paths share one rule and a relist after an event emits nothing twice.

Everything a runtime replies is untrusted here: the verbose ``info`` JSON
(pid, runtime spec) may be missing, of the wrong shape or huge, and label or
annotation maps may be huge or hold NUL bytes. Such parts are dropped and
named in the returned problem text (the observer counts and logs it); none of
these functions raises on what a runtime sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from stellaops_runtime.contracts.events import KEPT_POD_ANNOTATIONS
from stellaops_runtime.contracts.lifecycle import (
    CONTAINER_NAME_LABEL,
    POD_NAME_LABEL,
    POD_NAMESPACE_LABEL,
    LifecycleEventType,
)
from stellaops_runtime.contracts.posture import UNREADABLE_LEVEL
from stellaops_runtime.lifecycle.registry import CRI_KIND_LABEL, POD_UID_LABEL, ContainerRecord
from stellaops_runtime.wire.cri import api_pb2

RUNTIME = "cri"
T = LifecycleEventType
EnvFilter = Callable[[list[str]], list[str]]

MAX_INFO_BYTES = 4 << 20  # a verbose info JSON larger than this is not parsed
MAX_MAP_ENTRIES = 512  # labels or annotations of one container kept at most
MAX_KEY_CHARS = 512
MAX_VALUE_CHARS = 64 << 10
MAX_MAP_CHARS = 256 << 10  # Kubernetes' own limit on a pod's annotations in total
MAX_PID = 1 << 22  # the kernel's pid_max ceiling
_MAX_NS = 1 << 62

STATE_OF = {  # a CRI container state -> the registry's status
    api_pb2.CONTAINER_CREATED: "created",
    api_pb2.CONTAINER_RUNNING: "running",
    api_pb2.CONTAINER_EXITED: "stopped",
}
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_ALIVE = ("created", "running", "paused")


@dataclass(frozen=True, slots=True)
class VerboseFacts:
    """What a verbose status's ``info`` says beyond the CRI fields: the runtime's own JSON."""

    pid: int = 0
    env: tuple[str, ...] = ()
    cgroups_path: str = ""
    problem: str = ""


@dataclass(frozen=True, slots=True)
class Pod:
    """A pod sandbox as far as its containers need it."""

    sandbox_id: str
    namespace: str
    name: str
    uid: str


def ns_time(value: object) -> datetime | None:
    """A CRI timestamp (int64 nanoseconds since the epoch) as an aware datetime; None for 0 or nonsense."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < _MAX_NS:
        return None
    seconds, nanos = divmod(value, 1_000_000_000)  # exact: a float would round the microseconds
    return datetime.fromtimestamp(seconds, tz=UTC) + timedelta(microseconds=nanos // 1000)


def event_start(msg: api_pb2.ContainerEventResponse) -> datetime | None:
    """When the container of a CRI event started, at the latest: its creation (the event's
    statuses), else the event's time when it is a start; None when not known."""
    created = [t for s in msg.containers_statuses if (t := ns_time(s.created_at))]
    if created:
        return min(created)
    return ns_time(msg.created_at) if msg.container_event_type == api_pb2.CONTAINER_STARTED_EVENT else None


def bounded(values: Mapping[str, str], what: str) -> tuple[dict[str, str], str]:
    """The label/annotation entries within the size limits and without NUL; why others were dropped."""
    kept: dict[str, str] = {}
    total = dropped = 0
    for k, v in values.items():
        size = len(k) + len(v)
        if (
            len(kept) >= MAX_MAP_ENTRIES
            or len(k) > MAX_KEY_CHARS
            or len(v) > MAX_VALUE_CHARS
            or total + size > MAX_MAP_CHARS
            or "\x00" in k
            or "\x00" in v
        ):
            dropped += 1
            continue
        kept[k] = v
        total += size
    return kept, (f"{dropped} {what} over the size limits or with NUL dropped" if dropped else "")


def verbose_facts(info: Mapping[str, str]) -> VerboseFacts:
    """pid, environment and cgroups path from a verbose status's ``info["info"]`` JSON, never raising.

    containerd's CRI plugin and CRI-O both put a JSON object there with ``pid``
    and ``runtimeSpec`` (the OCI spec: ``process.env``, ``linux.cgroupsPath``).
    """
    raw = info.get("info")
    if raw is None:
        return VerboseFacts(problem="verbose status without info")
    if len(raw) > MAX_INFO_BYTES:
        return VerboseFacts(problem=f"verbose info of {len(raw)} characters, over the limit")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as e:
        return VerboseFacts(problem=f"verbose info is not JSON: {str(e)[:80]}")
    if not isinstance(doc, dict):
        return VerboseFacts(problem="verbose info is not a JSON object")
    problems = []
    pid = doc.get("pid", 0)
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 <= pid < MAX_PID:
        problems.append(f"pid is not a process id: {str(pid)[:40]!r}")
        pid = 0
    env: list[str] = []
    cgroups_path = ""
    spec = doc.get("runtimeSpec")
    if isinstance(spec, dict):
        process = spec.get("process")
        raw_env = process.get("env") if isinstance(process, dict) else None
        if isinstance(raw_env, list):
            env = [e for e in raw_env if isinstance(e, str) and "\x00" not in e]
            if len(env) != len(raw_env):
                problems.append("environment entries that are not strings dropped")
        elif raw_env is not None:
            problems.append("process.env is not a list")
        linux = spec.get("linux")
        path = linux.get("cgroupsPath") if isinstance(linux, dict) else None
        if isinstance(path, str) and "\x00" not in path:
            cgroups_path = path
        elif path is not None:
            problems.append("linux.cgroupsPath is not a string")
    elif spec is not None:
        problems.append("runtimeSpec is not an object")
    return VerboseFacts(pid=pid, env=tuple(env), cgroups_path=cgroups_path, problem="; ".join(problems))


def digest_in_ref(ref: str) -> str:
    """The manifest digest of a ``repo@sha256:...`` reference; "" for a tag or a bare image id."""
    _, sep, digest = ref.rpartition("@")
    return digest if sep and _DIGEST_RE.fullmatch(digest) else ""


def pick_repo_digest(repo_digests: list[str], image: str) -> str:
    """The digest of ``image``'s repository among an image's repo digests, else the first one."""
    repo = image.split("@", 1)[0]
    if repo.rfind(":") > repo.rfind("/"):
        repo = repo[: repo.rfind(":")]
    found = [(r.split("@", 1)[0], digest_in_ref(r)) for r in repo_digests]
    for name, digest in found:
        if digest and name == repo:
            return digest
    return next((d for _, d in found if d), "")


def pod_of(sandbox_id: str, meta: api_pb2.PodSandboxMetadata) -> Pod:
    return Pod(sandbox_id=sandbox_id, namespace=meta.namespace, name=meta.name, uid=meta.uid)


def _pod_labels(labels: dict[str, str], pod: Pod | None) -> None:
    """The sandbox's metadata names the pod (over whatever a container's labels claim)."""
    if pod is None:
        return
    for key, value in (
        (POD_NAMESPACE_LABEL, pod.namespace),
        (POD_NAME_LABEL, pod.name),
        (POD_UID_LABEL, pod.uid),
    ):
        if value:
            labels[key] = value


def sandbox_record(
    sandbox: api_pb2.PodSandbox | api_pb2.PodSandboxStatus, facts: VerboseFacts
) -> tuple[ContainerRecord, str]:
    """A registry record for a pod sandbox: it carries the pod's labels and kept annotations."""
    labels, p1 = bounded(sandbox.labels, "labels")
    annotations, p2 = bounded(sandbox.annotations, "annotations")
    _pod_labels(labels, pod_of(sandbox.id, sandbox.metadata))
    labels[CRI_KIND_LABEL] = "sandbox"
    ready = sandbox.state == api_pb2.SANDBOX_READY
    rec = ContainerRecord(
        container_id=sandbox.id,
        namespace="",
        labels=labels,
        # a kept annotation the bounds dropped (NUL, too long) still opts out (UNREADABLE_LEVEL)
        pod_annotations={
            k: annotations.get(k, UNREADABLE_LEVEL) for k in KEPT_POD_ANNOTATIONS if k in sandbox.annotations
        },
        status="running" if ready else "stopped",
        pid=facts.pid if ready else 0,
        cgroup_path=facts.cgroups_path,
        started_at=ns_time(sandbox.created_at),
    )
    return rec, "; ".join(p for p in (p1, p2, facts.problem) if p)


def container_record(
    status: api_pb2.ContainerStatus,
    *,
    pod: Pod | None,
    image_digest: str,
    facts: VerboseFacts,
    env_filter: EnvFilter,
) -> tuple[ContainerRecord, str]:
    """A registry record from a container's (verbose) status and its pod; why parts were dropped."""
    labels, p1 = bounded(status.labels, "labels")
    annotations, p2 = bounded(status.annotations, "annotations")
    _pod_labels(labels, pod)
    if status.metadata.name and CONTAINER_NAME_LABEL not in labels:
        labels[CONTAINER_NAME_LABEL] = status.metadata.name
    state = STATE_OF.get(status.state, "unknown")
    image_ref = status.image.user_specified_image or status.image.image or status.image_ref
    rec = ContainerRecord(
        container_id=status.id,
        namespace="",
        image_ref=image_ref,
        image_digest=image_digest,
        labels=labels,
        annotations=annotations,
        env_vars=tuple(env_filter(list(facts.env))),
        status=state,
        pid=facts.pid if state in _ALIVE else 0,
        cgroup_path=facts.cgroups_path,
        started_at=ns_time(status.started_at),
        stopped_at=ns_time(status.finished_at) if state == "stopped" else None,
        exit_code=status.exit_code if state == "stopped" else None,
        oom_killed=state == "stopped" and status.reason == "OOMKilled",
    )
    return rec, "; ".join(p for p in (p1, p2, facts.problem) if p)


def transitions(
    old: ContainerRecord | None, new: ContainerRecord, *, created_at: datetime | None, announce_new: bool
) -> list[tuple[LifecycleEventType, datetime | None]]:
    """The events between what the registry held (``old``) and the runtime's state now (``new``).

    CRI containers never restart (kubelet creates a new one), so a container
    moves only forward: created -> running -> exited. ``announce_new`` is
    False while the registry is first built (what ran before the observer
    started is listed, not announced). A state of ``unknown`` moves nothing.
    """
    out: list[tuple[LifecycleEventType, datetime | None]] = []
    before = old.status if old is not None else None
    if old is None:
        if not announce_new:
            return out
        out.append((T.CREATE, created_at))
        before = "created"
    if new.status == "unknown":
        return out
    # An exited container without a start time never ran (its start failed): no START.
    if before == "created" and (
        new.status == "running" or (new.status == "stopped" and new.started_at is not None)
    ):
        out.append((T.START, new.started_at))
    if before in _ALIVE and new.status == "stopped":
        out.append((T.DIE, new.stopped_at))
        out.append((T.STOP, new.stopped_at))
    return out


# containerd's runc shim can deliver a task's OOM after its exit (containerd#12714): the CRI
# status then says reason "Error" at first and "OOMKilled" a moment later. A container that died
# of SIGKILL is looked at again on the relists of this long after it stopped.
LATE_OOM_SECONDS = 30.0


def late_oom_possible(rec: ContainerRecord, now: datetime) -> bool:
    """Whether a stopped container's status may still change to OOMKilled."""
    return (
        rec.status == "stopped"
        and not rec.oom_killed
        and rec.exit_code == 137
        and rec.stopped_at is not None
        and (now - rec.stopped_at).total_seconds() < LATE_OOM_SECONDS
    )
