"""Adapter for Tetragon's JSON export: one protojson line -> RuntimeCallEvent.

The export (file or ``tetra getevents -o json``) is protojson with proto field
names: snake_case keys, enums as names, 64-bit integers as strings, wrappers
as bare values, bytes as base64, timestamps as RFC 3339. Lines are decoded
with orjson into dicts and read here directly; protobuf's own JSON parser
(~3,000 lines/s) is far too slow for the per-event path.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson

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

log = logging.getLogger(__name__)
# Distinct unknown event kinds kept as labels of events_unhandled_total (the rest: "other").
MAX_UNHANDLED_LABELS = 32
_KIND_NAME = re.compile(r"process_[a-z][a-z0-9_]{0,47}|test|rate_limit_info|none")
_EMPTY: dict[str, Any] = {}
# EventKind members as module globals: on Python 3.11 reading a member through its class costs ~90 ns
# (the enum's class attribute lookup), a global ~7 ns, and the kind is compared on every event.
_KPROBE, _UPROBE, _LOADER, _EXEC = EventKind.KPROBE, EventKind.UPROBE, EventKind.LOADER, EventKind.EXEC
_TRACEPOINT, _LSM, _USDT = EventKind.TRACEPOINT, EventKind.LSM, EventKind.USDT


class MalformedEvent(ValueError):
    """The line is not a Tetragon event; ``reason`` is the metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def decode_line(line: bytes) -> dict[str, Any]:
    """Decode one export line; invalid UTF-8 is replaced rather than fatal."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        try:
            text = line.decode("utf-8", "replace")
        except Exception:  # pragma: no cover - decode with "replace" cannot fail
            raise MalformedEvent("invalid_json", str(e)) from None
        if "\ufffd" not in text:
            raise MalformedEvent("invalid_json", f"not JSON: {e}") from None
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as e2:
            raise MalformedEvent("invalid_json", f"not JSON: {e2}") from None
    if not isinstance(obj, dict):
        raise MalformedEvent("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _process(p: dict[str, Any]) -> ProcessInfo:
    uid = p.get("uid")
    return ProcessInfo(
        exec_id=p.get("exec_id", ""),
        pid=p.get("pid") or 0,
        tid=p.get("tid") or 0,
        uid=uid if isinstance(uid, int) else None,
        binary=p.get("binary", ""),
        arguments=p.get("arguments", ""),
        cwd=p.get("cwd", ""),
        parent_exec_id=p.get("parent_exec_id", ""),
    )


def _annotations(raw: object) -> dict[str, str]:
    """The pod annotations the agent acts on (``KEPT_POD_ANNOTATIONS``); a wrong type rejects the event."""
    if not raw:  # Tetragon without --enable-pod-annotations, or a pod without annotations
        return {}
    if not isinstance(raw, dict):
        raise TypeError(f"pod annotations are a {type(raw).__name__}, not a map")
    out: dict[str, str] = {}
    for key in KEPT_POD_ANNOTATIONS:
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise TypeError(f"pod annotation {key} is a {type(value).__name__}, not a string")
        out[key] = value
    return out


def _frames(
    entries: list[dict[str, Any]] | None, max_depth: int, stats: common.AdapterStats
) -> list[StackFrame]:
    if not entries:
        return []
    if not isinstance(entries, list):
        raise TypeError(f"a stack trace is a {type(entries).__name__}, not a list")
    if len(entries) > max_depth:
        stats.repaired["stack_truncated"] += 1
        entries = entries[:max_depth]
    return [
        StackFrame(
            module=e.get("module", ""),
            symbol=e.get("symbol", ""),
            offset=_u64(e.get("offset")),
            address=_u64(e.get("address")),
        )
        for e in entries
    ]


U64_END = 1 << 64


def _u64(v: object) -> int:
    """A protojson uint64 (a JSON number, or a string of digits as protojson writes 64-bit
    numbers) as an int; anything else raises ValueError or TypeError (the event is ``bad_type``).

    A negative offset passed every check and made the canonicalizer raise (the event lost as
    ``internal_ValueError``); a fraction was cut silently, a boolean read as 1.
    """
    if v is None or v == "":
        return 0
    if type(v) is int:
        n = v
    elif (type(v) is str and v.isascii() and v.isdigit()) or (type(v) is float and v.is_integer()):
        n = int(v)
    else:
        raise TypeError(f"a {type(v).__name__} where an unsigned integer belongs")
    if not 0 <= n < U64_END:
        raise ValueError("an unsigned integer out of range")
    return n


def _arguments(args: list[dict[str, Any]] | None, ret: dict[str, Any] | None) -> list[Argument]:
    out: list[Argument] = []
    for a in (args or ())[: validate.MAX_ARGUMENTS + 1]:  # normalize cuts and counts the rest
        out.append(_argument(a, a.get("label", "")))
    if ret:
        out.append(_argument(ret, "return"))
    return out


def _argument(a: dict[str, Any], label: str) -> Argument:
    for k, v in a.items():
        if k != "label":
            return Argument(label=label, type=k, value=common.render_arg(k, v))
    return Argument(label=label, type="", value="")


def adapt(
    obj: dict[str, Any],
    *,
    received_ns: int = 0,
    stats: common.AdapterStats,
    max_stack_depth: int = validate.DEFAULT_MAX_STACK_DEPTH,
) -> RuntimeCallEvent | None:
    """One decoded export object -> RuntimeCallEvent, or None (counted) if not an event we use.

    Export files get corrupted and other producers write this format, so a
    field of the wrong type rejects the event (counted as ``bad_type``), never
    the agent; the event is then normalized like a gRPC one (adapter/validate.py).
    """
    try:
        ev = _adapt(obj, received_ns, stats, max_stack_depth)
    except (AttributeError, TypeError, ValueError, KeyError, OverflowError) as e:
        stats.malformed["bad_type"] += 1
        # The type only: int()'s message quotes the value ("invalid literal ... 'hunter2'").
        log.debug("export line with a field of the wrong type (%s)", type(e).__name__)
        return None
    if ev is None:
        return None
    try:
        validate.normalize(ev, stats.repaired)
    except validate.BadEvent as e:
        stats.malformed[e.reason] += 1
        return None
    stats.events[ev.kind] += 1
    return ev


def _unhandled_label(key: str, stats: common.AdapterStats) -> str:
    """The ``events_unhandled_total{kind}`` label of an export line's unknown key.

    The key is whatever the line's writer put there, and it becomes a metric
    label: only a name shaped like Tetragon's event kinds (``process_`` and
    lower-case snake case, bounded) is kept, and only so many distinct ones;
    anything else (``process_password=x``, a millionth new name) is "other".
    """
    if key in stats.unhandled:
        return key
    if _KIND_NAME.fullmatch(key) is None or len(stats.unhandled) >= MAX_UNHANDLED_LABELS:
        return "other"
    return key


def _time_ns(value: object, stats: common.AdapterStats) -> int:
    """The event's RFC 3339 time; 0 (the arrival time is used) when absent or not RFC 3339."""
    if not value:
        return 0
    try:
        if not isinstance(value, str):
            raise TypeError(type(value).__name__)
        return common.rfc3339_to_ns(value)
    except (TypeError, ValueError, OverflowError):
        stats.repaired["time_invalid"] += 1
        return 0


def _drop_signal(obj: dict[str, Any], kind_name: str, stats: common.AdapterStats) -> bool:
    """Tetragon's own drop signal (contracts/drops.py) onto ``stats.drop_signals``; False if unusable."""
    body = obj[kind_name] or _EMPTY
    ts = _time_ns(obj.get("time"), stats)
    if ts < validate.MIN_EVENT_NS or ts > validate.max_event_ns():
        ts = 0  # stamped with the arrival time, like an event
    if kind_name == "rate_limit_info":
        dropped = int(body.get("number_of_dropped_process_events") or 0)
        stats.tetragon_export_dropped += dropped
        sig = common.drop_signal(
            kind_name, throttle_type="", cgroup="", dropped=dropped, timestamp_ns=ts,
            node_name=obj.get("node_name", ""),
        )  # fmt: skip
    else:
        sig = common.drop_signal(
            kind_name, throttle_type=str(body.get("type") or ""), cgroup=body.get("cgroup", ""), dropped=0,
            timestamp_ns=ts, node_name=obj.get("node_name", ""),
        )  # fmt: skip
    if sig is None:
        return False
    stats.drop_signals.append(sig)
    return True


def _adapt(
    obj: dict[str, Any], received_ns: int, stats: common.AdapterStats, max_stack_depth: int
) -> RuntimeCallEvent | None:
    kind_name = ""
    body: dict[str, Any] = _EMPTY
    for k, v in obj.items():
        if k in common.HANDLED_KINDS:
            kind_name, body = k, v
            break
    if not kind_name:
        other = next((k for k in obj if k.startswith("process_") or k in ("test", "rate_limit_info")), "none")
        if other in ("process_throttle", "rate_limit_info") and _drop_signal(obj, other, stats):
            return None
        stats.unhandled[_unhandled_label(other, stats)] += 1
        return None
    if not isinstance(body, dict):
        stats.malformed["bad_event_body"] += 1
        return None

    proc = body.get("process")
    if not isinstance(proc, dict):
        stats.malformed["no_process"] += 1
        return None
    kind = common.HANDLED_KINDS[kind_name]
    if kind is _EXEC and common.procfs_flag(proc.get("flags") or ""):  # not a str: bad_type (adapt)
        stats.unhandled[common.PROCFS_EXEC] += 1
        return None
    ev = RuntimeCallEvent(
        kind=kind,
        timestamp_ns=_time_ns(obj.get("time"), stats),
        node_name=obj.get("node_name", ""),
        process=_process(proc),
        policy_name=body.get("policy_name", ""),
        source="tetragon-export",
        received_ns=received_ns,
    )
    pod = proc.get("pod")
    if pod:
        c = pod.get("container") or _EMPTY
        img = c.get("image") or _EMPTY
        ev.container = common.make_container(
            raw_id=c.get("id", ""),
            name=c.get("name", ""),
            image_id=img.get("id", ""),
            image_name=img.get("name", ""),
        )
        ev.pod = PodInfo(
            namespace=pod.get("namespace", ""),
            name=pod.get("name", ""),
            uid=pod.get("uid", ""),
            labels=pod.get("pod_labels") or {},
            workload=pod.get("workload", ""),
            workload_kind=pod.get("workload_kind", ""),
            annotations=_annotations(pod.get("pod_annotations")),
        )
    elif proc.get("docker"):
        ev.container = common.make_container(raw_id=proc["docker"], name="", image_id="", image_name="")

    if kind is _KPROBE:
        fn = body.get("function_name", "")
        ev.kind = common.kprobe_kind(fn)
        ev.function_name = fn
        ev.arguments = _arguments(body.get("args"), body.get("return"))
        ev.kernel_stack = _frames(body.get("kernel_stack_trace"), max_stack_depth, stats)
        ev.user_stack = _frames(body.get("user_stack_trace"), max_stack_depth, stats)
    elif kind is _UPROBE:
        ev.function_name = body.get("symbol", "")
        ev.module = body.get("path", "")
        ev.symbol_offset = _u64(body.get("offset"))
        ev.arguments = _arguments(body.get("args"), None)
    elif kind is _LOADER:
        ev.module = body.get("path", "")
        raw = body.get("buildid")
        ev.build_id = common.build_id_hex(common.b64_to_bytes(raw)) if raw else ""
    elif kind is _EXEC:
        ev.module = ev.process.binary
    elif kind is _TRACEPOINT:
        ev.function_name = f"{body.get('subsys', '')}/{body.get('event', '')}"
        ev.arguments = _arguments(body.get("args"), None)
        if tcp_state_args.is_tcp_state(ev) and not tcp_state_args.normalize(ev):
            stats.repaired["tcp_state_unrecognised"] += 1
    elif kind is _LSM:
        ev.function_name = body.get("function_name", "")
        ev.arguments = _arguments(body.get("args"), None)
    elif kind is _USDT:
        ev.function_name = f"{body.get('provider', '')}:{body.get('name', '')}"
        ev.module = body.get("path", "")
        ev.arguments = _arguments(body.get("args"), None)
    return ev
