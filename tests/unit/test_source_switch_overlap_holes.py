"""Holes of the BCC-to-Tetragon overlap filter (agent/source_switch_overlap.py), one test each.

The first Tetragon stream after the native probes skips Tetragon's cached
events of calls the probes counted. A skip of a call the probes did not count
loses it; a cached call not skipped that they did count is counted twice.
Each test here names a case the filter once got wrong:

- a PURL target's file is one container's (or the containers sharing its
  layer file), not every file at that in-container path;
- the node path Tetragon reports (``<tetragonHostRoot><binaryPath>``) and the
  path the probes report (``/proc/1/root<binaryPath>``) name one file;
- an earlier probe load of the same BCC period (a reload changed the attach
  list) counted its functions too;
- one event stamped in the future (a clock step, a hostile stream) does not
  end the filter.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from typing import Any

import pytest

from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.agent.source_switch import BCC, SourceSwitch
from stellaops_runtime.agent.source_switch_overlap import Overlap
from stellaops_runtime.contracts.events import ContainerInfo, EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.native import purl_targets as pt
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.policy_config import merge_entries
from stellaops_runtime.sources.queue import EventQueue
from tests.unit.test_source_switch_overlap import (
    CRC32,
    S,
    assert_counted_without,
    config,
    fake_probes,
    stamped,
)

LIB = "/usr/lib/libx.so"


def ev(
    module: str, function: str, t: int, container: str = "", kind: EventKind = EventKind.UPROBE
) -> RuntimeCallEvent:
    c = ContainerInfo(id=container) if container else None
    return RuntimeCallEvent(
        kind, t, "n", ProcessInfo(pid=1, binary="/bin/a"), c, function_name=function, module=module
    )


def test_a_purl_target_counts_only_its_own_containers_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two images with their own libx at the same in-container path: the probes had only the first's
    file (the second container started after the load). Its calls are Tetragon's alone."""

    def resolve(
        pid: int, purl: str, symbols: Any, *, container: str, proc_root: str, debug_files: bool
    ) -> Any:
        f = pt.FunctionFile(LIB, f"/proc/{pid}/root{LIB}", 16, (pid // 10, 1, 2, 3))  # 7, 8: one file
        return [pt.FunctionReport(container, pid, purl, "f", pt.RESOLVED, files=[f])], {f.key: -1}

    monkeypatch.setattr(pt, "resolve", resolve)
    monkeypatch.setattr(pt.os, "close", lambda fd: None)
    plan = pt.PurlProbePlan()
    plan.add("containerd://aaa", 70, "pkg:deb/x", ["f"])
    plan.add("bbb", 71, "pkg:deb/x", ["f"])  # the same layer file: one probe counts both
    (t,) = plan.targets()
    o = Overlap.of(NativeConfig(uprobes=(t,)), [f"uprobe {t.label()}"], since_ns=100, detached_ns=200)
    assert o is not None
    assert o.counted_by_probes(ev(LIB, "f", 150, "aaa"))
    assert o.counted_by_probes(ev(LIB, "f", 150, "bbb"))
    assert not o.counted_by_probes(ev(LIB, "f", 150, "ccc"))  # another image's libx: the probes never saw it
    assert not o.counted_by_probes(ev(LIB, "f", 150))  # no container known: kept
    assert not o.counted_by_probes(ev(LIB, "f", 150, "aaa", EventKind.USDT))


def test_the_node_path_tetragon_names_is_the_probes_file() -> None:
    """binaryPath functions: the probes report ``/proc/1/root<path>``, Tetragon ``<tetragonHostRoot><path>``
    (default ``/procRoot/1/root``, or the bare path when Tetragon runs on the host). One file."""
    entry = {"functions": [{"binaryPath": "/usr/lib/x86_64-linux-gnu/libz.so.1", "symbols": ["crc32"]}]}
    cfg = merge_entries({"p": entry}, NativeConfig(), host_root="/proc/1/root").config
    (t,) = cfg.uprobes
    o = Overlap.of(cfg, [f"uprobe {t.label()}"], since_ns=100, detached_ns=200)
    assert o is not None
    path = "/usr/lib/x86_64-linux-gnu/libz.so.1"
    for root in ("/proc/1/root", "/procRoot/1/root", ""):
        assert o.counted_by_probes(ev(root + path, "crc32", 150)), root
    assert not o.counted_by_probes(ev("/proc/77/root" + path, "crc32", 150))  # a container's own file
    assert not o.counted_by_probes(ev("/opt" + path, "crc32", 150))
    # merged /usr: the probes attach the resolved file but name the path the policy gave, as Tetragon does
    linked = UprobeTarget("/proc/1/root/usr/lib/libz.so.1", "crc32", module="/proc/1/root/lib/libz.so.1")
    o = Overlap.of(
        NativeConfig(uprobes=(linked,)), [f"uprobe {linked.label()}"], since_ns=100, detached_ns=200
    )
    assert o is not None and o.counted_by_probes(ev("/procRoot/1/root/lib/libz.so.1", "crc32", 150))


def test_an_earlier_probe_load_of_the_same_bcc_period_is_filtered_too() -> None:
    """Load 1 attached a:f, a reload (the ConfigMap changed) attached b:g only. Tetragon's cached
    a:f calls stamped while load 1 ran were counted by it."""
    now = time.time_ns()
    probes = fake_probes(now - 5 * S, ["uprobe /usr/lib/a.so:f"])
    cfg1 = NativeConfig(uprobes=(UprobeTarget("/usr/lib/a.so", "f"),))
    cfg2 = NativeConfig(uprobes=(UprobeTarget("/usr/lib/b.so", "g"),))
    q = EventQueue(10)
    p = Pipeline(config(), node_name="n")

    async def in_thread(fn: Any, *args: Any) -> Any:
        return fn(*args)

    sw = SourceSwitch(config(), queue=q, pipeline=p, in_pipeline=in_thread)
    sw.bcc, sw.mode = probes, BCC
    sw._bcc_since_ns = probes.stats.attached_ns = now - 10 * S  # load 1 attached at once
    sw._boundary(BCC, cfg1)

    attach2: list[int] = []  # load 2 attaches as it is configured (the reload's clock: no margin)

    async def configure() -> NativeConfig:
        attach2.append(time.time_ns())
        probes.stats.attached, probes.stats.attached_ns = ["uprobe /usr/lib/b.so:g"], attach2[0]
        probes.stats.detached_ns = attach2[0] + 5 * S
        return cfg2

    sw._configure = configure  # type: ignore[method-assign]
    sw._start = lambda run: None  # type: ignore[method-assign]

    async def run() -> None:
        await sw._reload_bcc()
        await sw._to_tetragon()
        await sw._stop_active()

    probes.run = None
    asyncio.run(run())
    o = sw._segments[-1].overlap
    assert o is not None
    assert o.counted_by_probes(ev("/usr/lib/a.so", "f", now - 7 * S))  # load 1's call
    assert o.counted_by_probes(ev("/usr/lib/b.so", "g", attach2[0] + 1 * S))  # load 2's call
    assert not o.counted_by_probes(ev("/usr/lib/a.so", "f", attach2[0] + 1 * S))  # load 2 had no a:f
    assert not o.counted_by_probes(ev("/usr/lib/b.so", "g", now - 7 * S))  # load 1 had no b:g
    assert not o.counted_by_probes(ev("/usr/lib/a.so", "f", now - 11 * S))  # before the probes


def test_one_future_stamped_event_does_not_end_the_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The filter ends at an event stamped past the detach plus the hold. One stamped ahead of the
    node's clock (a clock step, a hostile or replayed stream) proves nothing about what the cache
    still holds: it must not end it, or the cached calls after it are counted twice."""
    from stellaops_runtime.adapter import from_proto

    events = stamped()
    t0 = min(t for _, t, _ in events)
    detached, hold = t0 + 2 * S, 30 * S
    o = Overlap.of(NativeConfig(uprobes=(CRC32,)), [f"uprobe {CRC32.label()}"], since_ns=t0 - 5 * S,
                   detached_ns=detached)  # fmt: skip
    assert o is not None
    early = [x[0] for x in events if x[2] == "crc32" and x[1] < detached]
    assert len(early) >= 3
    restamp: dict[bytes, int] = {early[0]: detached + hold + 3600 * S}  # an hour ahead
    real = from_proto.adapt_payload

    def adapt(payload: bytes, received: int, stats: Any, depth: int = 0) -> Any:
        e = real(payload, received, stats, depth)
        if e is not None and payload in restamp:
            e.timestamp_ns = restamp[payload]
        return e

    monkeypatch.setattr(from_proto, "adapt_payload", adapt)
    monkeypatch.setattr(time, "time_ns", lambda: detached + S)  # the node's clock: just past the detach
    kept = o.keep([(early[0], 1), (early[1], 2)], hold, 16)
    assert o.live, "one event stamped an hour ahead of the node's clock ended the filter"
    assert kept == [(early[0], 1)] and o.skipped == 1  # the odd one counted, the cached call skipped
    monkeypatch.setattr(time, "time_ns", lambda: detached + hold + 2 * S)  # the clock passed the end
    restamp[early[2]] = detached + hold + S  # a fresh event stamped past the end, not ahead of the clock
    assert o.keep([(early[2], 3), (early[1], 4)], hold, 16) == [(early[2], 3), (early[1], 4)]
    assert not o.live and o.skipped == 1


def test_a_restart_while_the_probes_ran_does_not_count_their_calls_again(tmp_path: Any) -> None:
    """Agent A runs the probes (crc32 attached) and is restarted; agent B starts on Tetragon, whose
    cache sends calls stamped while A's probes ran. A stored its counts up to its watch record's
    moment (``resume_outage``): B must skip the cached crc32 calls stamped before it, and count
    the rest (adler32, and crc32 after that moment: A's counts of those were lost with A)."""
    events = stamped()
    t0 = min(t for _, t, _ in events)
    alive = t0 + 10 * S  # A's watch record: counted and stored up to here
    spool = str(tmp_path / "spool")

    def agent() -> tuple[SourceSwitch, Pipeline, EventQueue]:
        cfg = dataclasses.replace(config(), store=dataclasses.replace(config().store, spool_path=spool))
        q, p = EventQueue(100_000), Pipeline(config(), node_name="n")

        async def in_thread(fn: Any, *args: Any) -> Any:
            return fn(*args)

        return SourceSwitch(cfg, queue=q, pipeline=p, in_pipeline=in_thread), p, q

    a, _, _ = agent()
    probes = fake_probes(0, [f"uprobe {CRC32.label()}"])
    probes.stats.connected, probes.stats.attached_ns = True, t0 - 4 * S
    a.bcc, a.mode, a._bcc_since_ns = probes, BCC, t0 - 5 * S
    a._boundary(BCC, NativeConfig(uprobes=(CRC32,)))
    a._reload_check_at = a._next_check = float("inf")
    asyncio.run(a._tick_bcc(time.monotonic()))  # a tick while the probes run; then A is killed

    b, p, q = agent()
    b.resume_outage(alive)  # agent/watch_record.py: the hole since A's last stored moment
    for payload, _, _ in events:
        q.put(payload)
    while len(q):
        b.process(q.take(7))
    twice = [x for x in events if x[2] == "crc32" and x[1] < alive]
    assert len(twice) > 20
    assert_counted_without(p, events, twice)
    assert b.stats.overlap_skipped == len(twice)
    assert not os.path.exists(spool + ".probe-loads")  # taken: a later start skips nothing


def test_the_kept_probe_loads_round_trip_and_a_bad_file_skips_nothing(tmp_path: Any) -> None:
    """agent/source_switch_loads.py: what a restarted agent reads back. A file it cannot trust
    (hostile or damaged) is ignored and removed: a call counted twice at worst, never one lost."""
    from stellaops_runtime.agent import source_switch_loads as sl
    from stellaops_runtime.agent.source_switch_overlap import RUNNING, Load

    purl = UprobeTarget("/proc/self/fd/5", "f", module=LIB, root="/proc/7/root", containers=("docker://aaa",))
    cfg = NativeConfig(uprobes=(purl, UprobeTarget("/proc/1/root/usr/lib/b.so", "g")), syscalls=("openat",),
                       cgroup_allow=(9,))  # fmt: skip
    on = [f"uprobe {purl.label()}", "uprobe /proc/1/root/usr/lib/b.so:g", "raw_syscalls:sys_enter (openat)"]
    done = Load.of(cfg, on, since_ns=100, detached_ns=200)
    running = Load.of(cfg, on[1:], since_ns=300, detached_ns=RUNNING)
    assert done is not None and running is not None
    raw = sl.encode([done, running], [(150, 160)], "boot-1")
    o = sl.decode(raw, boot="boot-1", cut_ns=400)
    assert o is not None and o.loads == (done, dataclasses.replace(running, detached_ns=400))
    assert o.unwatched == ((150, 160),)
    e = ev(LIB, "f", 170, "aaa")
    e.container.cgroup_id = 9  # type: ignore[union-attr]
    assert o.counted_by_probes(e) and not o.counted_by_probes(ev(LIB, "f", 155, "aaa"))
    cut = sl.decode(raw, boot="boot-1", cut_ns=180)  # the old agent stored up to 180: the rest is kept
    assert cut is not None and cut.loads == (dataclasses.replace(done, detached_ns=180),)
    bad = [
        raw[:-1],  # cut short
        raw.replace(b"boot-1", b"boot-2"),  # written during another boot
        raw.replace(b'"since": 100', b'"since": -5'),
        raw.replace(b'"since": 100', b'"since": "100"'),
        raw.replace(b"/usr/lib/b.so", b"/usr/lib/b\\u0000.so"),  # a NUL in a name
        raw.replace(b'"uprobe"', b'"nonsense"', 1),
        raw.replace(b'"exec": false', b'"exec": 0'),
        b"[]",
        b'{"format": "stellaops-runtime-probe-loads", "boot": "boot-1", "loads": ' + b"[{}, " * 70 + b"]",
        b" " * (sl.MAX_BYTES + 1),
    ]
    for i, b in enumerate(bad):
        with pytest.raises(sl.LoadsError):
            sl.decode(b, boot="boot-1", cut_ns=400)
        path = tmp_path / f"bad{i}"
        path.write_bytes(b)
        assert sl.resumed(str(path), 400) is None and not path.exists(), i
    assert sl.resumed(str(tmp_path / "none"), 400) is None
    with pytest.raises(sl.LoadsError):
        sl.decode(raw, boot="", cut_ns=400)  # the boot unknown: the file cannot be tied to it


def test_an_agent_restarted_just_after_the_switch_back_still_skips_what_the_probes_counted(
    tmp_path: Any,
) -> None:
    """Agent A switched back to Tetragon and was restarted before the cache sent everything it held
    from the probes' time: the file keeps the loads, ended at their real detach (not the record's
    later moment: Tetragon watched after it, and its calls then are its own)."""
    spool = str(tmp_path / "spool")
    cfg = dataclasses.replace(config(), store=dataclasses.replace(config().store, spool_path=spool))

    async def in_thread(fn: Any, *args: Any) -> Any:
        return fn(*args)

    def agent() -> SourceSwitch:
        return SourceSwitch(cfg, queue=EventQueue(10), pipeline=Pipeline(config(), node_name="n"),
                            in_pipeline=in_thread)  # fmt: skip

    a = agent()
    probes = fake_probes(0, ["uprobe /usr/lib/a.so:f"])
    probes.stats.connected, probes.stats.attached_ns = True, 110
    a.bcc, a.mode, a._bcc_since_ns = probes, BCC, 100
    a._boundary(BCC, NativeConfig(uprobes=(UprobeTarget("/usr/lib/a.so", "f"),)))
    a._reload_check_at = a._next_check = float("inf")

    async def run() -> None:
        await a._tick_bcc(time.monotonic())
        probes.stats.connected, probes.stats.detached_ns = False, 200
        await a._to_tetragon()
        await a._stop_active()

    asyncio.run(run())
    b = agent()
    b.resume_outage(500)  # A's record: Tetragon watched up to 500
    o = b._segments[0].overlap
    assert o is not None and o.detached_ns == 200
    assert o.counted_by_probes(ev("/usr/lib/a.so", "f", 150))
    assert not o.counted_by_probes(ev("/usr/lib/a.so", "f", 300))  # Tetragon's own time: counted
    assert not os.path.exists(spool + ".probe-loads")
