"""Bad input reaches the real agent: counted, skipped or truncated; the agent keeps running."""

from __future__ import annotations

import asyncio
import gzip
import json

import pytest
import sqlalchemy as sa

from stellaops_runtime.replay.events import ReplayEvent
from stellaops_runtime.replay.server import ReplayServer
from stellaops_runtime.wire.tetragon import events_pb2
from tests.e2e import harness as h

pytestmark = pytest.mark.e2e

MIB = 1 << 20
GOOD = h.stream_events()[:200]


def _host_exec(binary: str) -> events_pb2.GetEventsResponse:
    m = events_pb2.GetEventsResponse(node_name="host-node")
    m.process_exec.process.binary = binary
    m.process_exec.process.pid.value = 4242
    m.time.FromSeconds(1_795_510_800)
    return m


def _huge_uprobe() -> events_pb2.GetEventsResponse:
    m = events_pb2.GetEventsResponse(node_name="host-node")
    u = m.process_uprobe
    u.process.binary = "/usr/bin/app"
    u.process.arguments = "--password=hunter2 " + "A" * MIB
    u.path = "/usr/lib/x86_64-linux-gnu/libz.so.1"
    u.symbol = "crc32"
    arg = u.args.add()
    arg.string_arg = "x" * MIB
    m.time.FromSeconds(1_795_510_801)
    return m


# node_name (field 1000, length-delimited) holding invalid UTF-8: upb rejects it.
INVALID_UTF8 = bytes([0xC2, 0x3E, 0x02, 0xFF, 0xFE])
UNKNOWN_KIND = bytes([0xD2, 0x01, 0x00])  # field 26: a removed event kind
GARBAGE = b"\xff\xff\xff\xff"


def _sqlite_rows(db) -> dict[tuple[str, str, str, str], tuple[int, str]]:
    eng = sa.create_engine(f"sqlite:///{db}")
    with eng.connect() as c:
        res = c.execute(
            sa.text(
                "SELECT image_digest, module, function_name, evidence_kind, invocation_count, sample "
                "FROM hot_symbols"
            )
        )
        out = {(d, m, f, e): (n, s if isinstance(s, str) else json.dumps(s)) for d, m, f, e, n, s in res}
    eng.dispose()
    return out


async def test_grpc_bad_input_is_counted_and_the_agent_keeps_running(tmp_path, sqlite_at_head) -> None:
    bad = [
        ReplayEvent(payload=GARBAGE),
        ReplayEvent(payload=UNKNOWN_KIND),
        ReplayEvent(payload=INVALID_UTF8),
        ReplayEvent.from_message(_host_exec("/usr/sbin/sshd")),
        ReplayEvent.from_message(_huge_uprobe()),
    ]
    events = GOOD[:100] + bad + GOOD[100:]
    server = ReplayServer(events)
    addr = await server.start("127.0.0.1:0")
    db = tmp_path / "hs.db"
    cfg, port = h.write_config(tmp_path, tetragon={"address": addr}, store={"url": sqlite_at_head(db)})
    proc = h.start_agent(cfg, "--exit-when-idle", "2")
    try:
        m = await h.wait_processed(port, len(events))
        code, out = await asyncio.to_thread(h.finish, proc, 60)
    finally:
        await server.stop()
    assert code == 0, out
    assert h.metric(m, "stellaops_runtime_events_malformed_total", reason="invalid_protobuf") == 2
    assert h.metric(m, "stellaops_runtime_events_unhandled_total", kind="none") == 1
    assert h.metric(m, "stellaops_runtime_arguments_truncated_total") == 2
    assert h.metric_sum(m, "stellaops_runtime_events_total") == len(GOOD) + 2
    rows = _sqlite_rows(db)
    assert ("host:host-node", "/usr/sbin/sshd", "", "executed") in rows
    n, sample = rows[("host:host-node", "/usr/lib/x86_64-linux-gnu/libz.so.1", "crc32", "invoked")]
    assert n == 1
    assert "hunter2" not in sample and "[REDACTED]" in sample
    assert len(sample) < 64 * 1024  # the 1 MiB arguments were truncated before storing


async def test_export_file_bad_input(tmp_path, sqlite_at_head) -> None:
    with gzip.open(h.STREAM) as f:
        good = [ln for ln in f.read().splitlines() if ln.strip()][:150]
    huge = {
        "process_exec": {
            "process": {"binary": "/bin/big", "pid": 9, "arguments": "--token=abc123def " + "B" * MIB}
        },
        "node_name": "host-node",
        "time": "2026-11-24T09:00:00Z",
    }
    bad = [
        b"{not json",
        b"[1, 2, 3]",
        b'{"process_throttle":{"type":"THROTTLE_START","cgroup":"x"},"node_name":"n"}',
        b'{"process_exec":{"process":{"binary":"/bin/\xff\xfesh","pid":3}},"node_name":"host-node"}',
        b'{"process_exec":{}}',
        json.dumps(huge).encode(),
        b'{"rate_limit_info":{"number_of_dropped_process_events":"12"},"node_name":"n"}',
    ]
    path = tmp_path / "tetragon.log"
    path.write_bytes(b"\n".join(good[:75] + bad + good[75:]) + b"\n")
    db = tmp_path / "hs.db"
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"exportFile": str(path), "exportFromStart": True},
        store={
            "url": sqlite_at_head(db)
        },  # at head (tests/conftest.py): the input is tested, not the migrations
    )
    proc = h.start_agent(cfg, "--exit-when-idle", "2")
    total = len(good) + len(bad)
    m = await h.wait_processed(port, total, source="tetragon-export", what="all lines processed")
    code, out = await asyncio.to_thread(h.finish, proc, 60)
    assert code == 0, out
    assert h.metric(m, "stellaops_runtime_events_malformed_total", reason="invalid_json") == 1
    assert h.metric(m, "stellaops_runtime_events_malformed_total", reason="not_an_object") == 1
    assert h.metric(m, "stellaops_runtime_events_malformed_total", reason="no_process") == 1
    # A throttle is no longer "unhandled": it is counted per node and pod and becomes a gap.
    assert h.metric(m, "stellaops_runtime_events_unhandled_total", kind="process_throttle") == 0
    assert (
        h.metric(
            m,
            "stellaops_runtime_tetragon_throttle_events_total",
            node="n",
            namespace="",
            pod="",
            type="start",
        )
        == 1
    )
    assert h.metric(m, "stellaops_runtime_events_dropped_total", reason="tetragon_export_ratelimit") == 12
    assert h.metric(m, "stellaops_runtime_arguments_truncated_total") == 1
    assert h.metric_sum(m, "stellaops_runtime_events_total") == len(good) + 2
    rows = _sqlite_rows(db)
    assert ("host:host-node", "/bin/\ufffd\ufffdsh", "", "executed") in rows
    _, sample = rows[("host:host-node", "/bin/big", "", "executed")]
    assert "abc123def" not in sample and len(sample) < 64 * 1024
