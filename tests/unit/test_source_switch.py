"""The source switch (agent/source_switch.py): which parser gets which payload, its states, its gaps.

Real parts throughout: the real receive queue stamps the payloads, the real
pipeline counts them, the Tetragon source dials a closed port or the real
replay server. The tests that attach BCC probes are marked ``bpf`` and skip
with detect.py's reason where the kernel cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.agent.optional_parts import make_source
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.agent.source_switch import BCC, TETRAGON, SourceSwitch
from stellaops_runtime.contracts.config import AgentConfig, ConfigError, parse_config
from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.contracts.hotsymbols import NODE_WIDE
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.lifecycle.lookup import ContainerLookup
from stellaops_runtime.lifecycle.registry import POD_NAME_LABEL, POD_NAMESPACE_LABEL, ContainerRecord
from stellaops_runtime.native import records
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.detect import detect
from stellaops_runtime.native.events import encode_trailer
from stellaops_runtime.replay.server import ReplayServer
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_export import TetragonExportSource
from stellaops_runtime.sources.tetragon_grpc import TetragonGrpcSource
from tests.e2e import harness as h

EVENTS = h.stream_events()
NODE = "switch-node"
TARGET = UprobeTarget("/usr/lib/libfoo.so.1", "foo_parse")


def config(**native: Any) -> AgentConfig:
    return parse_config(
        {
            "tetragon": {"address": f"127.0.0.1:{h.free_port()}", "connectionTimeout": 0.3,
                         "reconnectInitialSeconds": 0.05, "reconnectMaxSeconds": 0.2},
            "symbols": {"enabled": False},
            "attribution": {"enabled": False},
            "native": native,
        }
    )  # fmt: skip


def pipeline(cfg: AgentConfig) -> Pipeline:
    return Pipeline(cfg, node_name=NODE)


def native_record(kind: int, *body: object, pid: int = 4242) -> bytes:
    head = (kind, 0, 0, pid, pid, 0, 5_000_000, 0, b"worker")
    return records.STRUCTS[kind].pack(*head, *body) + encode_trailer("/usr/bin/app", 0, [])


async def in_thread(fn: Any, *args: Any) -> Any:
    return fn(*args)


def switch_for(cfg: AgentConfig, q: EventQueue, p: Pipeline) -> SourceSwitch:
    return SourceSwitch(cfg, queue=q, pipeline=p, in_pipeline=in_thread)


# -- one queue, split by arrival time ---------------------------------------------------


@pytest.mark.parametrize("batch", [1, 7, 10_000])
def test_each_payload_goes_to_the_parser_of_the_source_that_queued_it(batch: int) -> None:
    cfg = config()
    q, p = EventQueue(100_000), pipeline(cfg)
    sw = switch_for(cfg, q, p)
    native = NativeConfig(uprobes=(TARGET,))
    for e in EVENTS[:40]:
        q.put(e.payload)
    sw._boundary(BCC, native)
    for i in range(10):
        q.put(native_record(records.KIND_EXEC, 1, 0, f"/opt/switch/bin{i}".encode()))
    for _ in range(5):
        q.put(native_record(records.KIND_UPROBE, 0, -1, 1_000))
    q.put(EVENTS[0].payload)  # a Tetragon payload inside the BCC segment: malformed, never misparsed
    q.put(b"\x01\x00")  # a truncated record
    sw._boundary(TETRAGON)
    for e in EVENTS[40:80]:
        q.put(e.payload)
    while len(q):
        sw.process(q.take(batch))

    ref = pipeline(cfg)
    ref.process_proto([(e.payload, 0) for e in EVENTS[:80]])
    expected = Counter(ref.adapter_stats.events)
    expected["exec"] += 10
    expected["uprobe"] += 5
    assert Counter(p.adapter_stats.events) == expected
    assert sum(p.adapter_stats.malformed.values()) == 2 and all(
        r.startswith("native_") for r in p.adapter_stats.malformed
    ), p.adapter_stats.malformed
    assert len(sw._segments) == 1 and sw._segments[0].kind == TETRAGON  # the ones behind are let go

    deltas, windows = p.drain()
    host = f"host:{NODE}"
    assert {w.source for w in windows if w.image_digest == host} == {"bcc"}
    assert {w.source for w in windows if w.image_digest != host} == {"tetragon"}
    uprobes = [d for d in deltas if d.key.function_name == "foo_parse"]
    assert [(d.key.module, d.invocation_count) for d in uprobes] == [("/usr/lib/libfoo.so.1", 5)]


def test_a_window_both_sources_observed_names_both() -> None:
    p = pipeline(config())
    for source, t in (("tetragon-grpc", 1), ("bcc", 2), ("bcc", 3), ("", 4)):
        p.aggregator.observe(
            RuntimeCallEvent(EventKind.EXEC, 60_000_000_000 + t, NODE, ProcessInfo(pid=t, binary="/bin/a"),
                             source=source)
        )  # fmt: skip
    (w,) = p.drain()[1]
    assert (w.source, w.event_count) == ("bcc,tetragon", 4)  # an event naming no source: the default


def test_a_record_queued_before_the_switch_is_never_parsed_as_the_other_format() -> None:
    cfg = config()
    q, p = EventQueue(1000), pipeline(cfg)
    sw = switch_for(cfg, q, p)
    q.put(native_record(records.KIND_EXEC, 1, 0, b"/bin/a"))  # stamped inside the Tetragon segment
    sw._boundary(BCC, NativeConfig())
    q.put(EVENTS[0].payload)  # and a Tetragon message inside the BCC one
    sw.process(q.take(10))
    assert p.aggregator.rows == 0 and sum(p.adapter_stats.malformed.values()) == 2
    assert p.processed == 0 and p.internal_errors == 0


# -- the state machine ------------------------------------------------------------------


async def run_for(sw: SourceSwitch, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(sw.run(stop))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), seconds)
    stop.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_tetragon_unreachable_for_less_than_the_fallback_delay_is_no_switch() -> None:
    cfg = config(fallbackAfterSeconds=30)
    q, p = EventQueue(1000), pipeline(cfg)
    sw = switch_for(cfg, q, p)
    await run_for(sw, 1.0)
    assert sw.mode == TETRAGON and sw.bcc is None and not sw.stats.switches
    assert sw.stats.connected is False and "no connection" in sw.stats.last_error
    assert sw.stats.connects == 0 and sw.name == "tetragon-grpc"
    assert not [w for w in p.drain()[1] if w.has_gap]  # not a switch: no gap marked here


async def test_a_tetragon_reconnect_inside_the_delay_stays_on_tetragon() -> None:
    server = ReplayServer(EVENTS[:20])
    addr = await server.start("127.0.0.1:0")
    cfg = parse_config(
        {"tetragon": {"address": addr, "reconnectInitialSeconds": 0.05, "reconnectMaxSeconds": 0.1},
         "symbols": {"enabled": False}, "native": {"fallbackAfterSeconds": 30}}
    )  # fmt: skip
    q, p = EventQueue(1000), pipeline(cfg)
    sw = switch_for(cfg, q, p)
    stop = asyncio.Event()
    task = asyncio.create_task(sw.run(stop))
    try:
        await h.wait_for(lambda: sw.stats.received == 20, timeout=20, what="first stream")
        await server.stop()
        await h.wait_for(lambda: not sw.stats.connected, timeout=10, what="stream broken")
        server = ReplayServer(EVENTS[20:30])
        await server.start(addr)
        await h.wait_for(lambda: sw.stats.received == 30, timeout=20, what="second stream")
    finally:
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop()
    assert sw.mode == TETRAGON and not sw.stats.switches and sw.stats.reconnects == 1
    assert sw._gap_from is None and sw.bcc is None
    sw.process(q.take(100))
    ref = pipeline(cfg)
    ref.process_proto([(e.payload, 0) for e in EVENTS[:30]])
    assert p.adapter_stats.events == ref.adapter_stats.events and p.processed == ref.processed


@pytest.mark.bpf
async def test_fallback_and_return_mark_the_unobserved_time_as_gaps(tmp_path: Path) -> None:
    cache = str(Path(".cache/native").resolve())  # noqa: ASYNC240
    rep = await asyncio.to_thread(detect, mount_tracefs=True, compile_test=True, cache_dir=cache)
    if rep.posture < Posture.PASSIVE:
        pytest.skip(f"native probes cannot run here: {rep.missing}")
    cfg = config(fallbackAfterSeconds=0.2, tetragonCheckSeconds=0.2)
    q, p = EventQueue(1_000_000, max_bytes=512 << 20), pipeline(cfg)
    sw = switch_for(cfg, q, p)
    started = sw._tetragon_seen_ns
    stop = asyncio.Event()
    task = asyncio.create_task(sw.run(stop))
    server = None
    try:
        await h.wait_for(lambda: sw.mode == BCC and sw.stats.connected and sw._gap_from is None,
                         timeout=60, what="BCC attached")  # fmt: skip
        assert sw.bcc is not None
        attached = sw.bcc.stats.attached_ns
        gaps = [w for w in p.drain()[1] if w.has_gap]
        # Never reached: no source from the start until the probes were attached.
        assert {w.image_digest for w in gaps} == {NODE_WIDE} and {w.source for w in gaps} == {"none"}
        assert min(w.gap_start_ns for w in gaps) == started
        assert max(w.gap_end_ns for w in gaps) == attached
        assert sw.stats.last_error == "" or sw.stats.connected
        prog = tmp_path / "stella-switch-unit"
        shutil.copy("/bin/true", prog)
        for _ in range(7):
            await asyncio.to_thread(subprocess.run, [str(prog)], check=True)
        server = ReplayServer(EVENTS[:15])
        up = time.time_ns()
        await server.start(sw.config.tetragon.address)
        await h.wait_for(lambda: sw.mode == TETRAGON and sw.stats.received >= 15 and sw._gap_from is None,
                         timeout=60, what="back on Tetragon")  # fmt: skip
        back = time.time_ns()
        processed = []
        while len(q):  # before the next switch: this test looks at this part's rows alone
            processed.append(q.take(512))
            sw.process(processed[-1])
        deltas, windows = p.drain()
        await server.stop()  # and Tetragon goes again: the probes come back
        await h.wait_for(lambda: sw.mode == BCC and sw.stats.connected, timeout=60, what="BCC again")
    finally:
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if server is not None:
            await server.stop()
    assert dict(sw.stats.switches) == {"tetragon_to_bcc": 2, "bcc_to_tetragon": 1}
    assert sw.bcc.stats.connects == 2 and sw.bcc.stats.detached_ns and not sw.bcc.stats.connected
    gaps = [w for w in windows if w.has_gap]
    assert {w.source for w in gaps} == {"none"}
    # From the moment the probes were asked to stop (Tetragon answered) to the stream's connection.
    first, last = min(w.gap_start_ns for w in gaps), max(w.gap_end_ns for w in gaps)
    assert up <= first < last <= back, (up, first, last, back)
    execs = sum(d.invocation_count for d in deltas if d.key.module == str(prog))
    assert execs == 7  # what BCC queued before it stopped was read and processed, once
    assert p.adapter_stats.events["exec"] >= 7 and not p.adapter_stats.malformed


# -- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("native", "says"),
    [
        ({"syscalls": ["nope"]}, "native: syscalls: unknown on x86_64: nope"),
        ({"bogus": 1}, "switching keys: enabled, fallbackAfterSeconds"),
        ({"fallbackAfterSeconds": -1}, "native.fallbackAfterSeconds"),
        ({"tetragonCheckSeconds": "soon"}, "native.tetragonCheckSeconds"),
        ({"enabled": "maybe"}, "native.enabled"),
        ({"uprobes": [{"binary": "/x\x00y", "symbol": "f"}]}, "native: uprobes"),
        ({"uprobes": {"binary": "/x"}}, "native: uprobes: expected a list"),
        ({"probes": {}}, "native: probes: unknown key"),
        ([1, 2], "native: expected a mapping, got list"),
    ],
)
def test_a_bad_native_section_names_the_field(native: Any, says: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"native": native})
    assert says in str(e.value)


def test_the_native_section_splits_switch_settings_from_probe_settings() -> None:
    n = parse_config({"native": {"enabled": False, "fallbackAfterSeconds": "1m", "syscalls": ["openat"],
                                 "ratePerSecond": 100}}).native  # fmt: skip
    assert (n.enabled, n.fallback_after_seconds, n.probe_config_file) == (False, 60.0, "")
    assert n.probes == NativeConfig(syscalls=("openat",), rate_per_second=100)
    assert parse_config({}).native.enabled is True
    # A dump reads back as the same config, in the form it is written in (probe settings flat).
    usdt = [{"binary": "/p", "provider": "python", "name": "function__entry"}]
    c = parse_config({"native": {"usdt": usdt, "uprobes": [{"binary": "/a", "symbol": "f"}],
                                 "tetragonCheckSeconds": 2}})  # fmt: skip
    dumped = c.model_dump(by_alias=True, mode="json")["native"]
    assert dumped["uprobes"] == [{"binary": "/a", "symbol": "f"}] and "probes" not in dumped
    dumped = c.model_dump(by_alias=True, mode="json")
    assert parse_config(dumped) == c and parse_config(c.model_dump()) == c


def test_the_probe_configmap_adds_the_policies_and_a_bad_one_is_counted(tmp_path: Path) -> None:
    good = tmp_path / "probes.json"
    good.write_text(json.dumps({
        "apiVersion": "stellaops.io/v1alpha1", "kind": "ProbeConfig",
        "policies": {"ObservationPolicy/shop/web": {"syscalls": [{"name": "connect"}]}},
    }))  # fmt: skip
    cfg = config(syscalls=["openat"], probeConfigFile=str(good))
    sw = switch_for(cfg, EventQueue(100), pipeline(cfg))
    assert sw._probe_config().syscalls == ("openat", "connect")
    for bad in (b"{not json", b"\x00" * 10, json.dumps({"kind": "ProbeConfig"}).encode()):
        good.write_bytes(bad)
        assert sw._probe_config() == cfg.native.probes  # the agent's own settings, never a crash
    assert sw.stats.probe_config_errors == 3
    missing = config(probeConfigFile=str(tmp_path / "absent.json"))
    sw = switch_for(missing, EventQueue(100), pipeline(missing))
    assert sw._probe_config() == missing.native.probes and sw.stats.probe_config_errors == 0


def test_bcc_events_get_their_container_from_the_lifecycle_registry() -> None:
    cfg = config()
    q, p = EventQueue(1000), pipeline(cfg)
    digest = "sha256:" + "ab" * 32
    p.container_lookup = ContainerLookup([
        ContainerRecord(container_id="c" * 64, namespace="k8s.io", image_digest=digest, status="running",
                        pid=99, cgroup_id=4711,
                        labels={POD_NAMESPACE_LABEL: "shop", POD_NAME_LABEL: "web-1"}),
    ])  # fmt: skip
    sw = switch_for(cfg, q, p)
    sw._boundary(BCC, NativeConfig())
    head = (records.KIND_EXEC, 0, 0, 7, 7, 0, 5_000_000, 4711, b"web")
    q.put(records.STRUCTS[records.KIND_EXEC].pack(*head, 1, 0, b"/app/web") + encode_trailer("", 0, []))
    q.put(native_record(records.KIND_EXEC, 1, 0, b"/usr/sbin/cron"))  # cgroup 0: a host process
    sw.process(q.take(10))
    deltas, windows = p.drain()
    assert {(d.key.image_digest, d.key.module) for d in deltas} == {
        (digest, "/app/web"),
        (f"host:{NODE}", "/usr/sbin/cron"),
    }
    assert {(w.image_digest, w.source) for w in windows} == {(digest, "bcc"), (f"host:{NODE}", "bcc")}


def test_the_switch_is_the_source_only_for_the_grpc_stream_with_native_enabled() -> None:
    q = EventQueue(100)
    on = config()
    source, process = make_source(on, q, pipeline(on), in_thread)
    assert isinstance(source, SourceSwitch) and process == source.process
    off = config(enabled=False)
    source, process = make_source(off, q, pipeline(off), in_thread)
    assert isinstance(source, TetragonGrpcSource)
    export = parse_config({"tetragon": {"exportFile": "/tmp/x.log"}})
    p = pipeline(export)
    source, process = make_source(export, q, p, in_thread)
    assert isinstance(source, TetragonExportSource) and process == p.process_json


def test_a_stored_window_names_both_sources_written_to_it(tmp_path: Path) -> None:
    from stellaops_runtime.contracts.hotsymbols import ObservationWindow
    from stellaops_runtime.store.engine import open_store

    w = 60_000_000_000 * 29_000_000
    with open_store(f"sqlite:///{tmp_path / 'hot.db'}") as s:
        s.write([], [ObservationWindow("sha256:aa", NODE, w, 3, Posture.PASSIVE, 60, "tetragon")])
        s.write([], [ObservationWindow("sha256:aa", NODE, w, 2, Posture.PASSIVE, 60, "bcc")])
        (row,) = s.read_observation_windows()
    assert (row["source"], row["event_count"]) == ("bcc,tetragon", 5)


async def test_a_native_drop_whose_marking_failed_is_marked_by_the_next_call() -> None:
    """The kernel's drops are never lost between the source and the gap tracker (agent/source_switch.py)."""
    from stellaops_runtime.native.drop_counters import NativeDrop
    from stellaops_runtime.native.source import NativeProbeSource

    cfg = config()
    p = pipeline(cfg)
    calls: list[tuple[int, int, int]] = []
    fail = [True]

    async def flaky(fn: Any, *args: Any) -> Any:
        if fail[0]:
            fail[0] = False
            raise RuntimeError("the pipeline thread is busy")
        calls.append((args[1], args[2], args[3]))
        return fn(*args)

    sw = SourceSwitch(cfg, queue=EventQueue(100), pipeline=p, in_pipeline=flaky)
    sw.bcc = NativeProbeSource(NativeConfig(), queue=EventQueue(100), kernel_source="", ring_buffer=True)
    sw.bcc.stats.drops = [NativeDrop(1_000, 2_000, {("syscall", "lost"): 3}),
                          NativeDrop(2_000, 3_000, {("syscall", "rate_limited"): 4})]  # fmt: skip
    with pytest.raises(RuntimeError):
        await sw._mark_native_drops()
    assert len(sw.bcc.stats.drops) == 2 and sw.stats.native_drop_gaps == 0  # put back, nothing lost
    await sw._mark_native_drops()
    assert calls == [(1_000, 2_000, 3), (2_000, 3_000, 4)] and sw.stats.native_drop_gaps == 2
    assert sw.bcc.stats.drops == [] and p.gaps.stats.native_dropped == {NODE: 7}


async def test_a_gap_closed_by_the_outage_loop_while_its_mark_waits_is_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Tetragon back: the switch closes its gap, awaiting the pipeline thread to mark it; the outage loop's
    take_outage closes the same gap meanwhile. One report, not a second 'for 0.0s' (seen in CI)."""
    cfg = config()
    p = pipeline(cfg)
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(fn: Any, *args: Any) -> Any:
        entered.set()
        await release.wait()  # the pipeline thread is busy with a batch
        return fn(*args)

    sw = SourceSwitch(cfg, queue=EventQueue(100), pipeline=p, in_pipeline=slow)
    sw._open_gap(time.time_ns() - 2_000_000_000)
    sw.tetragon.stats.connected = True  # Tetragon delivers again
    caplog.set_level(logging.INFO, logger="stellaops_runtime.agent.source_switch")
    closing = asyncio.create_task(sw._close_gap(time.time_ns()))
    await entered.wait()
    assert sw.take_outage() is not None  # the outage loop's turn: it records the gap and says so
    release.set()
    await closing
    said = [r.getMessage() for r in caplog.records if "recorded as a gap" in r.getMessage()]
    assert len(said) == 1 and "for 2." in said[0], said
    assert sw.take_outage() is None  # closed: nothing more to record
