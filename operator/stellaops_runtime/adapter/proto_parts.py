"""The parts of a Tetragon event that repeat, adapted once and remembered by their raw bytes.

Tetragon repeats a process's whole description (ids, binary, arguments, pod,
labels, container, image) in every event of that process, and most stack
frames of a process are the frames of its last event. Reading those fields
out of a decoded message costs one Python object per field and frame (~60 %
of the gRPC adapter's time on an event with stacks), yet the same bytes
always give the same fields. So the gRPC adapter takes, besides the decoded
message, the raw bytes of

- each occurrence of the event body's ``process`` field (protobuf merges a
  field that occurs more than once: the key is every occurrence, in order),
- each entry of ``kernel_stack_trace`` and ``user_stack_trace``,

from a second view of the same payload (``SHADOW``: Tetragon's schema with
those fields declared ``repeated bytes``; it refuses no payload the real
schema accepts, and what the real schema accepts is decided as before:
adapter/known_parts.py), and looks them up here. A hit gives the values the
adapter read the first time, and whether they passed the text checks of
adapter/validate.py (``clean``; a frame is remembered only when clean, so a
frame found is a clean one); a miss reads them from the decoded message (or
a stack entry alone) as before and remembers them.
Values are immutable (strings, ints, tuples; a pod's two maps are dicts
nothing changes): every event gets new
``ProcessInfo``/``ContainerInfo``/``PodInfo``/``StackFrame`` objects and its
own copies of the maps, because later stages change them in place.

Bounded: at most ``MAX_PROCESSES`` process entries of at most
``MAX_PROCESS_BYTES`` bytes each and ``MAX_FRAMES`` frames of at most
``MAX_FRAME_BYTES``; a table that is full starts over. Larger parts are
never remembered (a hostile 4 MiB argument list is read once, as before).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    field_mask_pb2,
    message_factory,
    timestamp_pb2,
    wrappers_pb2,
)
from google.protobuf.message import DecodeError

from stellaops_runtime.adapter import common, validate
from stellaops_runtime.contracts.events import KEPT_POD_ANNOTATIONS
from stellaops_runtime.wire.tetragon import events_pb2, tetragon_pb2

MAX_PROCESSES = 1024
MAX_PROCESS_BYTES = 4096
MAX_FRAMES = 4096
MAX_FRAME_BYTES = 512
# Stack entries' shapes (the bytes after a leading offset field) remembered, at most (see Parts.shaped).
MAX_SHAPES = 1024
# A stack entry this small is read on its own (StackTraceEntry.FromString) when not remembered: it
# cannot nest the 99 groups (a start and an end tag each, at least 2 bytes) that would reach Tetragon's
# schema's depth limit inside a payload, where an entry sits two messages deep (upb's limit is 100, so
# 98 nested groups are accepted there and 100 alone), so alone and in its payload it is accepted or
# refused alike (tests/unit/test_adapter_known_parts.py). A larger unknown one: the payload is decoded whole.
MAX_ALONE_FRAME_BYTES = 2 * 98

# The event bodies the adapter reads (common.HANDLED_KINDS), by message name.
_BODIES = (
    "ProcessExec", "ProcessExit", "ProcessKprobe", "ProcessTracepoint",
    "ProcessUprobe", "ProcessUsdt", "ProcessLsm", "ProcessLoader",
)  # fmt: skip
_STACKS = ("kernel_stack_trace", "user_stack_trace")


def _shadow_class() -> Any:
    """GetEventsResponse with the bodies' ``process`` and stack entries as ``repeated bytes``."""
    pool = descriptor_pool.DescriptorPool()
    for mod in (duration_pb2, field_mask_pb2, timestamp_pb2, wrappers_pb2):
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(mod.DESCRIPTOR.serialized_pb))
    for mod in (tetragon_pb2, events_pb2):
        fdp = descriptor_pb2.FileDescriptorProto.FromString(mod.DESCRIPTOR.serialized_pb)
        for msg in fdp.message_type:
            if msg.name not in _BODIES:
                continue
            for f in msg.field:
                if f.name == "process" or (msg.name == "ProcessKprobe" and f.name in _STACKS):
                    f.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                    f.label = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
                    f.ClearField("type_name")
        pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tetragon.GetEventsResponse"))


SHADOW = _shadow_class()

# (process, container, pod, clean, procfs): ProcessInfo's fields in order; ContainerInfo's first six or
# None; PodInfo's fields in order, or None, with both maps as dicts that are never changed (every event
# gets its own copy: dict.copy is three times as fast as a dict made of items); whether every text field
# that adapter/validate.py checks is clean (validate.fields_clean); whether Tetragon found the process in
# /proc at its start (``procFS`` among its flags: common.procfs_flag).
ProcessPart = tuple[tuple[Any, ...], tuple[Any, ...] | None, tuple[Any, ...] | None, bool, bool]
# (module, symbol, offset, address): StackFrame's first four fields, a clean frame's (only those are kept)
FramePart = tuple[str, str, int, int]
_ENTRY_PARSE = tetragon_pb2.StackTraceEntry.FromString


def _annotations(raw: Any) -> dict[str, str]:
    if not raw:
        return {}
    out = {}
    for key in KEPT_POD_ANNOTATIONS:
        value = raw.get(key)
        if value is not None:
            out[key] = value
    return out


def read_process(p: Any) -> ProcessPart:
    """A decoded Process message as the adapter reads it (the one place that reads it)."""
    pv = (
        p.exec_id, p.pid.value, p.tid.value, p.uid.value if p.HasField("uid") else None, p.binary,
        validate.cut_early(p.arguments), p.cwd, p.parent_exec_id,
    )  # fmt: skip
    texts: list[object] = [pv[0], pv[4], pv[5], pv[6], pv[7]]
    cv: Any = None
    podv: Any = None
    if p.HasField("pod"):
        pod = p.pod
        c = pod.container
        image_id = c.image.id
        runtime, cid = common.split_container_id(c.id)
        cv = (cid, runtime, c.name, c.image.name, image_id, common.image_digest(image_id))
        labels = dict(pod.pod_labels.items())
        podv = (
            pod.namespace, pod.name, pod.uid, labels, pod.workload, pod.workload_kind,
            _annotations(pod.pod_annotations),
        )  # fmt: skip
        texts += cv
        texts += (podv[0], podv[1], podv[2], podv[4], podv[5])
        for k, v in labels.items():
            texts += (k, v)
    elif p.docker:
        runtime, cid = common.split_container_id(p.docker)
        cv = (cid, runtime, "", "", "", "")
        texts += cv
    return pv, cv, podv, validate.fields_clean(texts), common.procfs_flag(p.flags)


class Parts:
    """The two tables. Their values are a pure function of the bytes, so one pair serves every adapter."""

    __slots__ = ("frames", "processes", "shapes")

    def __init__(self) -> None:
        self.processes: dict[bytes | tuple[bytes, ...], ProcessPart] = {}
        self.frames: dict[bytes, FramePart] = {}  # clean frames only
        # a clean entry's bytes after its leading offset field -> (module, symbol, address): see shaped()
        self.shapes: dict[bytes, tuple[str, str, int]] = {}

    def clear(self) -> None:
        """Forget every table's entries (see Pipeline.shed_caches: they are read again when next seen)."""
        self.processes.clear()
        self.frames.clear()
        self.shapes.clear()

    def new_process(self, key: bytes | tuple[bytes, ...], decoded: Any) -> ProcessPart:
        """Read the decoded Process whose raw occurrence(s) are ``key``, and remember it (a miss)."""
        part = read_process(decoded)
        size = len(key) if isinstance(key, bytes) else sum(len(k) for k in key)
        if size <= MAX_PROCESS_BYTES:
            if len(self.processes) >= MAX_PROCESSES:
                self.processes.clear()
            self.processes[key] = part
        return part

    def new_frame(self, raw: bytes, decoded: Any) -> tuple[FramePart, bool]:
        """Read the decoded stack entry whose raw bytes are ``raw`` (a miss), and whether it is clean;
        a clean one is remembered."""
        part, clean = read_frame(decoded)
        if clean and len(raw) <= MAX_FRAME_BYTES:
            if len(self.frames) >= MAX_FRAMES:
                self.frames.clear()
            self.frames[raw] = part
            self._learn_shape(raw, part)
        return part, clean

    def shaped(self, raw: bytes) -> FramePart | None:
        """The frame of a stack entry not remembered whose shape is (see :meth:`_learn_shape`), and
        remembered as a frame; None: read it as before.

        A stack whose frames never repeat (the same functions at other offsets) differs from a known
        entry only in its leading offset field: its value is read here (a varint of at most 9 bytes)
        and the rest looked up, instead of decoding the entry and reading its four fields.
        """
        # _leading_offset's one- to three-byte cases, inlined (two unknown entries per event on that
        # stream: a call each saved); anything longer or other goes through it.
        if raw[:1] != b"\x10" or len(raw) > MAX_ALONE_FRAME_BYTES or len(raw) < 4:
            value, start = _leading_offset(raw)
            if not start:
                return None
        elif (b := raw[1]) < 0x80:
            value, start = b, 2
        elif (c := raw[2]) < 0x80:
            value, start = b & 0x7F | c << 7, 3
        elif (d := raw[3]) < 0x80:
            value, start = b & 0x7F | (c & 0x7F) << 7 | d << 14, 4
        else:
            value, start = _leading_offset(raw)
            if not start:
                return None
        got = self.shapes.get(raw[start:])
        if got is None:
            return None
        part = (got[0], got[1], value, got[2])
        if len(self.frames) >= MAX_FRAMES:
            self.frames.clear()
        self.frames[raw] = part  # as new_frame would (raw is at most MAX_ALONE_FRAME_BYTES bytes)
        return part

    def _learn_shape(self, raw: bytes, part: FramePart) -> None:
        """Remember the shape of a clean entry ``raw`` (decoded as ``part``): its bytes after a leading
        offset field, when they never set the offset themselves.

        Then an entry of that offset field (any value) followed by those bytes decodes to that value
        and the rest of ``part``: protobuf keeps a scalar field's last value, and here the leading one
        is the last. It is, when the whole entry's offset is the leading value (not 0) and the rest
        decoded alone has offset 0: a later offset field of value 0 would give the whole entry 0, of
        another value would give the rest alone that value. The rest alone decodes (a payload holding
        the entry accepted it; nesting is the same) to the same module, symbol and address, checked.
        """
        value, start = _leading_offset(raw)
        if not value or value != part[2]:
            return
        rest = raw[start:]
        shapes = self.shapes
        if rest in shapes:
            return
        try:
            alone = _ENTRY_PARSE(rest)
        except DecodeError:
            return
        if alone.offset != 0 or (alone.module, alone.symbol, alone.address) != (part[0], part[1], part[3]):
            return
        if len(shapes) >= MAX_SHAPES:
            shapes.clear()
        shapes[rest] = (part[0], part[1], part[3])


def _leading_offset(raw: bytes) -> tuple[int, int]:
    """(value, where the rest starts) of ``raw``'s leading offset field (its tag, field 2 as a varint, is
    the byte 0x10 as Tetragon's encoder writes it, first), a varint of at most 9 bytes
    (below 2**63, no overflow to decide); (0, 0) when ``raw`` does not start with one, or is longer
    than MAX_ALONE_FRAME_BYTES (known_parts decodes the payload whole for such an entry: no shape of
    one is learnt or used)."""
    if len(raw) > MAX_ALONE_FRAME_BYTES or raw[:1] != b"\x10":
        return 0, 0
    try:  # one to three bytes (offsets below 2 MiB) unrolled: a loop costs twice as much here
        b = raw[1]
        if b < 0x80:
            return b, 2
        value = b & 0x7F
        b = raw[2]
        if b < 0x80:
            return value | b << 7, 3
        value |= (b & 0x7F) << 7
        b = raw[3]
        if b < 0x80:
            return value | b << 14, 4
        value |= (b & 0x7F) << 14
        i, shift = 4, 21
        while i < 10:
            b = raw[i]
            value |= (b & 0x7F) << shift
            i += 1
            if b < 0x80:
                return value, i
            shift += 7
    except IndexError:  # truncated: read as before (and refused there)
        pass
    return 0, 0


def read_frame(e: Any) -> tuple[FramePart, bool]:
    """A decoded stack entry's fields, and whether its texts are clean (validate.fields_clean)."""
    module, symbol = e.module, e.symbol
    return (module, symbol, e.offset, e.address), validate.fields_clean((module, symbol))


PARTS = Parts()
