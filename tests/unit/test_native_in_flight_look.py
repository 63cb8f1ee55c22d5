"""The look at the probed calls in flight is taken before a poll, never after it (RSW3, s42).

A uprobe call is recorded at its return, stamped at its entry. The watch
record's moment while the probes run (agent/source_switch_gaps.py
``watching_ns``) is no later than the start of the last poll queued whole
(``queued_ns``) nor than the entry of the oldest call still running at the last
look at the map of calls in flight (``in_flight_ns``, about once a second,
c22c98f). The look was taken after a poll: a call in flight as that poll began
and returned during it (its record written after the poll had emptied the
buffer) was neither in the map nor queued, yet both moments had passed its
entry until the next poll ended. An agent killed then never counted it, and the
next agent skipped Tetragon's copy as counted (agent/source_switch_loads.py): a
count lost. The look now precedes the poll it is taken with, and both moments
move together once that poll is queued. And the moment stops short of the
running call's entry by a margin: Tetragon's copy of that very call may be
stamped a hair earlier than ours.

Stand-ins for BCC: test_native_cut_read.py's buffer, with a map of calls in flight.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.source import NativeProbeSource
from stellaops_runtime.sources.queue import EventQueue
from tests.unit.test_native_cut_read import WAIT, _Probes, _until
from tests.unit.test_source_switch_overlap_attach import ev


class _InFlight(_Probes):
    """One call entered at the load; it returns while the first poll is held. Each poll, as it begins,
    checks what a watch record written then would claim against the records not queued yet."""

    def __init__(self) -> None:
        super().__init__()
        self.src: NativeProbeSource | None = None
        self.entry_mono = 0  # the call's entry (bpf_ktime_get_ns: monotonic), set at the load
        self.entry_wall = 0
        self.running = False
        self.polls = 0
        self.claimed_past: list[tuple[int, int]] = []  # (claim, entry) of a record not queued

    def oldest_in_flight(self, alive: Any) -> int | None:
        return self.entry_mono if self.running else None

    def poll(self, timeout_ms: int) -> list[bytes]:
        src = self.src
        assert src is not None
        with self.lock:
            waiting = bool(self.buffer)
        claim = min(src.queued_ns, src.in_flight_ns)
        if waiting and claim > self.entry_wall:
            self.claimed_past.append((claim, self.entry_wall))
        self.polls += 1
        return super().poll(timeout_ms)

    def returns(self) -> None:
        """The call returns: its record (stamped at its entry) written, its map entry gone."""
        self.write(b"call")
        self.running = False


def test_a_call_returning_during_a_poll_is_not_claimed_before_it_is_queued() -> None:
    probes = _InFlight()
    queue = EventQueue(10_000)
    src = NativeProbeSource(NativeConfig(), queue=queue, kernel_source="", retry_seconds=WAIT)
    probes.src = src

    def load() -> Any:
        probes.entry_mono, probes.entry_wall = time.monotonic_ns(), time.time_ns()
        probes.running = True  # entered once the probes attached, still running
        probes.hold_poll = True  # the reader's first poll empties the buffer, then waits
        return probes

    src._load = load  # type: ignore[method-assign]

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(src.run(stop))
        await _until(probes.held.is_set, "the first poll")
        probes.returns()  # after that poll took the buffer: the next one reads the record
        probes.release.set()
        await _until(lambda: len(queue) >= 1 and probes.polls >= 3, "the call's record")
        stop.set()
        await asyncio.wait_for(task, WAIT)

    asyncio.run(main())
    assert [p for p, _ in queue.take(len(queue))] == [b"call"]
    assert probes.claimed_past == [], "a watch record then would claim past the entry of a call not queued"


def test_tetragons_copy_of_the_running_call_is_not_cut_by_a_hair(tmp_path: Any) -> None:
    """The cut lands on the running call's own entry, and the two stamps of that call are not one
    reading: Tetragon's uprobe and ours fire one after the other, and each side turns the kernel's
    monotonic time into the wall clock with its own pair of clock reads (slewed by NTP meanwhile).
    Tetragon's copy stamped a few microseconds before our entry fell inside the killed agent's
    load and was skipped: the very call the cap (c22c98f) was for, lost. The cap keeps a margin
    (``IN_FLIGHT_SLACK_NS``): a call the killed agent stored in it may count twice."""
    from types import SimpleNamespace

    from stellaops_runtime.agent.source_switch import BCC
    from stellaops_runtime.native.loader import ProbeSet
    from tests.unit.test_source_switch_overlap import CRC32, S, fake_probes
    from tests.unit.test_source_switch_overlap_attach import switch

    entry = SimpleNamespace(pid_tgid=7 << 32 | 8), SimpleNamespace(ts=time.monotonic_ns() - 2 * S)
    table = {b"stella_up_starts": SimpleNamespace(iteritems=lambda: iter([entry]))}
    ps = ProbeSet(table, NativeConfig(uprobes=(CRC32,)), False)
    real = NativeProbeSource(NativeConfig(), queue=EventQueue(10), kernel_source="")
    real.procs = SimpleNamespace(thread_since=lambda pid, tid, ts: True)  # type: ignore[assignment]
    now = time.time_ns()
    entered = now - 2 * S  # our entry on the wall clock, to the reads' precision
    spool = str(tmp_path / "spool")
    a = switch(spool)
    a._reload_check_at = a._next_check = float("inf")
    probes = fake_probes(0, [f"uprobe {CRC32.label()}"])
    probes.stats.connected, probes.stats.attached_ns = True, now - 60 * S
    probes.queued_ns = probes.noted_ns = now
    probes.in_flight_ns = real._in_flight_since(ps)  # as native/source.py takes it
    a.bcc, a.mode, a._bcc_since_ns = probes, BCC, now - 70 * S
    a._boundary(BCC, NativeConfig(uprobes=(CRC32,)))
    asyncio.run(a._tick_bcc(time.monotonic()))
    alive = a.watching_ns()
    assert alive is not None and alive <= entered + S // 100  # held at the running call (then killed)

    b = switch(spool)
    b.resume_outage(alive)
    o = b._segments[0].overlap
    assert o is not None and o.counted_by_probes(ev(CRC32, entered - 10 * S))  # stored by A: skipped
    looked, mono = time.time_ns(), time.monotonic_ns()
    ours = entry[1].ts + looked - mono  # our entry on the wall clock (sub-microsecond reads)
    copy = ev(CRC32, ours - 5_000)  # Tetragon's uprobe fired 5 us before ours
    assert not o.counted_by_probes(copy), "Tetragon's copy of the running call skipped: its only count"


class _BCCTable:
    """BCC's hash table as bcc/table.py's TableBase reads it: ``iteritems`` a key at a time (two
    system calls each), ``items`` the list of all of them first. Counts the entries read."""

    def __init__(self, n: int) -> None:
        from types import SimpleNamespace

        self.entries = [
            (SimpleNamespace(pid_tgid=i << 32 | i), SimpleNamespace(ts=i)) for i in range(1, n + 1)
        ]
        self.read = 0

    def iteritems(self) -> Any:
        for e in self.entries:
            self.read += 1
            yield e

    def items(self) -> list[Any]:
        return list(self.iteritems())


def test_the_look_reads_at_most_its_limit_of_the_map() -> None:
    """The map of calls in flight is an LRU of 65,536 entries, and those of threads that never
    returned (exited inside a probed call) stay in it. The look each second reads at most
    ``IN_FLIGHT_LIMIT`` + 1 of them on the probes' thread, which meanwhile reads no record: the
    whole map read each second was a thread that fell behind the kernel's buffer (its drops)."""
    from stellaops_runtime.native.loader import IN_FLIGHT_LIMIT, ProbeSet
    from tests.unit.test_source_switch_overlap import CRC32

    table = _BCCTable(20_000)
    ps = ProbeSet({b"stella_up_starts": table}, NativeConfig(uprobes=(CRC32,)), False)
    assert ps.oldest_in_flight(lambda pid, tid, ts: False) == 0  # too many to look at: any since the load
    assert table.read <= IN_FLIGHT_LIMIT + 1, f"{table.read} entries read for a look"
    small = _BCCTable(3)
    ps = ProbeSet({b"stella_up_starts": small}, NativeConfig(uprobes=(CRC32,)), False)
    assert ps.oldest_in_flight(lambda pid, tid, ts: ts >= 2) == 2  # the oldest of a live thread
