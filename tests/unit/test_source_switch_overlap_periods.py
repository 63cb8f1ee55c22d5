"""The BCC-to-Tetragon overlap filter across BCC periods, agents and stops (SW3, s42).

agent/source_switch_overlap.py skips Tetragon's cached events of calls the
native probes counted. Tetragon's cache may send calls stamped while the probes
ran for the event hold (~32 s) after their detach, to whichever stream is open
then. Each test here names a case where such a call was counted twice:

- a second BCC period starting within the hold of the first one's switch back:
  the next stream, and an agent restarted meanwhile, must still skip the first
  period's calls;
- a new agent configured without the native probes (``native.enabled: false``)
  must still read the old agent's probe loads;
- a graceful stop that stored every count: the calls between the moment stop
  was asked and the probes' detach were stored too;
- probes limited to cgroups (``native.cgroupAllow``): Tetragon's events carry
  the container id, not the cgroup id;
- a policy's custom ``tetragonHostRoot``: Tetragon names the file under it.

And one where such a call was lost: a probed call still running when the agent
was killed (the probes record a call at its return, stamped at its entry), whose
Tetragon copy is stamped before the watch record's moment.
"""

from __future__ import annotations

import asyncio
import os
import time
from types import SimpleNamespace
from typing import Any

import pytest

from stellaops_runtime.agent import source_switch_loads as sl
from stellaops_runtime.agent.optional_parts import make_source
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.agent.source_switch import BCC, SourceSwitch
from stellaops_runtime.agent.source_switch_overlap import Overlap
from stellaops_runtime.boot_id import this_boot
from stellaops_runtime.contracts.config import AgentConfig, parse_config
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.sources.queue import EventQueue
from tests.ports import free_port
from tests.unit.test_source_switch_overlap import (
    CRC32,
    S,
    assert_counted_without,
    config,
    fake_probes,
    stamped,
)
from tests.unit.test_source_switch_overlap_attach import AF, BG, ev, in_thread, on_bcc, restarted, switch


def two_periods(sw: SourceSwitch, now: int) -> None:
    """Period 1 (a:f attached -60 s, detached -20 s), its switch back, then at once period 2
    (b:g attached 1 s after it, detached 1 s later) and its switch back: both within the cache's hold."""
    probes = fake_probes(now - 20 * S, ["uprobe /usr/lib/a.so:f"])
    probes.stats.attached_ns = now - 60 * S
    sw.bcc, sw.mode, sw._bcc_since_ns = probes, BCC, now - 70 * S
    sw._boundary(BCC, NativeConfig(uprobes=(AF,)))
    sw._start = lambda run: None  # type: ignore[method-assign]
    sw._reload_check_at = sw._next_check = float("inf")
    probes.run = None

    async def configure() -> NativeConfig:  # period 2's probes attach a second after they are asked
        probes.stats.attached, probes.stats.attached_ns = ["uprobe /usr/lib/b.so:g"], time.time_ns() + S
        probes.stats.detached_ns, probes.stats.connected = 0, True
        return NativeConfig(uprobes=(BG,))

    sw._configure = configure  # type: ignore[method-assign]

    async def run() -> None:
        await sw._to_tetragon()  # period 1 ends
        await sw._to_bcc()  # Tetragon lost again within the hold: period 2
        await sw._tick_bcc(time.monotonic())  # its probes attached: the file is written
        probes.stats.connected, probes.stats.detached_ns = False, probes.stats.attached_ns + S
        await sw._to_tetragon()
        await sw._stop_active()

    asyncio.run(run())


def test_a_second_bcc_period_within_the_hold_keeps_the_first_periods_calls_skipped(tmp_path: Any) -> None:
    """Tetragon's cache may still send period 1's calls to the stream after period 2: they were
    counted by period 1's probes, in this agent and in one restarted after period 2."""
    now = time.time_ns()
    spool = str(tmp_path / "spool")
    sw = switch(spool)
    two_periods(sw, now)
    o = sw._segments[-1].overlap
    assert o is not None and o.counted_by_probes(ev(BG, time.time_ns() + S))  # period 2's own call
    assert o.counted_by_probes(ev(AF, now - 30 * S)), "period 1's cached call counted twice"
    assert not o.counted_by_probes(ev(AF, now - 65 * S))  # before period 1's attach: Tetragon's alone
    assert not o.counted_by_probes(ev(AF, now - 10 * S))  # Tetragon watched between the periods

    b = switch(spool)
    b.resume_outage(time.time_ns() + 10 * S)  # the restarted agent's record: after the switch back
    r = b._segments[0].overlap
    assert r is not None and r.counted_by_probes(ev(AF, now - 30 * S)), "restart: counted twice"
    assert not r.counted_by_probes(ev(AF, now - 10 * S))


def test_a_first_period_past_the_hold_is_not_carried(tmp_path: Any) -> None:
    """Period 1 detached longer than the hold before period 2 began: the cache has sent its calls,
    and matching its functions any longer could only skip Tetragon's fresh ones."""
    now = time.time_ns() - 200 * S  # period 1 ended 180 s before period 2
    sw = switch(str(tmp_path / "spool"))
    two_periods(sw, now)
    o = sw._segments[-1].overlap
    assert o is not None and len(o.loads) == 1 and o.counted_by_probes(ev(BG, time.time_ns() + S))
    assert not o.counted_by_probes(ev(AF, now - 30 * S))


def spooled(spool: str, *, native: bool) -> AgentConfig:
    return parse_config(
        {
            "tetragon": {"address": f"127.0.0.1:{free_port()}", "connectionTimeout": 0.3},
            "symbols": {"enabled": False},
            "attribution": {"enabled": False},
            "store": {"spoolPath": spool},
            "native": {"enabled": native},
        }
    )


def test_a_new_agent_without_the_probes_still_skips_the_old_probes_calls(tmp_path: Any) -> None:
    """Agent A ran the probes (crc32) and was restarted with ``native.enabled: false`` (the probes
    turned off in the same rollout): B streams from Tetragon alone, whose cache sends calls stamped
    while A's probes ran. A stored its counts of them up to its record's moment."""
    events = stamped()
    t0 = min(t for _, t, _ in events)
    alive = t0 + 10 * S
    spool = str(tmp_path / "spool")
    a_cfg = spooled(spool, native=True)
    a = SourceSwitch(
        a_cfg, queue=EventQueue(10), pipeline=Pipeline(config(), node_name="n"), in_pipeline=in_thread
    )
    probes = fake_probes(0, [f"uprobe {CRC32.label()}"])
    probes.stats.connected, probes.stats.attached_ns = True, t0 - 4 * S
    a.bcc, a.mode, a._bcc_since_ns = probes, BCC, t0 - 5 * S
    a._boundary(BCC, NativeConfig(uprobes=(CRC32,)))
    a._reload_check_at = a._next_check = float("inf")
    asyncio.run(a._tick_bcc(time.monotonic()))  # the loads on disk; then A is killed
    assert os.path.exists(spool + ".probe-loads")

    q, p = EventQueue(100_000), Pipeline(config(), node_name="n")
    source, process = make_source(spooled(spool, native=False), q, p, in_thread)
    source.resume_outage(alive)  # agent/watch_record.py
    for payload, _, _ in events:
        q.put(payload)
    while len(q):
        process(q.take(7))
    twice = [x for x in events if x[2] == "crc32" and x[1] < alive]
    assert len(twice) > 20
    assert_counted_without(p, events, twice)
    assert not os.path.exists(spool + ".probe-loads")
    assert not getattr(source, "native_cfg", config().native).enabled  # it never runs the probes


def test_a_call_running_when_the_agent_was_killed_is_counted_from_tetragon(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Agent A's probes had read their buffer whole up to t0 + 10 s, but a crc32 call entered at
    t0 + 6 s was still running (its record is written at its return, which A never read). A's
    watch record must not claim past that entry, or B skips Tetragon's copy: its only count."""
    from stellaops_runtime.native.loader import ProbeSet
    from stellaops_runtime.native.source import NativeProbeSource
    from stellaops_runtime.native.source_read import IN_FLIGHT_SLACK_NS

    events = stamped()
    t0 = min(t for _, t, _ in events)
    spool = str(tmp_path / "spool")
    # in flight since t0 + 6 s, as native/source.py says it (checked below)
    a, _ = on_bcc(spool, t0, queued_ns=t0 + 10 * S, noted_ns=t0 + 20 * S, in_flight_ns=t0 + 6 * S)
    alive = a.watching_ns()
    assert alive is not None  # then A is killed

    twice = [x for x in events if x[2] == "crc32" and x[1] < t0 + 6 * S]
    assert 5 < len(twice) < len([x for x in events if x[2] == "crc32" and x[1] < t0 + 10 * S])
    assert_counted_without(restarted(spool, alive, events), events, twice)

    # native/source.py: the oldest entry of a live thread, from the probes' map (entries of gone
    # threads stay in the LRU map and are passed over), on the wall clock
    def entry(pid: int, tid: int, ts: int) -> tuple[Any, Any]:
        return SimpleNamespace(pid_tgid=pid << 32 | tid), SimpleNamespace(ts=ts)

    mono = time.monotonic_ns()
    table = [entry(7, 8, mono - 9 * S), entry(7, 9, mono - 4 * S), entry(7, 10, mono - 2 * S)]
    ps = ProbeSet(
        {b"stella_up_starts": SimpleNamespace(iteritems=lambda: iter(table))},
        NativeConfig(uprobes=(CRC32,)),
        False,
    )
    gone = {(7, 8)}
    real = NativeProbeSource(NativeConfig(), queue=EventQueue(10), kernel_source="")
    real.procs = SimpleNamespace(thread_since=lambda pid, tid, ts: (pid, tid) not in gone)  # type: ignore[assignment]
    before = time.time_ns()
    at = real._in_flight_since(ps)
    slack = IN_FLIGHT_SLACK_NS  # Tetragon's copy of that call may be stamped a hair earlier
    assert before - 4 * S - slack - S // 10 <= at <= time.time_ns() - 4 * S - slack  # (7, 9)'s, not (7, 8)'s
    gone.update({(7, 9), (7, 10)})
    assert before <= real._in_flight_since(ps) <= time.time_ns()  # none left: now
    assert ps.oldest_in_flight(real.procs.thread_since, limit=2) == 0  # too many to look at
    assert ProbeSet(ps.bpf, NativeConfig(), False).oldest_in_flight(real.procs.thread_since) is None
    real._load_ns = before - 60 * S
    monkeypatch.setattr(ProbeSet, "oldest_in_flight", lambda self, alive: 0)
    assert real._in_flight_since(ps) == before - 60 * S  # then any call since the load may be running


def test_a_graceful_stop_leaves_the_calls_it_stored_after_the_stop_was_asked_skipped(tmp_path: Any) -> None:
    """Agent A is stopped gracefully while its probes run: its watch record's moment is when stop
    was asked (agent/runner.py), but the probes counted until they detached, and the stop stored
    (or spooled) every count. B must skip Tetragon's cached calls up to the detach, not only up to
    that moment."""
    events = stamped()
    t0 = min(t for _, t, _ in events)
    alive, detached = t0 + 6 * S, t0 + 12 * S  # stop asked; the probes' last read and detach
    spool = str(tmp_path / "spool")
    a = switch(spool)
    a._reload_check_at = a._next_check = float("inf")
    probes = fake_probes(0, [f"uprobe {CRC32.label()}"])
    probes.stats.connected, probes.stats.attached_ns = True, t0 - 4 * S
    a.bcc, a.mode, a._bcc_since_ns = probes, BCC, t0 - 5 * S
    a._boundary(BCC, NativeConfig(uprobes=(CRC32,)))

    async def stop() -> None:
        await a._tick_bcc(time.monotonic())  # a tick while they run
        probes.stats.connected, probes.stats.detached_ns = False, detached  # SourceSwitch.run's finally
        await a._stop_active()
        await a._mark_native_drops()

    asyncio.run(stop())
    getattr(a, "stored_all", lambda: None)()  # agent/runner.py: every count stored or spooled
    raw = (tmp_path / "spool.probe-loads").read_bytes()
    assert b'"stored": true' in raw
    with pytest.raises(sl.LoadsError):  # a hostile flag is no reason to skip anything
        sl.decode(raw.replace(b'"stored": true', b'"stored": 1'), boot=this_boot(), cut_ns=alive)

    twice = [x for x in events if x[2] == "crc32" and x[1] < detached]
    assert len([x for x in twice if x[1] >= alive]) > 5
    assert_counted_without(restarted(spool, alive, events), events, twice)


def test_probes_limited_to_cgroups_skip_the_calls_of_those_cgroups_containers(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cgroupAllow`` names a container's cgroup (v2: the inode of its directory, whose name holds
    the container id). Tetragon's cached calls of that container, by its full id or Docker's short
    one, were counted by the probes; another container's were not. ``cgroupAllow`` names a host
    service's cgroup too: a host process's cached call may be the probes' and cannot be told from
    another host process's, so it is skipped (the load's span is a node-wide gap:
    test_source_switch_cgroup_limited.py), never counted twice."""
    from stellaops_runtime.contracts.events import ContainerInfo, EventKind, ProcessInfo, RuntimeCallEvent
    from stellaops_runtime.native import cgroup_ids

    cid, other = "ab" * 32, "cd" * 32
    tree = tmp_path / "cgroup"
    pod = tree / "kubepods.slice" / "kubepods-pod1.slice"
    (pod / f"cri-containerd-{cid}.scope").mkdir(parents=True)
    (pod / f"cri-containerd-{other}.scope").mkdir()
    (tree / "system.slice" / "ssh.service").mkdir(parents=True)
    (tree / "cgroup.controllers").write_text("")  # a cgroup v2 tree (test_cgroup_ids_v1.py)
    ino = (pod / f"cri-containerd-{cid}.scope").stat().st_ino
    host = (tree / "system.slice" / "ssh.service").stat().st_ino
    monkeypatch.setattr(cgroup_ids, "ROOTS", (str(tmp_path / "absent"), str(tree)))
    now = time.time_ns()
    sw = switch()
    probes = fake_probes(now - 10 * S, [f"uprobe {CRC32.label()}"])
    probes.stats.attached_ns = now - 30 * S
    sw.bcc, sw.mode, sw._bcc_since_ns = probes, BCC, now - 40 * S
    sw._boundary(BCC, NativeConfig(uprobes=(CRC32,), cgroup_allow=(ino, host)))

    async def back() -> None:
        await sw._to_tetragon()
        await sw._stop_active()

    asyncio.run(back())
    o = sw._segments[-1].overlap
    assert o is not None

    def call(container: str) -> RuntimeCallEvent:
        c = ContainerInfo(id=container) if container else None
        return RuntimeCallEvent(EventKind.UPROBE, now - 20 * S, "n", ProcessInfo(pid=1, binary="/bin/a"), c,
                                function_name="crc32", module=CRC32.binary)  # fmt: skip

    assert o.counted_by_probes(call(cid)), "the allowed cgroup's container: counted twice"
    assert o.counted_by_probes(call(cid[:15]))  # Tetragon's process.docker id, without pod info
    assert not o.counted_by_probes(call(other)) and not o.counted_by_probes(call(other[:15]))
    assert not o.counted_by_probes(call(cid[:8]))  # too short to name one container
    assert o.counted_by_probes(call(""))  # a host process: maybe ssh.service's, counted by the probes
    raw = sl.encode(o.loads, o.unwatched, "boot-1")  # a restarted agent matches them the same way
    r = sl.decode(raw, boot="boot-1", cut_ns=now)
    assert r is not None and r.counted_by_probes(call(cid)) and not r.counted_by_probes(call(other))
    assert cgroup_ids.container_ids([ino, host, 12345]) == {ino: cid}


def test_a_record_never_claims_past_the_attach_before_the_load_is_on_disk(tmp_path: Any) -> None:
    """An agent killed within a tick of its probes attaching has no load on disk yet. That loses
    nothing and doubles nothing only if its watch record's moment (``watching_ns``) cannot pass the
    attach before the load is written: the next agent cuts the loads at that moment, so a load
    cut before its attach is no load either way. Checked at every await of the tick that closes
    the switch's gap and writes the load (each kernel drop marked is one)."""
    spool = str(tmp_path / "spool")
    a = switch(spool)
    a._reload_check_at = a._next_check = float("inf")
    attach = time.time_ns() - 5 * S
    probes = fake_probes(0, [f"uprobe {CRC32.label()}"])
    probes.stats.connected, probes.stats.attached_ns = True, attach
    probes.queued_ns = probes.in_flight_ns = probes.noted_ns = attach + 3 * S  # all read by then
    drops = [SimpleNamespace(start_ns=attach + S, end_ns=attach + 2 * S, total=1) for _ in range(2)]
    probes.take_drops = lambda: [drops.pop()] if drops else []
    probes.stats.drops = []
    a.bcc, a.mode, a._bcc_since_ns = probes, BCC, attach - 5 * S
    a._boundary(BCC, NativeConfig(uprobes=(CRC32,)))
    a._open_gap(attach - 6 * S)  # the switch's gap: Tetragon lost until the probes attach
    seen: list[tuple[int | None, bool]] = []

    def look() -> None:
        seen.append((a.watching_ns(), os.path.exists(spool + ".probe-loads")))

    async def in_pipeline(fn: Any, *args: Any) -> Any:
        look()
        return fn(*args)

    a.in_pipeline = in_pipeline
    assert a.watching_ns() is None  # the gap is open: no moment at all
    asyncio.run(a._tick_bcc(time.monotonic()))
    asyncio.run(a._tick_bcc(time.monotonic()))
    assert len(seen) >= 3 and os.path.exists(spool + ".probe-loads")
    for alive, on_disk in seen:
        assert on_disk or alive is None or alive < attach, (alive, attach, on_disk)
    assert a.watching_ns() == attach + 3 * S  # once on disk, the record moves on
    r = sl.resumed(spool + ".probe-loads", attach + 3 * S)
    assert r is not None and r.loads[0].since_ns == attach


def test_a_custom_tetragon_host_root_names_the_probes_file(tmp_path: Any) -> None:
    """A policy whose Tetragon sees the node's root at /host: Tetragon reports the probed file as
    ``/host<binaryPath>``, the probes as ``/proc/1/root<binaryPath>``. The operator's probe
    ConfigMap carries the root (rendered for real here), and the overlap takes both names."""
    from stellaops_runtime.contracts.crds import POLICY_KIND, parse_policy_spec
    from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent
    from stellaops_runtime.controller.render_policy import render_policy
    from stellaops_runtime.native.policy_config import merge_entries

    path = "/usr/lib/x86_64-linux-gnu/libz.so.1"

    def entry(root: str) -> dict[str, Any]:
        spec = {"podSelector": {}, "functions": [{"binaryPath": path, "symbols": ["crc32"]}],
                "tetragonHostRoot": root}  # fmt: skip
        r = render_policy(kind=POLICY_KIND, name="web", namespace="shop", uid="u1",
                          spec=parse_policy_spec(spec, cluster=False))  # fmt: skip
        assert r.tracing_policies[-1]["spec"]["uprobes"][0]["path"] == root + path  # what Tetragon reports
        return r.probe_entry

    def call(module: str) -> RuntimeCallEvent:
        return RuntimeCallEvent(EventKind.UPROBE, 150, "n", ProcessInfo(pid=1, binary="/bin/a"),
                                function_name="crc32", module=module)  # fmt: skip

    res = merge_entries(
        {"a": entry("/host"), "b": entry("/procRoot/1/root")}, NativeConfig(), host_root="/proc/1/root"
    )
    (t,) = res.config.uprobes
    loaded = Overlap.of(res.config, [f"uprobe {t.label()}"], since_ns=100, detached_ns=200)
    assert loaded is not None
    o = sl.decode(sl.encode(loaded.loads, (), "b1"), boot="b1", cut_ns=300)  # as a restarted agent reads it
    assert o is not None and o.counted_by_probes(call("/procRoot/1/root" + path))
    assert o.counted_by_probes(call("/host" + path)), "Tetragon's name of the probed file: counted twice"
    assert not o.counted_by_probes(call("/host/opt" + path)) and not o.counted_by_probes(
        call("/other" + path)
    )
    assert not any("tetragonHostRoot" in n for n in res.not_covered)  # the field is understood
    bad = {**entry("/host"), "tetragonHostRoot": "relative/x"}
    res = merge_entries({"a": bad}, NativeConfig(), host_root="/proc/1/root")
    assert res.config.uprobes and any("tetragonHostRoot" in n for n in res.not_covered)
