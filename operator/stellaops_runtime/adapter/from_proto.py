"""Adapter for Tetragon's gRPC stream: one GetEventsResponse -> RuntimeCallEvent.

Reads fields by direct attribute access on upb messages (~8 µs an event with a
stack); ``json_format.MessageToDict`` would cost ~100 µs and is used only for
the rare compound argument types, so that they render exactly as the JSON
adapter renders them. Process arguments and argument values are cut as they
are read (``validate.cut_early``): a hostile workload's 4 MiB argument is
copied once out of the message, never again.

``decode`` keeps the payload with the message; ``adapt`` then takes the
process description and stack frames an event repeats from
adapter/proto_parts.py, by their raw bytes, instead of reading them out of
the message again (the same answer, a test compares every field). A message
decoded elsewhere (tests, tools) is read field by field.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from stellaops_runtime.adapter import common, proto_parts, tcp_state_args, validate
from stellaops_runtime.contracts.events import (
    Argument,
    ContainerInfo,
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
_SHADOW_PARSE = proto_parts.SHADOW.FromString


class Decoded:
    """A payload the real schema accepted: the decoded message and the payload's bytes."""

    __slots__ = ("msg", "payload")

    def __init__(self, msg: Any, payload: bytes) -> None:
        self.msg = msg
        self.payload = payload


def decode(payload: bytes, stats: common.AdapterStats) -> Decoded | None:
    """Decode one serialized GetEventsResponse for :func:`adapt`; malformed bytes are counted, not raised."""
    try:
        return Decoded(GetEventsResponse.FromString(payload), payload)
    except DecodeError:
        stats.malformed["invalid_protobuf"] += 1
        return None


def _frames(entries: Any, max_depth: int, stats: common.AdapterStats) -> list[StackFrame]:
    if len(entries) > max_depth:
        stats.repaired["stack_truncated"] += 1
        entries = entries[:max_depth]  # innermost first: the frames that matter most are kept
    return [StackFrame(e.module, e.symbol, e.offset, e.address) for e in entries]


def _known_frames(
    raws: Any, body: Any, field: str, max_depth: int, stats: common.AdapterStats
) -> tuple[list[StackFrame], bool]:
    """Frames by their raw bytes (proto_parts), read from ``body.<field>`` if unknown; whether all clean."""
    if len(raws) > max_depth:
        stats.repaired["stack_truncated"] += 1
        raws = raws[:max_depth]
    get = proto_parts.PARTS.frames.get
    out: list[StackFrame] = []
    clean = True
    entries = None
    for i, raw in enumerate(raws):
        f = get(raw)
        if f is None:  # not remembered (or not clean): read from the decoded message
            if entries is None:
                entries = getattr(body, field)
            f, ok = proto_parts.PARTS.new_frame(raw, entries[i])
            if not ok:
                clean = False
        out.append(StackFrame(*f))
    return out, clean


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
    out = [_argument(a, a.label) for a in args] if args else []  # most syscall kprobes carry none
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
    """One GetEventsResponse (as :func:`decode` gives it, or a message) -> RuntimeCallEvent, or None (counted)
    if not an event we use.

    The event is normalized (adapter/validate.py): NULs replaced, absurd times
    clamped, stacks cut at ``max_stack_depth``.
    """
    shadow_body = None
    if type(msg) is Decoded:
        payload = msg.payload
        msg = msg.msg
    else:
        payload = None
    kind_name = msg.WhichOneof("event")
    kind = common.HANDLED_KINDS.get(kind_name) if kind_name else None
    if kind is None:
        if kind_name in ("process_throttle", "rate_limit_info") and _drop_signal(msg, kind_name, stats):
            return None
        stats.unhandled[kind_name or "none"] += 1
        return None
    body = getattr(msg, kind_name)
    if payload is not None:  # the parts an event repeats, by their raw bytes (adapter/proto_parts.py)
        shadow_body = getattr(_SHADOW_PARSE(payload), kind_name)
        raws = shadow_body.process  # one entry per occurrence of the field: none when it is absent
        has_process = len(raws) > 0
    else:
        has_process = body.HasField("process")
    if not has_process:
        stats.malformed["no_process"] += 1
        return None
    t = msg.time
    ts = t.seconds * 1_000_000_000 + t.nanos
    node = msg.node_name
    if payload is not None:
        key = raws[0] if len(raws) == 1 else tuple(raws)
        part = proto_parts.PARTS.processes.get(key)
        if part is None:
            part = proto_parts.PARTS.new_process(key, body.process)
    else:
        part = proto_parts.read_process(body.process)
    pv, cv, podv, clean = part
    process = ProcessInfo(*pv)
    container = None if cv is None else ContainerInfo(*cv)
    pod = None
    if podv is not None:
        ns, name, uid, labels, workload, workload_kind, annotations = podv
        pod = PodInfo(ns, name, uid, dict(labels), workload, workload_kind, dict(annotations))
    # The event's own fields, read once and handed to RuntimeCallEvent in one call (no field set twice).
    function_name = module = build_id = policy_name = ""
    symbol_offset = 0
    arguments: list[Argument] = []
    kernel_stack: list[StackFrame] = []
    user_stack: list[StackFrame] = []
    if kind is EventKind.KPROBE:
        function_name = body.function_name
        kind = common.kprobe_kind(function_name)
        policy_name = body.policy_name
        arguments = _arguments(body.args, getattr(body, "return") if body.HasField("return") else None)
        if shadow_body is not None:
            kernel_stack, k_clean = _known_frames(
                shadow_body.kernel_stack_trace, body, "kernel_stack_trace", max_stack_depth, stats
            )
            user_stack, u_clean = _known_frames(
                shadow_body.user_stack_trace, body, "user_stack_trace", max_stack_depth, stats
            )
            clean = clean and k_clean and u_clean
        else:
            kernel_stack = _frames(body.kernel_stack_trace, max_stack_depth, stats)
            user_stack = _frames(body.user_stack_trace, max_stack_depth, stats)
            clean = False
    elif kind is EventKind.UPROBE:
        function_name = body.symbol
        module = body.path
        symbol_offset = body.offset
        policy_name = body.policy_name
        arguments = _arguments(body.args, None)
    elif kind is EventKind.LOADER:
        module = body.path
        build_id = common.build_id_hex(body.buildid)
    elif kind is EventKind.EXEC:
        module = process.binary
    elif kind is EventKind.TRACEPOINT:
        function_name = f"{body.subsys}/{body.event}"
        policy_name = body.policy_name
        arguments = _arguments(body.args, None)
    elif kind is EventKind.LSM:
        function_name = body.function_name
        policy_name = body.policy_name
        arguments = _arguments(body.args, None)
    elif kind is EventKind.USDT:
        function_name = f"{body.provider}:{body.name}"
        module = body.path
        policy_name = body.policy_name
        arguments = _arguments(body.args, None)
    ev = RuntimeCallEvent(
        kind, ts, node, process, container, pod, function_name, module, symbol_offset, build_id, "",
        policy_name, arguments, kernel_stack, user_stack, None, "tetragon-grpc", received_ns,
    )  # fmt: skip
    if kind is EventKind.TRACEPOINT and tcp_state_args.is_tcp_state(ev) and not tcp_state_args.normalize(ev):
        stats.repaired["tcp_state_unrecognised"] += 1
    if clean:  # the parts reused were clean: only what was read for this event is checked
        texts: list[object] = [node, function_name, module, build_id, policy_name]
        for a in ev.arguments:
            texts += (a.label, a.type, a.value)
        clean = validate.fields_clean(texts)
    try:
        if clean:  # normalize() would change no text: only the time is checked (the rest is protobuf-typed)
            ts = ev.timestamp_ns
            if ts < 0 or ts > validate.max_event_ns():
                stats.repaired["time_clamped"] += 1
                ev.timestamp_ns = 0
        else:
            validate.normalize(ev, stats.repaired)
    except validate.BadEvent as e:
        stats.malformed[e.reason] += 1
        return None
    stats.events[ev.kind] += 1
    return ev
