"""Adapter for Tetragon's gRPC stream: one GetEventsResponse -> RuntimeCallEvent.

Reads fields by direct attribute access on upb messages (~8 µs an event with a
stack); ``json_format.MessageToDict`` would cost ~100 µs and is used only for
the rare compound argument types, so that they render exactly as the JSON
adapter renders them. Process arguments and argument values are cut as they
are read (``validate.cut_early``): a hostile workload's 4 MiB argument is
copied once out of the message, never again.

``decode`` (and ``adapt_payload``, both in one call) decodes the payload's
second view (adapter/proto_parts.py), which keeps the process description
and stack entries an event repeats as raw bytes; ``adapt`` takes those from
proto_parts' tables instead of reading them out of a message again (the same
answer, a test compares every field). When every part is known (or a stack
entry small enough to read alone), the event is built from the second view
alone (adapter/known_parts.py); otherwise the payload is decoded whole with
Tetragon's schema as before, and a payload that schema refuses is counted
``invalid_protobuf``. A message decoded elsewhere (tests, tools) is read
field by field.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError

from stellaops_runtime.adapter import common, known_parts, proto_parts, tcp_state_args, validate
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
_PARSE = GetEventsResponse.FromString
# EventKind members as module globals: on Python 3.11 reading a member through its class costs ~90 ns
# (the enum's class attribute lookup), a global ~7 ns, and the kind is compared on every event.
_KPROBE, _UPROBE, _LOADER, _EXEC = EventKind.KPROBE, EventKind.UPROBE, EventKind.LOADER, EventKind.EXEC
_TRACEPOINT, _LSM, _USDT = EventKind.TRACEPOINT, EventKind.LSM, EventKind.USDT
# The latest event time accepted, as last computed (validate.max_event_ns: now + a day). The limit only
# grows, so a time at or below the last one computed is below the current one: computed again (a clock
# read) only for a time above it, which then decides with the current limit (as agent/fastpath.py does).
_max_ns = 0


def _above_limit(ts: int) -> bool:
    global _max_ns
    _max_ns = validate.max_event_ns()
    return ts > _max_ns


# common.kprobe_kind by function name: a kprobe's kind is read on every kprobe event (bounded: starts over).
_kprobe_kinds: dict[str, EventKind] = {}
_MAX_KPROBE_KINDS = 4096


def _kprobe_kind(function_name: str) -> EventKind:
    kind = common.kprobe_kind(function_name)
    if len(function_name) <= 256:
        if len(_kprobe_kinds) >= _MAX_KPROBE_KINDS:
            _kprobe_kinds.clear()
        _kprobe_kinds[function_name] = kind
    return kind


_HALF_TEXT = validate.MAX_TEXT_CHARS // 2


def _clean_payload(payload: bytes) -> bool:
    """Whether every text an event without arguments reads from ``payload`` passes
    validate.fields_clean: each is a ``str`` (protobuf's), none holds a NUL (a NUL character is the
    byte 0 in UTF-8, which protobuf's decoder checks, and the payload holds none) and none is longer
    than validate.MAX_TEXT_CHARS (a text has at most as many characters as the payload has bytes;
    a loader's build-id is written in hex, two characters a byte: hence half)."""
    # ``0 in payload``, not ``b"\x00" in payload``: bytes.__contains__ tries its argument as an int
    # first, and a bytes argument costs a formatted TypeError (~1k instructions) before the search.
    return len(payload) <= _HALF_TEXT and 0 not in payload


class Decoded:
    """A payload the second view (proto_parts.SHADOW) accepted: that view and the payload's bytes."""

    __slots__ = ("payload", "shadow")

    def __init__(self, shadow: Any, payload: bytes) -> None:
        self.shadow = shadow
        self.payload = payload


def decode(payload: bytes, stats: common.AdapterStats) -> Decoded | None:
    """Decode one serialized GetEventsResponse for :func:`adapt`; malformed bytes are counted, not raised.

    Only the second view is decoded here: it refuses no payload Tetragon's schema accepts, and
    :func:`adapt` counts ``invalid_protobuf`` for one that schema refuses (see :func:`known_parts.known`).
    """
    try:
        return Decoded(_SHADOW_PARSE(payload), payload)
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
    else:  # the rare compound types: protobuf's JSON module is imported for them alone (issue 13)
        from google.protobuf import json_format

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
    if ts < validate.MIN_EVENT_NS or ts > validate.max_event_ns():
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
    if type(msg) is Decoded:
        return _from_shadow(msg.shadow, msg.payload, received_ns, stats, max_stack_depth)
    return _adapt(msg, None, received_ns, stats, max_stack_depth)


def adapt_payload(
    payload: bytes,
    received_ns: int,
    stats: common.AdapterStats,
    max_stack_depth: int = validate.DEFAULT_MAX_STACK_DEPTH,
) -> RuntimeCallEvent | None:
    """``adapt(decode(payload, stats), ...)`` in one call (the pipeline's): the same event and counters."""
    try:
        shadow = _SHADOW_PARSE(payload)
    except DecodeError:
        stats.malformed["invalid_protobuf"] += 1
        return None
    known = known_parts.known(shadow, payload, max_stack_depth)  # _from_shadow, inlined (once per event)
    if known is not None:
        return _build(*known, received_ns, stats, payload)  # type: ignore[call-arg]  # 8 parts
    return _whole(shadow, payload, received_ns, stats, max_stack_depth)


def _from_shadow(
    shadow: Any, payload: bytes, received_ns: int, stats: common.AdapterStats, max_stack_depth: int
) -> RuntimeCallEvent | None:
    """The event of a payload the second view accepted: from that view when every part is known (see
    :func:`known_parts.known`), else decoded whole with Tetragon's schema (which may refuse it: counted)."""
    known = known_parts.known(shadow, payload, max_stack_depth)
    if known is not None:
        return _build(*known, received_ns, stats, payload)  # type: ignore[call-arg]  # 8 parts
    return _whole(shadow, payload, received_ns, stats, max_stack_depth)


def _whole(
    shadow: Any, payload: bytes, received_ns: int, stats: common.AdapterStats, max_stack_depth: int
) -> RuntimeCallEvent | None:
    """The event of a payload decoded whole with Tetragon's schema (which may refuse it: counted)."""
    try:
        msg = _PARSE(payload)
    except DecodeError:
        stats.malformed["invalid_protobuf"] += 1
        return None
    return _adapt(msg, shadow, received_ns, stats, max_stack_depth)


def _adapt(
    msg: Any, shadow: Any | None, received_ns: int, stats: common.AdapterStats, max_stack_depth: int
) -> RuntimeCallEvent | None:
    """:func:`adapt` of a decoded message; ``shadow`` the second view of its payload (None: a message
    decoded elsewhere, read field by field)."""
    kind_name = msg.WhichOneof("event")
    kind = common.HANDLED_KINDS.get(kind_name) if kind_name else None
    if kind is None:
        if kind_name in ("process_throttle", "rate_limit_info") and _drop_signal(msg, kind_name, stats):
            return None
        stats.unhandled[kind_name or "none"] += 1
        return None
    body = getattr(msg, kind_name)
    if shadow is not None:  # the parts an event repeats, by their raw bytes (adapter/proto_parts.py)
        shadow_body = getattr(shadow, kind_name)
        raws = shadow_body.process  # one entry per occurrence of the field: none when it is absent
        if not raws:
            stats.malformed["no_process"] += 1
            return None
        key = raws[0] if len(raws) == 1 else tuple(raws)
        part = proto_parts.PARTS.processes.get(key)
        if part is None:
            part = proto_parts.PARTS.new_process(key, body.process)
    else:
        if not body.HasField("process"):
            stats.malformed["no_process"] += 1
            return None
        part = proto_parts.read_process(body.process)
    clean = part[3]
    kernel_stack: list[StackFrame] = []
    user_stack: list[StackFrame] = []
    if kind is _KPROBE:
        if shadow is not None:
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
    t = msg.time
    ts = t.seconds * 1_000_000_000 + t.nanos
    return _build(ts, msg.node_name, kind, body, part, kernel_stack, user_stack, clean, received_ns, stats)


def _build(
    ts: int,
    node: str,
    kind: EventKind,
    body: Any,
    part: proto_parts.ProcessPart,
    kernel_stack: list[StackFrame],
    user_stack: list[StackFrame],
    clean: bool,
    received_ns: int,
    stats: common.AdapterStats,
    payload: bytes | None = None,
) -> RuntimeCallEvent | None:
    """The event from its time, node, body (either view), process part and stacks; normalized, counted.

    ``payload``: the bytes the event was read from, when they were all read from it (the second view).
    """
    pv, cv, podv, _, procfs = part
    if procfs and kind is _EXEC:  # Tetragon's /proc walk at its start: no execution seen (common.procfs_flag)
        stats.unhandled[common.PROCFS_EXEC] += 1
        return None
    process = ProcessInfo(*pv)
    container = None if cv is None else ContainerInfo(*cv)
    pod = None
    if podv is not None:
        ns, name, uid, labels, workload, workload_kind, annotations = podv
        pod = PodInfo(ns, name, uid, labels.copy(), workload, workload_kind, annotations.copy())
    # The event's own fields, read once and handed to RuntimeCallEvent in one call (no field set twice).
    function_name = module = build_id = policy_name = ""
    symbol_offset = 0
    arguments: list[Argument] = []
    if kind is _KPROBE:
        function_name = body.function_name
        kind = _kprobe_kinds.get(function_name) or _kprobe_kind(function_name)
        policy_name = body.policy_name
        args = body.args
        ret = getattr(body, "return") if body.HasField("return") else None
        if args or ret is not None:  # most syscall kprobes carry neither: no call for an empty list
            arguments = _arguments(args, ret)
    elif kind is _UPROBE:
        function_name = body.symbol
        module = body.path
        symbol_offset = body.offset
        policy_name = body.policy_name
        arguments = _arguments(body.args, None)
    elif kind is _LOADER:
        module = body.path
        build_id = common.build_id_hex(body.buildid)
    elif kind is _EXEC:
        module = process.binary
    elif kind is _TRACEPOINT:
        function_name = f"{body.subsys}/{body.event}"
        policy_name = body.policy_name
        arguments = _arguments(body.args, None)
    elif kind is _LSM:
        function_name = body.function_name
        policy_name = body.policy_name
        arguments = _arguments(body.args, None)
    elif kind is _USDT:
        function_name = f"{body.provider}:{body.name}"
        module = body.path
        policy_name = body.policy_name
        arguments = _arguments(body.args, None)
    ev = RuntimeCallEvent(
        kind, ts, node, process, container, pod, function_name, module, symbol_offset, build_id, "",
        policy_name, arguments, kernel_stack, user_stack, None, "tetragon-grpc", received_ns,
    )  # fmt: skip
    if kind is _TRACEPOINT and tcp_state_args.is_tcp_state(ev) and not tcp_state_args.normalize(ev):
        stats.repaired["tcp_state_unrecognised"] += 1
    # _clean_payload, inlined (once per event)
    if clean and not arguments and payload is not None and len(payload) <= _HALF_TEXT and 0 not in payload:
        pass  # its texts hold no NUL, none is too long: what fields_clean would say, without the list
    elif clean:  # the parts reused were clean: only what was read for this event is checked
        texts: list[object] = [node, function_name, module, build_id, policy_name]
        if arguments:
            for a in ev.arguments:  # the event's (a TCP state event's were rewritten)
                texts += (a.label, a.type, a.value)
        # more traced arguments than normalize() keeps (a hostile message with thousands): cut, counted
        clean = validate.fields_clean(texts) and len(ev.arguments) <= validate.MAX_ARGUMENTS
    if clean:  # normalize() would change no text: only the time is checked (the rest is protobuf-typed)
        if (ts < validate.MIN_EVENT_NS and ts != 0) or (ts > _max_ns and _above_limit(ts)):
            stats.repaired["time_clamped"] += 1
            ev.timestamp_ns = 0
    else:
        try:
            validate.normalize(ev, stats.repaired)
        except validate.BadEvent as e:
            stats.malformed[e.reason] += 1
            return None
    stats.events[kind] += 1
    return ev
