"""The BCC-to-Tetragon switch counts no call twice (agent/source_switch_overlap.py).

Tetragon's event cache delivers, to the stream the switch opens after the
probes stopped, events stamped while the probes still ran. For a function the
probes attached, the probes counted those calls already. Real parts: the real
receive queue, the real pipeline (fast path on), real Tetragon payloads of the
replay corpus; the probes are a stand-in that only says what it attached and
when it detached.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace
from typing import Any

from stellaops_runtime.adapter import from_proto
from stellaops_runtime.adapter.common import AdapterStats
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.agent.source_switch import BCC, TETRAGON, SourceSwitch
from stellaops_runtime.agent.source_switch_overlap import Overlap
from stellaops_runtime.contracts.config import AgentConfig, parse_config
from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.native.config import NativeConfig, UprobeTarget, UsdtTarget
from stellaops_runtime.sources.queue import EventQueue
from tests.e2e import harness as h
from tests.ports import free_port

LIBZ = "/usr/lib/x86_64-linux-gnu/libz.so.1"
CRC32 = UprobeTarget(LIBZ, "crc32")  # probed by both; adler32 (same file) only by Tetragon
S = 1_000_000_000


def config() -> AgentConfig:
    return parse_config(
        {
            "tetragon": {"address": f"127.0.0.1:{free_port()}", "connectionTimeout": 0.3,
                         "reconnectInitialSeconds": 0.05, "reconnectMaxSeconds": 0.2},
            "symbols": {"enabled": False},
            "attribution": {"enabled": False},
            "native": {"enabled": True},
        }
    )  # fmt: skip


def stamped() -> list[tuple[bytes, int, str]]:
    """The corpus's payloads with their event time and function, in arrival order."""
    out = []
    for e in h.stream_events():
        ev = from_proto.adapt_payload(e.payload, 0, AdapterStats())
        if ev is not None:
            out.append((e.payload, ev.timestamp_ns, ev.function_name))
    return out


def fake_probes(detached_ns: int, attached: list[str]) -> Any:
    stats = SimpleNamespace(
        detached_ns=detached_ns,
        last_read_ns=0,  # native/source.py: the last read's start (0: the detach ends the load)
        attached=attached,
        attached_ns=0,  # the probes' attach (0: never attached; a test sets it)
        connects=1,
        connect_failures=0,
        connected=False,
        kernel={},
        unwatched=[],
        drops=[],
    )
    return SimpleNamespace(stats=stats, take_drops=list, take_unwatched=list, noted_ns=0)


def switched(
    bcc_since_ns: int, detached_ns: int, native: NativeConfig
) -> tuple[SourceSwitch, Pipeline, EventQueue]:
    """A switch that ran the probes (``native``) from ``bcc_since_ns`` and has just switched back."""
    cfg = config()
    q, p = EventQueue(100_000), Pipeline(config(), node_name="n")

    async def in_thread(fn: Any, *args: Any) -> Any:
        return fn(*args)

    sw = SourceSwitch(cfg, queue=q, pipeline=p, in_pipeline=in_thread)
    attached = [f"uprobe {t.label()}" for t in native.uprobes] + [f"usdt {t.label()}" for t in native.usdt]
    sw.bcc = fake_probes(detached_ns, attached)
    sw.bcc.stats.attached_ns = bcc_since_ns  # attached at once
    sw.mode = BCC
    sw._bcc_since_ns = bcc_since_ns
    sw._boundary(BCC, native)

    async def back() -> None:
        await sw._to_tetragon()
        await sw._stop_active()  # the stream dials a closed port: nothing of its own is queued

    asyncio.run(back())
    assert sw._segments[-1].kind == TETRAGON
    return sw, p, q


def calls_by_function(p: Pipeline) -> Counter[str]:
    out: Counter[str] = Counter()
    for d in p.drain()[0]:
        out[d.key.function_name] += d.invocation_count
    return out


def assert_counted_without(p: Pipeline, events: list[tuple[bytes, int, str]], twice: list[Any]) -> None:
    """``p`` counted ``events`` as a pipeline fed all but ``twice`` (the calls the probes counted)."""
    ref = Pipeline(config(), node_name="n")
    ref.process_proto([(x[0], 0) for x in events if x not in twice])
    assert Counter(p.adapter_stats.events) == Counter(ref.adapter_stats.events)
    assert calls_by_function(p) == calls_by_function(ref)


def skipped_metric(sw: SourceSwitch) -> float:
    for m in sw.metrics():
        if m.name == "stellaops_runtime_source_switch_overlap_skipped":
            return float(m.samples[0].value)
    raise AssertionError("no stellaops_runtime_source_switch_overlap_skipped family")


def test_tetragon_s_cached_events_of_an_attached_function_are_not_counted_again() -> None:
    events = stamped()
    t0 = min(t for _, t, _ in events)
    detached = t0 + 10 * S
    sw, p, q = switched(t0 - 5 * S, detached, NativeConfig(uprobes=(CRC32,)))
    for payload, _, _ in events:
        q.put(payload)
    while len(q):
        sw.process(q.take(7))

    # what must be counted: everything but crc32 calls stamped while the probes watched
    twice = [x for x in events if x[2] == "crc32" and x[1] < detached]
    assert len(twice) > 20
    ref = Pipeline(config(), node_name="n")
    ref.process_proto([(x[0], 0) for x in events if x not in twice])
    assert Counter(p.adapter_stats.events) == Counter(ref.adapter_stats.events)
    calls, want = calls_by_function(p), calls_by_function(ref)
    everything = Pipeline(config(), node_name="n")
    everything.process_proto([(x[0], 0) for x in events])
    whole = calls_by_function(everything)
    assert calls == want and calls["crc32"] < whole["crc32"]
    assert calls["adler32"] == whole["adler32"]  # Tetragon's alone: every call
    assert skipped_metric(sw) == len(twice)


def test_the_filter_ends_once_events_pass_the_detach_moment_plus_the_hold() -> None:
    events = stamped()
    t0 = min(t for _, t, _ in events)
    detached = t0 + 2 * S
    sw, p, q = switched(t0 - 5 * S, detached, NativeConfig(uprobes=(CRC32,)))
    hold = sw.tetragon.hold.ns()
    late = [x for x in events if x[1] >= detached + hold]
    assert late, "the corpus spans more than the hold"
    q.put(late[0][0])
    sw.process(q.take(10))
    overlap = sw._segments[-1].overlap
    assert overlap is not None and not overlap.live
    early = next(x for x in events if x[2] == "crc32" and x[1] < detached)
    q.put(early[0])  # past the filter's end: counted (the cache sends nothing that old any more)
    sw.process(q.take(10))
    assert skipped_metric(sw) == 0 and p.processed == 2


def ev(kind: EventKind, module: str, function: str, t: int) -> RuntimeCallEvent:
    return RuntimeCallEvent(
        kind, t, "n", ProcessInfo(pid=1, binary="/bin/a"), function_name=function, module=module
    )


def test_only_what_the_probes_attached_and_watched_is_skipped() -> None:
    cfg = NativeConfig(
        uprobes=(UprobeTarget("/proc/7/root/usr/lib/libx.so", "f", module="/usr/lib/libx.so"),
                 UprobeTarget("/usr/lib/liby.so", "g")),
        usdt=(UsdtTarget("/usr/bin/python3", "python", "function__entry"),),
        syscalls=("openat",),
    )  # fmt: skip
    attached = [
        "sched:sched_process_exec",
        "raw_syscalls:sys_enter (openat)",
        "uprobe /proc/7/root/usr/lib/libx.so:f",
        "usdt /usr/bin/python3:python:function__entry",
    ]  # g failed to attach
    o = Overlap.of(cfg, attached, since_ns=100, detached_ns=200)
    assert o is not None
    assert o.counted_by_probes(ev(EventKind.UPROBE, "/usr/lib/libx.so", "f", 150))
    assert not o.counted_by_probes(ev(EventKind.UPROBE, "/usr/lib/libx.so", "f", 200))  # at detach: not
    assert not o.counted_by_probes(ev(EventKind.UPROBE, "/usr/lib/libx.so", "f", 99))  # before the probes
    assert not o.counted_by_probes(ev(EventKind.UPROBE, "/usr/lib/liby.so", "g", 150))  # not attached
    assert not o.counted_by_probes(ev(EventKind.UPROBE, "/usr/lib/other.so", "f", 150))  # another file
    assert o.counted_by_probes(ev(EventKind.USDT, "/usr/bin/python3", "python:function__entry", 150))
    assert o.counted_by_probes(ev(EventKind.SYSCALL, "", "__x64_sys_openat", 150))
    assert not o.counted_by_probes(ev(EventKind.SYSCALL, "", "__x64_sys_connect", 150))
    assert o.counted_by_probes(ev(EventKind.EXEC, "/bin/a", "", 150))  # exec events are on by default
    cut = Overlap.of(cfg, attached, since_ns=100, detached_ns=200, unwatched=[(180, 200)])  # a read cut short
    assert cut is not None and cut.counted_by_probes(ev(EventKind.UPROBE, "/usr/lib/libx.so", "f", 179))
    assert not cut.counted_by_probes(ev(EventKind.UPROBE, "/usr/lib/libx.so", "f", 180))  # the probes lost it
    allow = Overlap.of(
        NativeConfig(syscalls=("openat",), cgroup_allow=(9,)), attached, since_ns=100, detached_ns=200
    )
    assert allow is not None and not allow.counted_by_probes(
        ev(EventKind.SYSCALL, "", "__x64_sys_openat", 150)
    )
    assert Overlap.of(cfg, [], since_ns=100, detached_ns=200) is None  # nothing attached: nothing counted
    assert Overlap.of(cfg, attached, since_ns=100, detached_ns=0) is None  # never detached


def test_spans_the_probes_did_not_count_stay_counted_after_the_tick_took_them() -> None:
    """A read cut short or a kernel drop while the probes ran is taken (marked as a gap) by the
    switch's tick long before the switch back; the probes counted nothing there, so the cached
    Tetragon calls stamped then are the only count and must not be skipped (a lost count)."""
    drop = SimpleNamespace(start_ns=120, end_ns=130, total=3)
    taken: dict[str, list[Any]] = {"u": [(140, 150)], "d": [drop]}
    probes = fake_probes(200, ["uprobe /usr/lib/libx.so:f"])
    probes.take_unwatched = lambda: [taken["u"].pop()] if taken["u"] else []
    probes.take_drops = lambda: [taken["d"].pop()] if taken["d"] else []
    probes.stats.unwatched = [(170, 175)]  # one span not taken yet
    cfg, q = config(), EventQueue(10)
    p = Pipeline(cfg, node_name="n")

    async def in_thread(fn: Any, *args: Any) -> Any:
        return fn(*args)

    sw = SourceSwitch(cfg, queue=q, pipeline=p, in_pipeline=in_thread)
    sw.bcc, sw.mode = probes, BCC
    sw._boundary(BCC, NativeConfig(uprobes=(UprobeTarget("/usr/lib/libx.so", "f"),)))

    async def run() -> None:
        sw._bcc_since_ns = probes.stats.attached_ns = 100
        await sw._mark_native_drops()  # a tick while the probes ran: the spans become gaps
        await sw._to_tetragon()
        await sw._stop_active()

    asyncio.run(run())
    o = sw._segments[-1].overlap
    assert o is not None and o.counted_by_probes(ev(EventKind.UPROBE, "/usr/lib/libx.so", "f", 110))
    for t in (125, 145, 172):  # in the drop, the cut read, the span still pending
        assert not o.counted_by_probes(ev(EventKind.UPROBE, "/usr/lib/libx.so", "f", t)), t
