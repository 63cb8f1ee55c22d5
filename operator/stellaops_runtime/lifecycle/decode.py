"""Decode containerd's event envelopes and container specs, never raising.

The event stream carries ``containerd.types.Envelope`` messages whose payload
is a ``google.protobuf.Any``; which message it holds is named by the Any's type
URL (``containerd.events.TaskStart``; some clients prefix a host,
``types.containerd.io/...``). Anyone with access to the socket can publish on
that bus, so a payload may be garbage, of a type we do not know, or name a
type its bytes do not fit. Each of those is a ``DecodeFailure`` with a reason
(the counter label), never an exception out of this module.

A container's OCI runtime spec arrives as JSON in ``Container.spec``; only the
process environment, the annotations and ``linux.cgroupsPath`` are read, and a
spec of the wrong shape yields empty values and a reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from stellaops_runtime.contracts.posture import UNREADABLE_LEVEL
from stellaops_runtime.wire.containerd import events_pb2, image_events_pb2, types_pb2

# Payload type name -> message class, for the events the observer acts on.
PAYLOAD_TYPES: dict[str, type[Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
        events_pb2.TaskCreate,
        events_pb2.TaskStart,
        events_pb2.TaskExit,
        events_pb2.TaskDelete,
        events_pb2.TaskOOM,
        events_pb2.TaskPaused,
        events_pb2.TaskResumed,
        events_pb2.ContainerCreate,
        events_pb2.ContainerUpdate,
        events_pb2.ContainerDelete,
        image_events_pb2.ImageCreate,
        image_events_pb2.ImageUpdate,
        image_events_pb2.ImageDelete,
    )
}

# The most a spec may be before we refuse to parse it (containerd's own limit is far below).
MAX_SPEC_BYTES = 4 << 20


@dataclass(frozen=True, slots=True)
class Decoded:
    topic: str
    namespace: str
    timestamp: datetime | None
    payload: Message


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed envelope whose payload type we do not act on (``/snapshot/prepare`` ...)."""

    topic: str
    type_name: str


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    reason: str  # envelope | no_payload | payload | field
    detail: str


def type_name(type_url: str) -> str:
    """The message name in an Any type URL (the part after the last ``/``)."""
    return type_url.rsplit("/", 1)[-1]


def timestamp_of(ts: object) -> datetime | None:
    """A protobuf Timestamp as an aware datetime; ``None`` for an unset one.

    Unset is zero, or Go's zero time (year 1, ``seconds`` -62135596800) that
    containerd sends for a task that has not exited; nothing before 1970 is real.
    """
    seconds = getattr(ts, "seconds", 0)
    nanos = getattr(ts, "nanos", 0)
    if seconds < 0 or (seconds == 0 and nanos == 0):
        return None
    try:
        return datetime.fromtimestamp(seconds + nanos / 1e9, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def decode_envelope(raw: bytes) -> Decoded | Ignored | DecodeFailure:
    """One Subscribe message (serialized Envelope) -> its decoded payload, or why not."""
    env = types_pb2.Envelope()
    try:
        env.ParseFromString(raw)
    except (DecodeError, ValueError) as e:
        return DecodeFailure("envelope", f"not an Envelope: {e}")
    if not env.HasField("event") or not env.event.type_url:
        return DecodeFailure("no_payload", f"envelope of topic {env.topic!r} has no payload")
    name = type_name(env.event.type_url)
    cls = PAYLOAD_TYPES.get(name)
    if cls is None:
        return Ignored(topic=env.topic, type_name=name)
    msg = cls()
    try:
        msg.ParseFromString(env.event.value)
    except (DecodeError, ValueError) as e:
        return DecodeFailure("payload", f"{name} payload does not decode: {e}")
    # A field sent with the wrong wire type is kept as an unknown field by protobuf:
    # the payload is then not what its type says, so it is refused rather than read
    # as zeros. Unknown numbers are fine (fields we leave out, or newer containerd).
    known = msg.DESCRIPTOR.fields_by_number
    wrong = sorted({f.field_number for f in UnknownFieldSet(msg) if f.field_number in known})
    if wrong:
        return DecodeFailure("field", f"{name} payload has field(s) {wrong} of the wrong wire type")
    return Decoded(
        topic=env.topic, namespace=env.namespace, timestamp=timestamp_of(env.timestamp), payload=msg
    )


@dataclass(frozen=True, slots=True)
class SpecFacts:
    env: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)
    cgroups_path: str = ""
    problem: str = ""  # why a spec could not be read ("" when it could, or there was none)


def spec_facts(spec_json: bytes) -> SpecFacts:
    """Environment, annotations and cgroups path of an OCI runtime spec (JSON bytes)."""
    if not spec_json:
        return SpecFacts()
    if len(spec_json) > MAX_SPEC_BYTES:
        return SpecFacts(problem=f"spec of {len(spec_json)} bytes exceeds {MAX_SPEC_BYTES}")
    try:
        spec = json.loads(spec_json)
    except (ValueError, RecursionError) as e:
        return SpecFacts(problem=f"spec is not JSON: {e}")
    if not isinstance(spec, dict):
        return SpecFacts(problem="spec is not a JSON object")
    problems = []
    process = spec.get("process")
    env_list = process.get("env") if isinstance(process, dict) else None
    env: tuple[str, ...] = ()
    if isinstance(env_list, list):
        env = tuple(e for e in env_list if isinstance(e, str))
        if len(env) != len(env_list):
            problems.append("non-string env entries dropped")
    elif env_list is not None:
        problems.append("process.env is not a list")
    raw_ann = spec.get("annotations")
    annotations: dict[str, str] = {}
    if isinstance(raw_ann, dict):
        annotations = {k: v for k, v in raw_ann.items() if isinstance(k, str) and isinstance(v, str)}
        if len(annotations) != len(raw_ann):
            problems.append("non-string annotations dropped")
    elif raw_ann is not None:
        problems.append("annotations is not an object")
    linux = spec.get("linux")
    cgroups_path = linux.get("cgroupsPath") if isinstance(linux, dict) else None
    if not isinstance(cgroups_path, str):
        cgroups_path = ""
    return SpecFacts(env=env, annotations=annotations, cgroups_path=cgroups_path, problem="; ".join(problems))


# containerd's CRI plugin keeps each pod sandbox's metadata (the kubelet's
# PodSandboxConfig: the pod's name, uid, namespace, labels and annotations) as
# JSON in this extension of the sandbox container, versioned {"Version": "v1",
# "Metadata": {"Config": {...}}}; the containers of the pod carry no
# annotations of the pod (unless the runtime is configured to pass some).
SANDBOX_METADATA_EXTENSION = "io.cri-containerd.sandbox.metadata"
SANDBOX_METADATA_VERSION = "v1"
MAX_SANDBOX_METADATA_BYTES = 1 << 20  # a pod's annotations are limited to 256 KiB by the API server


@dataclass(frozen=True, slots=True)
class SandboxFacts:
    annotations: dict[str, str] = field(default_factory=dict)  # only the ``keep`` keys
    problem: str = ""


def _unread(raw: bytes, keep: tuple[str, ...], problem: str) -> SandboxFacts:
    """Metadata that cannot be read: a ``keep`` key its bytes name (as a JSON string, which Go's
    encoder writes verbatim for these ASCII keys) is present with a value not known, kept as
    UNREADABLE_LEVEL, which opts the pod out (contracts/posture.read_level): the agent fails closed,
    never reading an opt-out it cannot see as absent. A key not named says nothing."""
    named = {k: UNREADABLE_LEVEL for k in keep if b'"' + k.encode() + b'"' in raw}
    return SandboxFacts(annotations=named, problem=problem)


def sandbox_facts(extensions: object, keep: tuple[str, ...]) -> SandboxFacts:
    """The ``keep`` annotations of the pod in a CRI sandbox's metadata extension, never raising.

    ``extensions`` is a container's ``extensions`` map (name -> Any). Nothing
    but the ``keep`` annotations is returned: a pod's other annotations (the
    whole last-applied pod spec among them) never leave this function.
    """
    try:
        ext = extensions.get(SANDBOX_METADATA_EXTENSION) if extensions is not None else None  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):
        return SandboxFacts(problem="extensions are not a map")
    if ext is None:
        return SandboxFacts()
    raw = getattr(ext, "value", b"")
    if not isinstance(raw, bytes) or not raw:
        return SandboxFacts(problem="sandbox metadata is empty")
    if len(raw) > MAX_SANDBOX_METADATA_BYTES:
        return _unread(raw, keep, f"sandbox metadata of {len(raw)} bytes, over the limit")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as e:
        return _unread(raw, keep, f"sandbox metadata is not JSON: {e}")
    if not isinstance(doc, dict) or doc.get("Version") != SANDBOX_METADATA_VERSION:
        version = doc.get("Version") if isinstance(doc, dict) else None
        return _unread(raw, keep, f"sandbox metadata of unknown version {str(version)[:40]!r}")
    meta = doc.get("Metadata")
    config = meta.get("Config") if isinstance(meta, dict) else None
    if not isinstance(config, dict):
        return _unread(raw, keep, "sandbox metadata without a Config object")
    annotations = config.get("annotations")
    if annotations is not None and not isinstance(annotations, dict):
        return _unread(raw, keep, "sandbox annotations are not an object")
    kept = {}
    for k in keep:
        v = (annotations or {}).get(k)
        if v is not None:  # present: a value it cannot keep as it is still opts out (UNREADABLE_LEVEL)
            kept[k] = v if isinstance(v, str) and "\x00" not in v else UNREADABLE_LEVEL
    return SandboxFacts(annotations=kept)
