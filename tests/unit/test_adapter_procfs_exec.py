"""A ``process_exec`` Tetragon made from /proc at its start is no execution: counted, never stored.

When Tetragon starts (a node reboot, a Tetragon restart or upgrade) it walks /proc
and sends a ``process_exec`` for every process already running, flagged ``procFS``
and stamped with the process's start time (Tetragon's
pkg/sensors/exec/procevents: ``pushExecveEvents``). Those executions happened
before: an agent that watched them has counted them once already, so counting
these again doubled every long-running binary's execution count at each Tetragon
restart, and noted a watched window at the process's old start time. Both
adapters now count such an event ``events_unhandled_total{kind="process_exec_procfs"}``
and hand nothing on; an exec with other flags is adapted as before.
"""

from __future__ import annotations

import orjson
import pytest
from google.protobuf import json_format

from stellaops_runtime.adapter import common, from_json, from_proto, proto_parts
from stellaops_runtime.contracts.events import EventKind
from stellaops_runtime.wire.tetragon import events_pb2


def _exec_line(flags: str, pid: int = 4242) -> bytes:
    obj = {
        "process_exec": {
            "process": {
                "exec_id": f"bm9kZTo5OTk6{pid}",
                "pid": pid,
                "uid": 0,
                "cwd": "/",
                "binary": "/usr/bin/long-running",
                "arguments": "--serve",
                "flags": flags,
                "start_time": "2026-12-01T10:00:00Z",
                "pod": {
                    "namespace": "default",
                    "name": "web-0",
                    "container": {
                        "id": "containerd://" + "ab" * 32,
                        "name": "web",
                        "image": {"id": "docker.io/library/web@sha256:" + "cd" * 32, "name": "web:1"},
                    },
                },
            }
        },
        "node_name": "node-1",
        "time": "2026-12-01T10:00:00Z",
    }
    return orjson.dumps(obj)


def _payload(line: bytes) -> bytes:
    return json_format.Parse(line, events_pb2.GetEventsResponse()).SerializeToString()


@pytest.mark.parametrize("flags", ["procFS", "procFS auid rootcwd", "auid procFS"])
def test_a_procfs_exec_is_counted_not_adapted_by_both_adapters(flags: str) -> None:
    proto_parts.PARTS.clear()
    line = _exec_line(flags)
    ps, js = common.AdapterStats(), common.AdapterStats()
    payload = _payload(line)
    # Twice over the gRPC path: first decoded whole, then from the second view's known process part.
    assert from_proto.adapt_payload(payload, 1, ps) is None
    assert from_proto.adapt_payload(payload, 2, ps) is None
    assert from_proto.adapt(from_proto.decode(payload, ps), stats=ps) is None
    assert from_json.adapt(from_json.decode_line(line), stats=js) is None
    assert ps.unhandled == {"process_exec_procfs": 3}
    assert js.unhandled == {"process_exec_procfs": 1}
    assert not ps.events and not js.events and not ps.malformed and not js.malformed


@pytest.mark.parametrize("flags", ["execve rootcwd clone", "execve", "", "procfs", "xprocFS", "procFSx"])
def test_an_exec_seen_live_is_adapted_as_before(flags: str) -> None:
    proto_parts.PARTS.clear()
    line = _exec_line(flags, pid=77)
    ps, js = common.AdapterStats(), common.AdapterStats()
    payload = _payload(line)
    first = from_proto.adapt_payload(payload, 1, ps)
    again = from_proto.adapt_payload(payload, 1, ps)
    via_json = from_json.adapt(from_json.decode_line(line), received_ns=1, stats=js)
    assert first is not None and again is not None and via_json is not None
    assert first.kind is EventKind.EXEC and first.module == "/usr/bin/long-running"
    via_json.source = first.source
    assert first == via_json
    assert not ps.unhandled and not js.unhandled


def test_a_procfs_process_on_other_kinds_is_kept() -> None:
    """Only the exec is a replay: a kprobe of a process Tetragon found in /proc is a call seen live."""
    proto_parts.PARTS.clear()
    obj = orjson.loads(_exec_line("procFS auid"))
    body = obj.pop("process_exec")
    obj["process_kprobe"] = {**body, "function_name": "__x64_sys_openat"}
    line = orjson.dumps(obj)
    ps, js = common.AdapterStats(), common.AdapterStats()
    payload = _payload(line)
    assert from_proto.adapt_payload(payload, 1, ps) is not None
    assert from_proto.adapt_payload(payload, 1, ps) is not None
    assert from_json.adapt(from_json.decode_line(line), stats=js) is not None
    assert not ps.unhandled and not js.unhandled


@pytest.mark.parametrize("flags", [["procFS"], 1, {"procFS": True}])
def test_a_wrong_typed_flags_field_of_an_exec_is_counted_bad_type(flags: object) -> None:
    """The export adapter now reads an exec's flags: a wrong type rejects the event, counted (as any
    field it reads); Tetragon's schema refuses such a message on the gRPC path."""
    obj = orjson.loads(_exec_line("procFS"))
    obj["process_exec"]["process"]["flags"] = flags
    st = common.AdapterStats()
    assert from_json.adapt(obj, stats=st) is None
    assert st.malformed == {"bad_type": 1} and not st.events and not st.unhandled
