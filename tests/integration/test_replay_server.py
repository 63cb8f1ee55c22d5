"""The replay server over real sockets (TCP loopback and a Unix socket), with real gRPC clients."""

from __future__ import annotations

import asyncio
import collections
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stellaops_runtime.replay.events import LoadResult, ReplayEvent, load_events
from stellaops_runtime.replay.server import PolicyStatus, ReplayServer
from stellaops_runtime.wire.tetragon import events_pb2, sensors_pb2, sensors_pb2_grpc, tetragon_pb2

REPO = Path(__file__).resolve().parents[2]
STREAM_A = REPO / "tests" / "fixtures" / "tetragon" / "synthetic" / "stream-a.jsonl.gz"
EVENTS_JSONL = REPO / "tests" / "fixtures" / "tetragon" / "events.jsonl"
STREAM_A_EVENTS = 3144
STREAM_A_UPROBES = 1832


@pytest.fixture(scope="module")
def stream_a() -> LoadResult:
    loaded = load_events(STREAM_A)
    assert loaded.errors == []
    return loaded


@pytest.fixture(scope="module")
def stream_a_json() -> list[dict]:
    with gzip.open(STREAM_A, "rt", encoding="utf-8") as gz:
        return [json.loads(line) for line in gz if line.strip()]


@pytest.fixture
async def server(stream_a: LoadResult) -> AsyncIterator[ReplayServer]:
    srv = ReplayServer(stream_a.events)
    await srv.start("127.0.0.1:0")
    try:
        yield srv
    finally:
        await srv.stop(grace=0)


def _kind(obj: dict) -> str:
    return next(k for k in obj if k.startswith(("process_", "test", "rate_limit_info")))


async def _read(call: grpc.aio.UnaryStreamCall, n: int, *, limit_s: float = 10.0) -> list:
    got: list = []

    async def reader() -> None:
        while len(got) < n:
            got.append(await call.read())

    await asyncio.wait_for(reader(), limit_s)
    return got


async def _assert_no_more(call: grpc.aio.UnaryStreamCall, *, wait: float = 0.2) -> None:
    """The stream stays open (like Tetragon) but nothing else arrives."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(call.read(), wait)


async def _stream_kinds(address: str, request: events_pb2.GetEventsRequest, n: int) -> collections.Counter:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = sensors_pb2_grpc.FineGuidanceSensorsStub(channel)
        call = stub.GetEvents(request)
        got = await _read(call, n)
        await _assert_no_more(call)
        call.cancel()
    return collections.Counter(msg.WhichOneof("event") for msg in got)


async def test_whole_stream_over_tcp(server: ReplayServer, stream_a_json: list[dict]) -> None:
    kinds = await _stream_kinds(server.address, events_pb2.GetEventsRequest(), STREAM_A_EVENTS)
    assert kinds == collections.Counter(_kind(o) for o in stream_a_json)
    assert kinds["process_uprobe"] == STREAM_A_UPROBES
    assert server.served == STREAM_A_EVENTS
    assert server.streams_opened == 1


async def test_whole_stream_over_unix_socket(
    tmp_path: Path, stream_a: LoadResult, stream_a_json: list[dict]
) -> None:
    path = tmp_path / "tetragon.sock"
    # A stale socket file from a killed run must not prevent binding.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    assert path.exists()
    srv = ReplayServer(stream_a.events)
    address = await srv.start(f"unix://{path}")
    try:
        assert address == f"unix://{path}"
        kinds = await _stream_kinds(address, events_pb2.GetEventsRequest(), STREAM_A_EVENTS)
        assert kinds == collections.Counter(_kind(o) for o in stream_a_json)
        assert srv.served == STREAM_A_EVENTS
    finally:
        await srv.stop(grace=0)
    assert not path.exists()


async def test_namespace_allow_filter(server: ReplayServer, stream_a_json: list[dict]) -> None:
    namespaces = collections.Counter(
        o[_kind(o)].get("process", {}).get("pod", {}).get("namespace", "") for o in stream_a_json
    )
    namespace, expected = next((ns, n) for ns, n in namespaces.most_common() if ns)
    assert expected < STREAM_A_EVENTS
    request = events_pb2.GetEventsRequest(allow_list=[events_pb2.Filter(namespace=[namespace])])
    kinds = await _stream_kinds(server.address, request, expected)
    assert sum(kinds.values()) == expected
    assert server.served == expected


async def test_deny_uprobes(server: ReplayServer) -> None:
    request = events_pb2.GetEventsRequest(
        deny_list=[events_pb2.Filter(event_set=[events_pb2.PROCESS_UPROBE])]
    )
    kinds = await _stream_kinds(server.address, request, STREAM_A_EVENTS - STREAM_A_UPROBES)
    assert "process_uprobe" not in kinds
    assert server.served == STREAM_A_EVENTS - STREAM_A_UPROBES


async def test_unsupported_filter_is_invalid_argument(server: ReplayServer) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = sensors_pb2_grpc.FineGuidanceSensorsStub(channel)
        request = events_pb2.GetEventsRequest(allow_list=[events_pb2.Filter(cel_expression=["true"])])
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetEvents(request).read()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "cel_expression" in (info.value.details() or "")
        bad_regex = events_pb2.GetEventsRequest(allow_list=[events_pb2.Filter(binary_regex=["("])])
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetEvents(bad_regex).read()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert server.served == 0


async def test_rate_limit(stream_a: LoadResult) -> None:
    """The server's clock starts when the stream opens, after the client asks for it, and sends its
    event k no earlier than k intervals less its 1 ms slack from there (replay/server.py). The
    client's clock started at its first event read: on a loaded machine that read came late, the
    events paced behind it were already sent, and the 199 took 0.176 s (bound 0.18). Held here 50 ms,
    as that machine held it; the clock now starts before the stream is asked for."""
    srv = ReplayServer(stream_a.events[:200], rate=1000.0)
    address = await srv.start("127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            started = time.monotonic()
            call = sensors_pb2_grpc.FineGuidanceSensorsStub(channel).GetEvents(events_pb2.GetEventsRequest())
            await asyncio.sleep(0.05)  # a client slow to read its first event
            # a bound against a hang, not a timing: 10 s ran out in a clean-clone run at 3x CI's time
            await _read(call, 200, limit_s=60.0)
            elapsed = time.monotonic() - started
            call.cancel()
    finally:
        await srv.stop(grace=0)
    assert elapsed >= 0.198 - 1e-6, elapsed  # the last of 200: 199 intervals of 1 ms less the slack


async def test_loop_serves_more_than_the_file(stream_a: LoadResult) -> None:
    events = stream_a.events[:50]
    srv = ReplayServer(events, loop=True)
    address = await srv.start("127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            call = sensors_pb2_grpc.FineGuidanceSensorsStub(channel).GetEvents(events_pb2.GetEventsRequest())
            got = await _read(call, 120)
            call.cancel()
    finally:
        await srv.stop(grace=0)
    first = [events_pb2.GetEventsResponse.FromString(e.payload) for e in events]
    assert got[:50] == first
    assert got[50:100] == first  # restarted from the first event
    assert srv.served >= 120


async def test_unary_rpcs_and_grpc_health(server: ReplayServer) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = sensors_pb2_grpc.FineGuidanceSensorsStub(channel)
        version = await stub.GetVersion(sensors_pb2.GetVersionRequest())
        assert version.version == "v1.7.0-stellaops-replay"
        health_status = await stub.GetHealth(tetragon_pb2.GetHealthStatusRequest())
        assert [(h.event, h.status, h.details) for h in health_status.health_status] == [
            (tetragon_pb2.HEALTH_STATUS_TYPE_STATUS, tetragon_pb2.HEALTH_STATUS_RUNNING, "replay")
        ]
        policies = await stub.ListTracingPolicies(sensors_pb2.ListTracingPoliciesRequest())
        assert sorted(p.name for p in policies.policies) == ["stellaops-functions", "stellaops-syscalls"]
        assert all(p.state == sensors_pb2.TP_STATE_ENABLED for p in policies.policies)
        health_stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "liveness"):
            answer = await health_stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_configured_policies() -> None:
    srv = ReplayServer(
        [],
        version="v9.9.9",
        policies=[PolicyStatus(name="a"), PolicyStatus(name="b", state="LOAD_ERROR", message="no BTF")],
    )
    address = await srv.start("127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = sensors_pb2_grpc.FineGuidanceSensorsStub(channel)
            answer = await stub.ListTracingPolicies(sensors_pb2.ListTracingPoliciesRequest())
            assert [(p.name, p.state, p.error) for p in answer.policies] == [
                ("a", sensors_pb2.TP_STATE_ENABLED, ""),
                ("b", sensors_pb2.TP_STATE_LOAD_ERROR, "no BTF"),
            ]
            assert (await stub.GetVersion(sensors_pb2.GetVersionRequest())).version == "v9.9.9"
    finally:
        await srv.stop(grace=0)


async def test_payloads_are_sent_unchanged() -> None:
    garbage = b"\xff\xff\xff not a protobuf"
    good = events_pb2.GetEventsResponse(node_name="n").SerializeToString()
    srv = ReplayServer([ReplayEvent(payload=garbage), ReplayEvent(payload=good)])
    address = await srv.start("127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            raw = channel.unary_stream(
                "/tetragon.FineGuidanceSensors/GetEvents",
                request_serializer=events_pb2.GetEventsRequest.SerializeToString,
                response_deserializer=None,  # bytes as they came off the wire
            )
            call = raw(events_pb2.GetEventsRequest())
            assert await _read(call, 2) == [garbage, good]
            call.cancel()
        await srv.wait_served(2, 20.0)  # a bound, not a timing: 2 s ran out once under CI load
    finally:
        await srv.stop(grace=0)


async def test_stop_mid_stream_then_restart_on_same_address(stream_a: LoadResult) -> None:
    srv = ReplayServer(stream_a.events, rate=200.0)
    address = await srv.start("127.0.0.1:0")
    async with grpc.aio.insecure_channel(address) as channel:
        call = sensors_pb2_grpc.FineGuidanceSensorsStub(channel).GetEvents(events_pb2.GetEventsRequest())
        got = await _read(call, 5)
        await srv.wait_streams(1, 2.0)
        await srv.stop(grace=0.2)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            while True:
                got.append(await asyncio.wait_for(call.read(), 5.0))
        assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        assert len(got) == srv.served  # served counts only completed writes
    again = ReplayServer(stream_a.events)
    assert await again.start(address) == address
    try:
        kinds = await _stream_kinds(address, events_pb2.GetEventsRequest(), STREAM_A_EVENTS)
        assert sum(kinds.values()) == STREAM_A_EVENTS
    finally:
        await again.stop(grace=0)


async def test_busy_address_is_an_error(server: ReplayServer, stream_a: LoadResult) -> None:
    other = ReplayServer(stream_a.events)
    with pytest.raises(RuntimeError, match="bind"):
        await other.start(server.address)


def test_load_reports_bad_lines(tmp_path: Path) -> None:
    good = EVENTS_JSONL.read_text(encoding="utf-8").splitlines()[:2]
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        "\n".join([good[0], "{not json", '{"no_such_field": 1}', "", "[1]", good[1]]) + "\n",
        encoding="utf-8",
    )
    loaded = load_events(path)
    assert len(loaded.events) == 2
    assert [line for line, _ in loaded.errors] == [2, 3, 5]
    assert "no_such_field" in loaded.errors[1][1]


# --- the CLI, as a subprocess ---------------------------------------------------

CLI = [sys.executable, "-c", "import sys; from stellaops_runtime.cli.main import main; sys.exit(main())"]


def _start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "tetragon-replay", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    proc = _start_cli(str(STREAM_A), "--listen", "127.0.0.1:0", "--policy", "p1=ERROR:boom")
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert line.startswith("listening on 127.0.0.1:"), line
        address = line.split()[-1]
        async with grpc.aio.insecure_channel(address) as channel:
            stub = sensors_pb2_grpc.FineGuidanceSensorsStub(channel)
            policies = await stub.ListTracingPolicies(sensors_pb2.ListTracingPoliciesRequest())
            assert [(p.name, p.state, p.error) for p in policies.policies] == [
                ("p1", sensors_pb2.TP_STATE_ERROR, "boom")
            ]
            call = stub.GetEvents(events_pb2.GetEventsRequest())
            assert len(await _read(call, 100)) == 100
            call.cancel()
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(proc.communicate, timeout=15)
        assert proc.returncode == 0, err
        assert out == ""  # exactly one stdout line, already read
        assert "served" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_exit_codes(tmp_path: Path) -> None:
    missing = subprocess.run(
        [*CLI, "tetragon-replay", str(tmp_path / "missing.jsonl"), "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr

    empty = tmp_path / "bad.jsonl"
    empty.write_text("".join(f"{{bad {i}\n" for i in range(12)), encoding="utf-8")
    bad = subprocess.run(
        [*CLI, "tetragon-replay", str(empty), "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2
    assert bad.stderr.count("skipped:") == 10
    assert "12 lines skipped" in bad.stderr
    assert "no valid events" in bad.stderr

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = subprocess.run(
            [*CLI, "tetragon-replay", str(EVENTS_JSONL), "--listen", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert taken.returncode == 2, taken.stderr
    assert taken.stdout == ""

    usage = subprocess.run(
        [*CLI, "tetragon-replay", str(EVENTS_JSONL), "--rate", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert usage.returncode == 2
