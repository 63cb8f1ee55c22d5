"""Adapter for Tetragon's gRPC stream: one GetEventsResponse -> RuntimeCallEvent.

Reads fields by direct attribute access on upb messages (~8 µs an event with a
stack); ``json_format.MessageToDict`` would cost ~100 µs and is used only for
the rare compound argument types, so that they render exactly as the JSON
adapter renders them. Process arguments and argument values are cut as they
are read (``validate.cut_early``): a hostile workload's 4 MiB argument is
copied once out of the message, never again.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from stellaops_runtime.adapter import common, tcp_state_args, validate
from stellaops_runtime.contracts.events import (
    KEPT_POD_ANNOTATIONS,
    Argument,
    EventKind,
    PodInfo,
    ProcessInfo,
    RuntimeCallEvent,
    StackFrame,
)
from stellaops_runtime.wire.tetragon import events_pb2, tetragon_pb2

GetEventsResponse = events_pb2.GetEventsResponse

_ARG_FIELDS = tetragon_pb2.KprobeArgument.DESCRIPTOR.fields_by_name
_ENUM_ARGS = {name: f.enum_type for name, f in _ARG_FIELDS.items() if f.enum_type is not None}


def decode(payload: bytes, stats: common.AdapterStats) -> Any | None:
    """Decode one serialized GetEventsResponse; malformed bytes are counted, not raised."""
    try:
        return GetEventsResponse.FromString(payload)
    except DecodeError:
        stats.malformed["invalid_protobuf"] += 1
        return None


def _process(p: Any) -> ProcessInfo:
    return ProcessInfo(
        exec_id=p.exec_id,
        pid=p.pid.value,
        tid=p.tid.value,
        uid=p.uid.value if p.HasField("uid") else None,
        binary=p.binary,
        arguments=validate.cut_early(p.arguments),
        cwd=p.cwd,
        parent_exec_id=p.parent_exec_id,
    )


def _annotations(raw: Any) -> dict[str, str]:
    """The pod annotations the agent acts on (``KEPT_POD_ANNOTATIONS``): looked up, the others never read."""
    if not raw:  # Tetragon without --enable-pod-annotations, or a pod without annotations
        return {}
    out: dict[str, str] = {}
    for key in KEPT_POD_ANNOTATIONS:
        value = raw.get(key)
        if value is not None:
            out[key] = value
    return out


def _frames(entries: Any, max_depth: int, stats: common.AdapterStats) -> list[StackFrame]:
    if len(entries) > max_depth:
        stats.repaired["stack_truncated"] += 1
        entries = entries[:max_depth]  # innermost first: the frames that matter most are kept
    return [StackFrame(module=e.module, symbol=e.symbol, offset=e.offset, address=e.address) for e in entries]


def _argument(a: Any, label: str) -> Argument:
    kind = a.WhichOneof("arg")
    if kind is None:
        return Argument(label=label, type="", value="")
    v = getattr(a, kind)
    if isinstance(v, str):
        text = validate.cut_early(v)
    elif isinstance(v, bytes):
        text = validate.cut_early(common.bytes_text(validate.cut_bytes_early(v)))
    elif isinstance(v, int):
        enum = _ENUM_ARGS.get(kind)
        text = enum.values_by_number[v].name if enum is not None and v in enum.values_by_number else str(v)
    elif kind in ("file_arg", "path_arg", "linux_binprm_arg"):
        text = v.path
    elif kind == "truncated_bytes_arg":
        text = validate.cut_early(common.bytes_text(validate.cut_bytes_early(v.bytes_arg)))
    else:
        text = common.render_arg(kind, json_format.MessageToDict(v, preserving_proto_field_name=True))
    return Argument(label=label, type=kind, value=text)


def _arguments(args: Any, ret: Any | None) -> list[Argument]:
    out = [_argument(a, a.label) for a in args]
    if ret is not None:
        out.append(_argument(ret, "return"))
    return out


def _drop_signal(msg: Any, kind_name: str, stats: common.AdapterStats) -> bool:
    """Tetragon's own drop signal (contracts/drops.py) onto ``stats.drop_signals``; False if unusable."""
    t = msg.time
    ts = t.seconds * 1_000_000_000 + t.nanos if msg.HasField("time") else 0
    if ts < 0 or ts > validate.max_event_ns():
        ts = 0  # stamped with the arrival time, like an event
    if kind_name == "rate_limit_info":
        dropped = int(msg.rate_limit_info.number_of_dropped_process_events)
        stats.tetragon_export_dropped += dropped
        sig = common.drop_signal(
            kind_name, throttle_type="", cgroup="", dropped=dropped, timestamp_ns=ts, node_name=msg.node_name
        )
    else:
        body = msg.process_throttle
        names = tetragon_pb2.ThrottleType.DESCRIPTOR.values_by_number
        type_name = names[body.type].name if body.type in names else ""
        sig = common.drop_signal(
            kind_name, throttle_type=type_name, cgroup=body.cgroup, dropped=0, timestamp_ns=ts,
            node_name=msg.node_name,
        )  # fmt: skip
    if sig is None:
        return False
    stats.drop_signals.append(sig)
    return True


def adapt(
    msg: Any,
    *,
    received_ns: int = 0,
    stats: common.AdapterStats,
    max_stack_depth: int = validate.DEFAULT_MAX_STACK_DEPTH,
) -> RuntimeCallEvent | None:
    """One GetEventsResponse -> RuntimeCallEvent, or None (counted) if not an event we use.

    The event is normalized (adapter/validate.py): NULs replaced, absurd times
    clamped, stacks cut at ``max_stack_depth``.
    """
    kind_name = msg.WhichOneof("event")
    kind = common.HANDLED_KINDS.get(kind_name) if kind_name else None
    if kind is None:
        if kind_name in ("process_throttle", "rate_limit_info") and _drop_signal(msg, kind_name, stats):
            return None
        stats.unhandled[kind_name or "none"] += 1
        return None
    body = getattr(msg, kind_name)
    if not body.HasField("process"):
        stats.malformed["no_process"] += 1
        return None
    proc = body.process
    t = msg.time
    ev = RuntimeCallEvent(
        kind=kind,
        timestamp_ns=t.seconds * 1_000_000_000 + t.nanos,
        node_name=msg.node_name,
        process=_process(proc),
        source="tetragon-grpc",
        received_ns=received_ns,
    )
    if proc.HasField("pod"):
        pod = proc.pod
        c = pod.container
        ev.container = common.make_container(
            raw_id=c.id, name=c.name, image_id=c.image.id, image_name=c.image.name
        )
        ev.pod = PodInfo(
            namespace=pod.namespace,
            name=pod.name,
            uid=pod.uid,
            labels=dict(pod.pod_labels),
            workload=pod.workload,
            workload_kind=pod.workload_kind,
            annotations=_annotations(pod.pod_annotations),
        )
    elif proc.docker:
        ev.container = common.make_container(raw_id=proc.docker, name="", image_id="", image_name="")

    if kind is EventKind.KPROBE:
        fn = body.function_name
        ev.kind = common.kprobe_kind(fn)
        ev.function_name = fn
        ev.policy_name = body.policy_name
        ev.arguments = _arguments(body.args, getattr(body, "return") if body.HasField("return") else None)
        ev.kernel_stack = _frames(body.kernel_stack_trace, max_stack_depth, stats)
        ev.user_stack = _frames(body.user_stack_trace, max_stack_depth, stats)
    elif kind is EventKind.UPROBE:
        ev.function_name = body.symbol
        ev.module = body.path
        ev.symbol_offset = body.offset
        ev.policy_name = body.policy_name
        ev.arguments = _arguments(body.args, None)
    elif kind is EventKind.LOADER:
        ev.module = body.path
        ev.build_id = common.build_id_hex(body.buildid)
    elif kind is EventKind.EXEC:
        ev.module = ev.process.binary
    elif kind is EventKind.TRACEPOINT:
        ev.function_name = f"{body.subsys}/{body.event}"
        ev.policy_name = body.policy_name
        ev.arguments = _arguments(body.args, None)
        if tcp_state_args.is_tcp_state(ev) and not tcp_state_args.normalize(ev):
            stats.repaired["tcp_state_unrecognised"] += 1
    elif kind is EventKind.LSM:
        ev.function_name = body.function_name
        ev.policy_name = body.policy_name
        ev.arguments = _arguments(body.args, None)
    elif kind is EventKind.USDT:
        ev.function_name = f"{body.provider}:{body.name}"
        ev.module = body.path
        ev.policy_name = body.policy_name
        ev.arguments = _arguments(body.args, None)
    try:
        validate.normalize(ev, stats.repaired)
    except validate.BadEvent as e:
        stats.malformed[e.reason] += 1
        return None
    stats.events[ev.kind] += 1
    return ev
