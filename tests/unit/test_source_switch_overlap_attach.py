"""The BCC-to-Tetragon overlap filter counts the probes' time from their attach, per run (RSW2, s41).

agent/source_switch_overlap.py skips Tetragon's cached events of calls the
probes counted. The probes count nothing before they attach (a load takes
seconds: BCC compiles), nothing between a run that failed and the native
source's own retry (native/source.py: detached, loaded again after
``native.retrySeconds``), and each run counts only what it attached. A
restarted agent's cut (agent/source_switch_loads.py) is the watch record's
moment, which for the probes must be a moment whose calls are all queued
(native/source.py ``queued_ns``: the start of the last poll queued whole)
whose drops are marked (native/source_gaps.py ``noted_ns``, as the
switch last took them), not the tick's clock. A skip of a call the probes did not count loses it.
The file is the last agent's only while this agent has not run the probes,
and what is no regular file there (a FIFO) does not hold the agent's start.
A node clock stepped back into the probes' time ends the filter.
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
from stellaops_runtime.contracts.events import ContainerInfo, EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.sources.queue import EventQueue
from tests.unit.test_source_switch_overlap import (
    CRC32,
    S,
    assert_counted_without,
    config,
    fake_probes,
    stamped,
)

AF, BG = UprobeTarget("/usr/lib/a.so", "f"), UprobeTarget("/usr/lib/b.so", "g")


def ev(target: UprobeTarget, t: int) -> RuntimeCallEvent:
    return RuntimeCallEvent(
        EventKind.UPROBE, t, "n", ProcessInfo(pid=1, binary="/bin/a"), function_name=target.symbol,
        module=target.binary,
    )  # fmt: skip


async def in_thread(fn: Any, *args: Any) -> Any:
    return fn(*args)


def switch(spool: str = "") -> SourceSwitch:
    cfg = config()
    if spool:
        cfg = dataclasses.replace(cfg, store=dataclasses.replace(cfg.store, spool_path=spool))
    return SourceSwitch(cfg, queue=EventQueue(100_000), pipeline=Pipeline(config(), node_name="n"),
                        in_pipeline=in_thread)  # fmt: skip


def on_bcc(
    spool: str, t0: int, *, queued_ns: int, noted_ns: int, in_flight_ns: int
) -> tuple[SourceSwitch, Any]:
    """Agent A on the native probes since t0 - 5 s (crc32's uprobe attached at t0 - 4 s), its probes
    read whole up to ``queued_ns``, noted up to ``noted_ns``, their oldest call in flight entered at
    ``in_flight_ns``; one BCC tick run: (A's switch, its probes)."""
    a = switch(spool)
    a._reload_check_at = a._next_check = float("inf")
    probes = fake_probes(0, [f"uprobe {CRC32.label()}"])
    probes.stats.connected, probes.stats.attached_ns = True, t0 - 4 * S
    probes.queued_ns, probes.noted_ns, probes.in_flight_ns = queued_ns, noted_ns, in_flight_ns
    a.bcc, a.mode, a._bcc_since_ns = probes, BCC, t0 - 5 * S
    a._boundary(BCC, NativeConfig(uprobes=(CRC32,)))
    asyncio.run(a._tick_bcc(time.monotonic()))
    return a, probes


def restarted(spool: str, alive: int, events: list[tuple[bytes, int, str]]) -> Pipeline:
    """Agent B, started on the node after A with A's watch record's moment ``alive`` and A's probe
    loads: Tetragon's cache sends it ``events``; what its pipeline counted."""
    b = switch(spool)
    b.resume_outage(alive)
    for payload, _, _ in events:
        b.queue.put(payload)
    while len(b.queue):
        b.process(b.queue.take(7))
    return b.pipeline


def switched_back(sw: SourceSwitch, now: int, *, detached_ns: int) -> SourceSwitch:
    """``sw`` after the switch to BCC at now - 40 s, the probes' attach of a:f at now - 30 s, their
    detach at ``detached_ns`` and the switch back."""
    probes = fake_probes(detached_ns, ["uprobe /usr/lib/a.so:f"])
    probes.stats.attached_ns = now - 30 * S
    sw.bcc, sw.mode, sw._bcc_since_ns = probes, BCC, now - 40 * S
    sw._boundary(BCC, NativeConfig(uprobes=(AF,)))

    async def back() -> None:
        await sw._to_tetragon()
        await sw._stop_active()

    asyncio.run(back())
    return sw


def test_calls_before_the_probes_attached_are_tetragons_alone() -> None:
    """The switch to BCC at -40 s, the probes attached at -30 s (the load compiled meanwhile),
    detached at -10 s. A cached call stamped at -35 s was counted by nobody else."""
    now = time.time_ns()
    sw = switched_back(switch(), now, detached_ns=now - 10 * S)
    o = sw._segments[-1].overlap
    assert o is not None and o.counted_by_probes(ev(AF, now - 20 * S))
    assert not o.counted_by_probes(ev(AF, now - 35 * S)), "a call before the attach was skipped: lost"


def test_a_reloads_new_probes_count_from_their_own_attach() -> None:
    """A reload (BCC to BCC) stops the old probes, then the new ones load and attach 5 s later:
    a cached call of a function only the new load attached, stamped in between, is Tetragon's."""
    now = time.time_ns()
    sw = switch()
    probes = fake_probes(0, ["uprobe /usr/lib/a.so:f"])
    probes.stats.attached_ns = now - 60 * S
    sw.bcc, sw.mode, sw._bcc_since_ns = probes, BCC, now - 70 * S
    sw._boundary(BCC, NativeConfig(uprobes=(AF,)))
    attach2: list[int] = []

    async def stop() -> None:
        probes.stats.detached_ns = time.time_ns()

    async def configure() -> NativeConfig:  # the new probes attach 5 s after they are configured
        attach2.append(time.time_ns() + 5 * S)
        probes.stats.attached, probes.stats.attached_ns = ["uprobe /usr/lib/b.so:g"], attach2[0]
        probes.stats.detached_ns = attach2[0] + 15 * S
        return NativeConfig(uprobes=(BG,))

    sw._configure = configure  # type: ignore[method-assign]
    sw._start = lambda run: None  # type: ignore[method-assign]
    probes.run = None

    async def run() -> None:
        sw._task = asyncio.ensure_future(stop())
        await sw._reload_bcc()
        await sw._to_tetragon()
        await sw._stop_active()

    asyncio.run(run())
    o = sw._segments[-1].overlap
    assert o is not None
    assert o.counted_by_probes(ev(AF, now - 30 * S)) and o.counted_by_probes(ev(BG, attach2[0] + 5 * S))
    assert not o.counted_by_probes(ev(BG, attach2[0] - 3 * S)), "a call before the new probes attached: lost"


def test_a_run_the_native_source_loaded_again_after_an_error_is_a_load_of_its_own() -> None:
    """The probes' reader failed (native/source.py: closed, loaded again after retrySeconds) and
    the second run attached another list. Run 1 counted a:f in its time, nobody counted anything
    between the runs, run 2 counted b:g in its time."""
    now = time.time_ns()
    sw = switch()
    sw._reload_check_at = sw._next_check = float("inf")
    probes = fake_probes(0, ["uprobe /usr/lib/a.so:f"])
    st = probes.stats
    sw.bcc, sw.mode, sw._bcc_since_ns = probes, BCC, now - 50 * S
    sw._boundary(BCC, NativeConfig(uprobes=(AF, BG)))

    async def run() -> None:
        st.connected, st.attached_ns = True, now - 40 * S
        await sw._tick_bcc(time.monotonic())
        st.connected, st.detached_ns = False, now - 30 * S  # the reader failed
        await sw._tick_bcc(time.monotonic())
        st.connected, st.attached_ns, st.detached_ns = True, now - 20 * S, 0  # loaded again
        st.attached = ["uprobe /usr/lib/b.so:g"]
        await sw._tick_bcc(time.monotonic())
        st.connected, st.detached_ns = False, now - 10 * S
        await sw._to_tetragon()
        await sw._stop_active()

    asyncio.run(run())
    o = sw._segments[-1].overlap
    assert o is not None
    assert o.counted_by_probes(ev(AF, now - 35 * S)), "run 1's call not skipped: counted twice"
    assert o.counted_by_probes(ev(BG, now - 15 * S))
    for target, t in ((BG, now - 35 * S), (AF, now - 25 * S), (BG, now - 25 * S), (AF, now - 15 * S)):
        assert not o.counted_by_probes(ev(target, t)), (target.symbol, (t - now) // S)


@pytest.mark.parametrize("queued_s, drops_s", [(10, 20), (10, 6)], ids=["unqueued", "drops_unmarked"])
def test_a_restarted_agent_counts_the_calls_its_predecessor_had_not_queued(
    tmp_path: Any, queued_s: int, drops_s: int
) -> None:
    """Agent A's probes last read their buffer whole from a poll started at t0 + 10 s; calls
    stamped after it were still in the kernel's buffer when A was killed, so A stored none of
    them. And A's switch had marked the kernel's drops as gaps only up to its last look at the
    probes' counters: a drop after it (t0 + 6 s in the second case) died with A, unmarked. Its
    watch record's moment (the switch's ``watching_ns``) must claim neither, or the next agent
    skips Tetragon's cached copies of those calls: their only count."""
    from stellaops_runtime.native.follow_files import Followed
    from stellaops_runtime.native.source import NativeProbeSource

    events = stamped()
    t0 = min(t for _, t, _ in events)
    queued = t0 + min(queued_s, drops_s) * S  # A counted and marked all before it
    spool = str(tmp_path / "spool")
    a = switch(spool)
    a._reload_check_at = a._next_check = float("inf")
    probes = fake_probes(0, [f"uprobe {CRC32.label()}"])
    probes.stats.connected, probes.stats.attached_ns = True, t0 - 4 * S
    probes.queued_ns = t0 + queued_s * S  # as native/source.py says it (checked below)
    probes.noted_ns = t0 + drops_s * S  # its drops up to here are noted (taken by the tick)
    probes.in_flight_ns = t0 + 30 * S  # no probed call was running (test_source_switch_overlap_periods.py)
    a.bcc, a.mode, a._bcc_since_ns = probes, BCC, t0 - 5 * S
    a._boundary(BCC, NativeConfig(uprobes=(CRC32,)))
    asyncio.run(a._tick_bcc(time.monotonic()))
    alive = a.watching_ns()  # what agent/watch_record.py samples and a flush records
    assert alive is not None  # then A is killed

    twice = [x for x in events if x[2] == "crc32" and x[1] < queued]
    assert 20 < len(twice) < len([x for x in events if x[2] == "crc32"])
    assert_counted_without(restarted(spool, alive, events), events, twice)
    real = NativeProbeSource(NativeConfig(), queue=EventQueue(10), kernel_source="")
    real._deliver([], t0 + queued_s * S)  # a poll started then queued all it read
    real._note_drops({}, t0 + drops_s * S)  # the counters read then
    real._note_followed(Followed(), t0 + drops_s * S)  # then its files looked at: none replaced
    assert (real.queued_ns, real.noted_ns) == (t0 + queued_s * S, t0 + drops_s * S)


def test_a_store_answer_after_the_switch_back_leaves_the_agents_own_overlap(tmp_path: Any) -> None:
    """The store answers (agent/watch_record_store.py ``_tell``: ``resume_outage``) only after
    this agent ran the probes and switched back: the file it keeps for a restart is its own, and
    the live filter is its own; neither is the last agent's to take."""
    now = time.time_ns()
    spool = str(tmp_path / "spool")
    sw = switched_back(switch(spool), now, detached_ns=now - 5 * S)
    sw.process([(b"", time.monotonic_ns())])  # a payload of the new stream: older segments dropped
    assert len(sw._segments) == 1
    own = sw._segments[0].overlap
    assert own is not None and os.path.exists(spool + ".probe-loads")
    sw.resume_outage(now - 3600 * S)  # the store's latest window of the node, an hour ago
    assert sw._segments[0].overlap is own
    assert os.path.exists(spool + ".probe-loads"), "kept for a restart within the cache's hold"


def test_a_fifo_at_the_probe_loads_path_does_not_hold_the_agents_start(tmp_path: Any) -> None:
    """The file is read as the agent is built (``resume_outage``): a FIFO nobody writes to there
    (hostile, or a mistake on the hostPath) must not block the start; it is no file of ours."""
    import threading

    from stellaops_runtime.agent import source_switch_loads as sl

    path = str(tmp_path / "spool.probe-loads")
    os.mkfifo(path)
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(sl.resumed(path, time.time_ns())), daemon=True)
    t.start()
    t.join(2.0)
    if t.is_alive():  # release the reader blocked in open() before failing
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        t.join(2.0)
        raise AssertionError("reading the probe loads waited for a writer of a FIFO")
    assert got == [None]


def test_a_clock_stepped_back_into_the_probes_time_ends_the_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The node's clock stepped back after the switch back (NTP, ``date -s``) and now reads inside
    the probes' watched time: a fresh call Tetragon stamps now was never the probes', and the
    filter cannot tell it from a cached one. It ends (a cached call may count twice, none is lost)."""
    from stellaops_runtime.adapter import from_proto
    from stellaops_runtime.agent.source_switch_overlap import Overlap

    events = stamped()
    t0 = min(t for _, t, _ in events)
    o = Overlap.of(NativeConfig(uprobes=(CRC32,)), [f"uprobe {CRC32.label()}"], since_ns=t0 - 5 * S,
                   detached_ns=t0 + 2 * S)  # fmt: skip
    assert o is not None
    fresh = next(x[0] for x in events if x[2] == "crc32")
    real = from_proto.adapt_payload

    def adapt(payload: bytes, received: int, stats: Any, depth: int = 0) -> Any:
        e = real(payload, received, stats, depth)
        if e is not None and payload == fresh:
            e.timestamp_ns = t0 + 1 * S  # stamped by the stepped-back clock
        return e

    monkeypatch.setattr(from_proto, "adapt_payload", adapt)
    monkeypatch.setattr(time, "time_ns", lambda: t0 + 1 * S + S // 10)  # before the detach
    assert o.keep([(fresh, 1)], 30 * S, 16) == [(fresh, 1)], "a fresh call was skipped: lost"
    assert not o.live and o.skipped == 0


def test_a_reload_that_attached_nothing_is_no_load() -> None:
    """A reload whose new probes never attached (a load error: native/source.py keeps the last
    attach list) counted nothing. Its targets' labels may be the old load's (a PURL target is
    ``/proc/self/fd/<n>``, and descriptor numbers are reused for another container's file):
    that list must not be read as the new load's, or the new file's calls are skipped."""
    now = time.time_ns()
    sw = switch()
    old = UprobeTarget(
        "/proc/self/fd/5", "f", module="/usr/lib/x.so", root="/proc/8/root", containers=("c8",)
    )
    new = UprobeTarget(
        "/proc/self/fd/5", "f", module="/usr/lib/y.so", root="/proc/9/root", containers=("c9",)
    )
    probes = fake_probes(0, [f"uprobe {old.label()}"])
    probes.stats.attached_ns = now - 60 * S
    sw.bcc, sw.mode, sw._bcc_since_ns = probes, BCC, now - 70 * S
    sw._boundary(BCC, NativeConfig(uprobes=(old,)))

    async def stop() -> None:
        probes.stats.detached_ns = time.time_ns() + 3 * S  # the old probes read their last records

    async def configure() -> NativeConfig:
        return NativeConfig(uprobes=(new,))  # ... and the new ones fail to load: nothing attached

    sw._configure = configure  # type: ignore[method-assign]
    sw._start = lambda run: None  # type: ignore[method-assign]
    probes.run = None

    async def run() -> None:
        sw._task = asyncio.ensure_future(stop())
        await sw._reload_bcc()
        await sw._to_tetragon()
        await sw._stop_active()

    asyncio.run(run())
    o = sw._segments[-1].overlap
    assert o is not None
    call = ev(UprobeTarget("/usr/lib/y.so", "f"), sw._load_since_ns + S)
    call.container = ContainerInfo(id="c9")
    assert not o.counted_by_probes(call), "the new file's call was skipped: lost"
    call = ev(UprobeTarget("/usr/lib/x.so", "f"), sw._load_since_ns + S)
    call.container = ContainerInfo(id="c8")
    assert o.counted_by_probes(call)  # the old probes ran until their detach
