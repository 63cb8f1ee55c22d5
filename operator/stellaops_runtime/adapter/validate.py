"""Make one adapted event safe for everything after the adapter, or reject it.

A hostile workload or a corrupted export file controls most of an event's
text: one NUL character in an argument made PostgreSQL refuse a whole batch
of good counts, a time in year 33000 stopped the agent, a JSON export line
with a list where a string belongs crashed the pipeline, and a 10,000-frame
stack took the agent to 920 MB. So every event leaves the adapter:

- with every text field a ``str`` (a field of another type rejects the
  event, counted as ``bad_type``), free of NUL characters (each replaced by
  U+FFFD, in process arguments by a space since NUL separates argv entries;
  counted as ``nul_replaced``: the event still counts);
- with a time the store can hold and that is not absurd: outside
  [``MIN_EVENT_NS`` (2020-01-01), now + ``MAX_FUTURE_SECONDS``] it is replaced
  by the time the agent received it (counted as ``time_clamped``), so windows
  are never filed in year 33000, nor in 1970 for a time of 1 ns or a
  boot-relative clock read as wall time. The floor is fixed, not the boot or
  the agent's start: an export file read from its start legitimately holds
  events of earlier boots (Tetragon's own test data dates from 2021);
- with stacks of at most ``max_stack_depth`` frames (the adapters cut them
  before building frames; counted as ``stack_truncated``), text fields of
  at most ``MAX_TEXT_CHARS`` characters and at most ``MAX_ARGUMENTS`` traced
  arguments (both counted as ``text_truncated``).

The common case costs two C-level calls: every text field is joined with
NUL as the separator, which raises ``TypeError`` on a non-``str`` and holds
exactly ``len(fields) - 1`` NULs when all is well. Only a suspicious event
takes the slow, field-by-field path.
"""

from __future__ import annotations

import time
from collections import Counter

from stellaops_runtime.contracts.events import RuntimeCallEvent

# Tetragon's own maximum (PERF_MAX_STACK_DEPTH): deeper stacks are not Tetragon's.
DEFAULT_MAX_STACK_DEPTH = 127
# Longest text kept in any one field (arguments are cut further by the privacy filter).
MAX_TEXT_CHARS = 64 * 1024
# Most traced arguments kept of one event (a Tetragon policy traces a handful); also counted as
# text_truncated. Adapters may stop reading at one more than this.
MAX_ARGUMENTS = 64
# A clock can be off; an event from more than a day ahead is not an event time.
MAX_FUTURE_SECONDS = 86_400
# The earliest event time accepted: 2020-01-01T00:00:00Z, before Tetragon (2022; its test data
# from 2021) or our probes produced any event. A time before it is a clock value read wrong (0,
# 1 ns, a boot-relative ktime taken for wall time: January 1970 plus the uptime), not when an
# event happened; it would file counts and a watched window in 1970.
MIN_EVENT_NS = 1_577_836_800 * 1_000_000_000
REPLACEMENT = "\ufffd"


class BadEvent(ValueError):
    """The event cannot be used; ``reason`` is the ``events_malformed_total`` label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _text_fields(ev: RuntimeCallEvent) -> list[object]:
    p = ev.process
    out: list[object] = [
        ev.node_name, ev.function_name, ev.module, ev.build_id, ev.policy_name,
        p.exec_id, p.binary, p.arguments, p.cwd, p.parent_exec_id,
    ]  # fmt: skip
    c = ev.container
    if c is not None:
        out += (c.id, c.runtime, c.name, c.image_ref, c.image_id, c.image_digest)
    pod = ev.pod
    if pod is not None:
        out += (pod.namespace, pod.name, pod.uid, pod.workload, pod.workload_kind)
        labels = pod.labels
        if type(labels) is dict:
            out += labels.keys()
            out += labels.values()
        else:
            out.append(labels)  # not a string: the slow path rejects it
    for a in ev.arguments:
        out += (a.label, a.type, a.value)
    for f in ev.kernel_stack:
        out += (f.module, f.symbol)
    for f in ev.user_stack:
        out += (f.module, f.symbol)
    return out


def _clean(value: object, what: str, issues: set[str], *, nul: str = REPLACEMENT) -> str:
    if type(value) is not str:
        raise BadEvent("bad_type", f"{what} is a {type(value).__name__}, not a string")
    if "\x00" in value:
        issues.add("nul_replaced")
        value = value.replace("\x00", nul)
    if len(value) > MAX_TEXT_CHARS:
        issues.add("text_truncated")
        value = value[:MAX_TEXT_CHARS]
    return value


def _repair(ev: RuntimeCallEvent, issues: set[str]) -> None:
    """The slow path: check and clean every text field in place."""
    ev.node_name = _clean(ev.node_name, "node_name", issues)
    ev.function_name = _clean(ev.function_name, "function_name", issues)
    ev.module = _clean(ev.module, "module", issues)
    ev.build_id = _clean(ev.build_id, "build_id", issues)
    ev.policy_name = _clean(ev.policy_name, "policy_name", issues)
    p = ev.process
    for name in ("exec_id", "binary", "cwd", "parent_exec_id"):
        setattr(p, name, _clean(getattr(p, name), f"process.{name}", issues))
    # NUL separates argv entries (/proc/<pid>/cmdline): a space keeps them apart for the privacy filter.
    p.arguments = _clean(p.arguments, "process.arguments", issues, nul=" ")
    c = ev.container
    if c is not None:
        for name in ("id", "runtime", "name", "image_ref", "image_id", "image_digest"):
            setattr(c, name, _clean(getattr(c, name), f"container.{name}", issues))
    pod = ev.pod
    if pod is not None:
        for name in ("namespace", "name", "uid", "workload", "workload_kind"):
            setattr(pod, name, _clean(getattr(pod, name), f"pod.{name}", issues))
        if not isinstance(pod.labels, dict):
            raise BadEvent("bad_type", f"pod labels are a {type(pod.labels).__name__}, not a map")
        pod.labels = {
            _clean(k, "pod label", issues): _clean(v, "pod label value", issues)
            for k, v in pod.labels.items()
        }
    for a in ev.arguments:
        a.label = _clean(a.label, "argument label", issues)
        a.type = _clean(a.type, "argument type", issues)
        a.value = _clean(a.value, "argument value", issues)
    for stack in (ev.kernel_stack, ev.user_stack):
        for f in stack:
            f.module = _clean(f.module, "stack frame module", issues)
            f.symbol = _clean(f.symbol, "stack frame symbol", issues)


def cut_early(text: str) -> str:
    """``text`` cut to one character past ``MAX_TEXT_CHARS``, for adapters to call on arrival.

    A hostile workload makes process arguments and argument values megabytes
    long; cut as soon as the adapter reads them, no later copy (the checks
    below, the privacy filter) is larger than that. One character past the
    limit is kept so that :func:`normalize` still finds the field too long and
    cuts and counts it (``text_truncated``) exactly as for any other field.
    """
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS + 1]


def cut_bytes_early(raw: bytes) -> bytes:
    """Bytes that decode to at least as many characters as :func:`cut_early` keeps (4 bytes each at most)."""
    limit = (MAX_TEXT_CHARS + 1) * 4
    return raw if len(raw) <= limit else raw[:limit]


def _suspicious(fields: list[object]) -> bool:
    """Whether some field is not a ``str``, holds a NUL or is over ``MAX_TEXT_CHARS`` (then every
    field is checked and cleaned one by one)."""
    return not fields_clean(fields)


def fields_clean(fields: list[object] | tuple[object, ...]) -> bool:
    """Whether :func:`normalize` would leave these text fields as they are: each a ``str`` of at most
    ``MAX_TEXT_CHARS`` characters without NUL (adapters remember this of parts they reuse)."""
    if not fields:
        return True
    try:
        joined = "\x00".join(fields)  # type: ignore[arg-type]  # TypeError is the check
    except TypeError:
        return False
    if joined.count("\x00") != len(fields) - 1:
        return False
    return len(joined) <= MAX_TEXT_CHARS or max(map(len, fields)) <= MAX_TEXT_CHARS  # type: ignore[arg-type]


def max_event_ns() -> int:
    """The latest event time accepted (now + ``MAX_FUTURE_SECONDS``), in ns since the epoch."""
    return (int(time.time()) + MAX_FUTURE_SECONDS) * 1_000_000_000


_max_ns = max_event_ns


def normalize(ev: RuntimeCallEvent, issues: Counter[str]) -> None:
    """Clean ``ev`` in place (see the module docstring); raises :class:`BadEvent` to reject it.

    ``issues`` counts the events repaired, by reason (once per event and reason).
    A zero timestamp (the source gave none) is left for the pipeline to stamp
    with the arrival time.
    """
    cut = len(ev.arguments) > MAX_ARGUMENTS  # an export line with a million tiny arguments
    if cut:
        del ev.arguments[MAX_ARGUMENTS:]
    if _suspicious(_text_fields(ev)):
        found: set[str] = {"text_truncated"} if cut else set()
        _repair(ev, found)
        issues.update(found)  # counted once per event and reason, whatever the number of fields
    elif cut:
        issues["text_truncated"] += 1
    ts = ev.timestamp_ns
    if type(ts) is not int:
        raise BadEvent("bad_type", f"time is a {type(ts).__name__}")
    if (ts < MIN_EVENT_NS and ts != 0) or ts > _max_ns():
        issues["time_clamped"] += 1
        ev.timestamp_ns = 0  # the pipeline stamps it with the arrival time
    p = ev.process
    if type(p.pid) is not int or type(p.tid) is not int or (p.uid is not None and type(p.uid) is not int):
        raise BadEvent("bad_type", "a process id is not an integer")
    for f in ev.user_stack:
        if type(f.offset) is not int or type(f.address) is not int:
            raise BadEvent("bad_type", "a stack frame offset or address is not an integer")
    if type(ev.symbol_offset) is not int:
        raise BadEvent("bad_type", "the probe offset is not an integer")
