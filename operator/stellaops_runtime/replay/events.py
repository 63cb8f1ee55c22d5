"""Recorded Tetragon events, loaded once and kept as ready-to-send wire bytes.

The replay server must stream thousands of events per second without
re-encoding anything, and must apply GetEvents filters without decoding
anything either. So each line of a Tetragon JSON export is turned, once, into
a ReplayEvent: the serialized GetEventsResponse plus the few attributes the
filters look at (taken from the event's ``process``). Bad lines are counted
and reported with their line numbers, never fatal and never silently lost.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import json_format

from stellaops_runtime.regular_file import open_regular
from stellaops_runtime.wire.tetragon import events_pb2, tetragon_pb2

_EVENT_ONEOF = events_pb2.GetEventsResponse.DESCRIPTOR.oneofs_by_name["event"]
# oneof member name -> field number (== EventType number, by Tetragon's convention).
EVENT_FIELD_NUMBERS: dict[str, int] = {f.name: f.number for f in _EVENT_ONEOF.fields}


@dataclass(slots=True)
class ReplayEvent:
    """One event to replay: its wire bytes and the attributes GetEvents filters read.

    Every attribute but ``payload`` has a neutral default, so tests can build an
    event around arbitrary (even malformed) bytes; the server sends ``payload``
    unchanged.
    """

    payload: bytes
    event_type: int = 0  # EventType number = oneof field number; 0 if no known oneof member
    namespace: str = ""  # "" for host (non-pod) processes
    pod_name: str = ""
    binary: str = ""
    pid: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    container_id: str = ""
    container_name: str = ""
    arguments: str = ""
    policy_name: str = ""  # kprobe/tracepoint/uprobe/lsm/usdt events only
    has_process: bool = False  # False for throttle/rate-limit/test events
    in_pod: bool = False  # the process runs in a Kubernetes pod

    @classmethod
    def from_message(cls, msg: events_pb2.GetEventsResponse) -> ReplayEvent:
        """Build the event from a GetEventsResponse (serialized here, once)."""
        event = cls(payload=msg.SerializeToString())
        kind = msg.WhichOneof("event")
        if kind is None:
            return event
        event.event_type = EVENT_FIELD_NUMBERS[kind]
        inner = getattr(msg, kind)
        fields = inner.DESCRIPTOR.fields_by_name
        if "policy_name" in fields:
            event.policy_name = inner.policy_name
        if "process" in fields and inner.HasField("process"):
            _fill_process(event, inner.process)
        return event


def _fill_process(event: ReplayEvent, proc: tetragon_pb2.Process) -> None:
    event.has_process = True
    event.binary = proc.binary
    event.arguments = proc.arguments
    event.pid = proc.pid.value if proc.HasField("pid") else 0
    if proc.HasField("pod"):
        pod = proc.pod
        event.in_pod = True
        event.namespace = pod.namespace
        event.pod_name = pod.name
        event.labels = dict(pod.pod_labels)
        if pod.HasField("container"):
            event.container_id = pod.container.id
            event.container_name = pod.container.name


@dataclass(slots=True)
class LoadResult:
    """What load_events read: the good events in file order, and why the bad lines were skipped."""

    events: list[ReplayEvent] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (1-based line number, message)
    policy_names: list[str] = field(default_factory=list)  # distinct, in order of first appearance


def _lines(path: Path) -> Iterator[bytes]:
    """The file's lines as bytes: each is decoded on its own, so one line that is not UTF-8 is
    that line's error (decoding the whole file as text made it fail the whole load)."""
    # Opened without blocking and only if a regular file: a FIFO nobody writes to waited for ever.
    with os.fdopen(open_regular(path), "rb") as fh:
        if path.name.endswith(".gz"):
            with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
                yield from gz
        else:
            yield from fh


def load_events(path: str | Path) -> LoadResult:
    """Read a Tetragon JSON export (``.jsonl`` or ``.jsonl.gz``), one GetEventsResponse per line.

    Blank lines are ignored. A line that is not UTF-8, not a JSON object (or
    nested too deep to read) or does not parse strictly as a GetEventsResponse
    (unknown field, wrong type) is skipped and reported in ``errors``.
    OSError/EOFError (unreadable or truncated file) propagate to the caller.
    """
    result = LoadResult()
    seen_policies: set[str] = set()
    for line_no, line in enumerate(_lines(Path(path)), start=1):
        raw = line.strip()
        if not raw:
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
            if not isinstance(obj, dict):
                raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
            msg = json_format.ParseDict(obj, events_pb2.GetEventsResponse())
        except (ValueError, json_format.ParseError) as e:  # UnicodeDecodeError is a ValueError
            result.errors.append((line_no, str(e)))
            continue
        except RecursionError:
            result.errors.append((line_no, "nested too deep to read"))
            continue
        event = ReplayEvent.from_message(msg)
        result.events.append(event)
        if event.policy_name and event.policy_name not in seen_policies:
            seen_policies.add(event.policy_name)
            result.policy_names.append(event.policy_name)
    return result
