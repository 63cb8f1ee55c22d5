"""A record left by an agent killed after its first drain: the next agent resumes it, lines in doubt a gap.

Defect (s46/er, a CI run under load: tests/e2e/test_export_resume.py::
test_sigkill_while_lines_arrive_and_flushes_run): an agent that had written no record yet kept with
its first in-flight entry the moment "now", read just after that entry's own moment (or its first
watching sample, taken after the lines it had read). The next agent found the in-flight moment
before the record's, called the record "not well formed" and read the file from its end: the lines
of that drain, stored or not, were a gap of no time (the hole started after them) and the lines
after them were never read. Now the writer keeps the agent's start with such an entry (before any
line it read), and the reader, given a record whose in-flight moment precedes its own (written by
an agent before this fix), resumes at the in-flight checkpoint (never a line twice) with the gap
from the node's boot (the lines in doubt, whenever written on this boot, inside it). An agent
that resumed a record of another boot keeps the node's boot with its first entry (the hole since
then is not stored yet either).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from stellaops_runtime.agent import watch_record as wr
from stellaops_runtime.agent.export_resume import resume_export
from stellaops_runtime.hotsymbols.clock_span import boot_ns, now_pair
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_export import TetragonExportSource

LINES = b'{"a":1}\n{"b":2}\n'


async def _until(cond, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


def _source(path: Path, q: EventQueue, *, from_start: bool = True) -> TetragonExportSource:
    return TetragonExportSource(str(path), queue=q, from_start=from_start, poll_interval=0.005)


async def _killed_after_first_drain(tmp_path: Path, *, ticked: bool) -> tuple[Path, int]:
    """Agent A as the agent runs it (its record attached, the file followed, the marker's tick if
    ``ticked``) until its first drain's in-flight entry is on disk: then SIGKILL. Returns the
    record's path and a wall moment before A's lines were written."""
    log, rec = tmp_path / "tetragon.log", tmp_path / "spool.jsonl.alive"
    log.write_bytes(b"")
    q = EventQueue(100)
    src = _source(log, q, from_start=False)  # the file is empty: read from its start all the same
    a = wr.WatchRecord(str(rec), node="n", agent_id="n/a", queue=q)
    a.resume(src)  # the node's first agent: no record
    a.source = src
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await _until(lambda: src.stats.connected)
        before = time.time_ns()
        with log.open("ab") as f:
            f.write(LINES)
        await _until(lambda: q.enqueued == 2)
        if ticked:  # the watching moment sampled once the lines are queued (a tick comes about each second)
            await _until(lambda: (src.watching_ns() or 0) > before)
            a.tick(src)
        assert q.take(2)  # the pipeline took them
        a.flush_starts()
        assert a.drain_starts()  # the drain's in-flight entry is on disk: A is killed here
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    return rec, before


async def test_after_a_reboot_a_first_drain_keeps_the_boot_as_the_records_moment(tmp_path: Path) -> None:
    """B starts after a node reboot (the last record is of another boot, its moment no time of this
    boot): its first in-flight entry is kept with the node's boot, not B's start, so were B killed
    before its first flush stored the hole, the next agent's gap still holds it all."""
    log, rec = tmp_path / "tetragon.log", tmp_path / "spool.jsonl.alive"
    log.write_bytes(LINES)
    wall, boot = now_pair()
    wr.write_record(str(rec), "n", "n/a", wall - 10**9, boot - 10**9)
    raw = json.loads(rec.read_bytes())
    rec.write_text(json.dumps({**raw, "boot_id": "another-boot"}))
    q = EventQueue(100)
    src = _source(log, q, from_start=False)
    b = wr.WatchRecord(str(rec), node="n", agent_id="n/b", queue=q)
    b.resume(src)
    with log.open("rb") as f:
        src.positions.opened(f)  # as the source does when it opens the file
    q.put(b"x")
    src.positions.queued(len(LINES))
    assert q.take(1)
    b.flush_starts()
    assert b.drain_starts()
    on_disk = json.loads(rec.read_bytes())
    assert on_disk["boot_ns"] == 0 and on_disk["alive_ns"] <= time.time_ns() - boot_ns() + 10**9


async def _resumed_by_b(tmp_path: Path, rec: Path) -> TetragonExportSource:
    src = _source(tmp_path / "tetragon.log", EventQueue(100))
    b = wr.WatchRecord(str(rec), node="n", agent_id="n/b", queue=EventQueue(100))
    b.resume(src)
    return src


@pytest.mark.parametrize("ticked", [False, True], ids=["no-sample", "sampled"])
async def test_a_record_of_a_first_drain_is_resumed_with_its_lines_in_doubt_a_gap(
    tmp_path: Path, caplog, ticked: bool
) -> None:
    rec, before = await _killed_after_first_drain(tmp_path, ticked=ticked)
    src = await _resumed_by_b(tmp_path, rec)
    assert "not well formed" not in caplog.text
    assert src._resume is not None  # resumed at the in-flight checkpoint: none read twice
    cp, moment = src._resume
    assert cp["pos"] == len(LINES) and moment is not None
    # the hole reaches back before A's lines: were their counts never stored, they are a gap
    assert src._outage.start is not None and src._outage.start <= before


CP = {"path_sha256": "0" * 64, "dev": 1, "ino": 2, "pos": 10, "head_len": 10, "head_sha256": "ab"}


class _Source:
    def __init__(self) -> None:
        self.handed: list[tuple[dict, tuple[int, int] | None]] = []
        self.outages: list[tuple[int, int | None]] = []

    def resume_checkpoint(self, cp: dict, moment: tuple[int, int] | None) -> None:
        self.handed.append((cp, moment))

    def resume_outage(self, wall: int, boot: int | None) -> None:
        self.outages.append((wall, boot))


def test_an_in_flight_moment_before_the_records_resumes_there_with_the_gap_from_the_boot() -> None:
    """A record an agent before this fix left (its in-flight moment before its own): the lines up to
    the in-flight checkpoint may be stored, so it is resumed there; the record's moment says nothing
    of when the lines in doubt were written, so the gap starts at the node's boot."""
    wall, boot = now_pair()
    inf = {"checkpoint": {**CP, "pos": 20}, "at_ns": wall - 10**6, "at_boot": boot - 10**6}
    for committed in (None, CP):
        s = _Source()
        assert resume_export(s, {"committed": committed, "in_flight": inf}, (wall, boot))
        assert s.handed == [({**CP, "pos": 20}, (wall - 10**6, boot - 10**6))]
        assert len(s.outages) == 1 and s.outages[0][1] == 0
        assert abs(s.outages[0][0] - (time.time_ns() - boot_ns())) < 10**9  # the node's boot


def test_a_record_not_resumed_widens_its_gap_only_when_its_moment_is_no_stored_claim(caplog) -> None:
    """Nothing says where the stored counts end: the file is not resumed. The record's moment still
    starts the gap (every line written before it is stored) unless an in-flight moment before it,
    or none readable, says it was no stored claim: then the gap starts at the node's boot. (An
    older agent's checkpoint format, with a sane moment, must not turn an upgrade into a gap
    since every node's boot.)"""
    wall, boot = now_pair()
    old_format = {"path": "/run/t.log", "dev": 1, "ino": 2, "pos": 10, "head_len": 10, "head_sha256": "ab"}
    keeps = [
        {"committed": {**CP, "pos": "x"}, "in_flight": None},
        {"committed": old_format, "in_flight": None},
        {"committed": CP, "in_flight": {"checkpoint": old_format, "at_ns": wall + 1, "at_boot": boot + 1}},
    ]
    widens = [
        {"committed": CP, "in_flight": {"checkpoint": old_format, "at_ns": "x", "at_boot": boot}},
        {"committed": CP, "in_flight": {"checkpoint": old_format, "at_ns": wall - 1, "at_boot": boot - 1}},
        {"committed": CP, "in_flight": "x"},
    ]
    for doc in keeps + widens:
        s = _Source()
        assert not resume_export(s, doc, (wall, boot))
        assert s.handed == [] and "not well formed" in caplog.text
        assert [o[1] for o in s.outages] == ([0] if doc in widens else []), doc


def test_a_checkpoint_in_flight_with_an_unusable_moment_is_resumed_until_now_with_the_gap_from_the_boot(
    caplog,
) -> None:
    """Only the in-flight checkpoint is well formed: it still says where the stored counts may end
    (none past it), so the file is resumed there rather than read from its end; nothing says when
    the lines in doubt were written, so the gap is the node's boot until now."""
    wall, boot = now_pair()
    inf = {"checkpoint": {**CP, "pos": 20}, "at_ns": "50", "at_boot": boot}
    for committed in (None, CP, {**CP, "pos": "x"}):
        s = _Source()
        assert resume_export(s, {"committed": committed, "in_flight": inf}, (wall, boot))
        [(cp, moment)] = s.handed
        assert cp == {**CP, "pos": 20} and moment is not None and moment[0] >= wall
        assert len(s.outages) == 1 and s.outages[0][1] == 0
    s = _Source()  # a sane moment after the record's: only the committed checkpoint was malformed
    sane = {**inf, "at_ns": wall + 1, "at_boot": boot + 1}
    assert resume_export(s, {"committed": {**CP, "pos": "x"}, "in_flight": sane}, (wall, boot))
    assert s.handed == [({**CP, "pos": 20}, (wall + 1, boot + 1))] and s.outages == []
    s = _Source()  # in flight ahead of the boot clock: not a moment of this boot either
    ahead = {**inf, "at_ns": wall, "at_boot": 10**18}
    assert resume_export(s, {"committed": CP, "in_flight": ahead}, (wall, boot))
    assert s.handed[0][0] == {**CP, "pos": 20} and s.outages[0][1] == 0


def test_a_wall_clock_stepped_back_before_the_in_flight_entry_keeps_the_gap_from_the_records_moment() -> None:
    """(review RER) NTP stepped the wall clock back between the record's moment and its in-flight
    entry, the boot clock moving on: a healthy agent's record, its moment a stored claim (the entry is
    later on the boot clock). It is resumed at the in-flight checkpoint with the gap ending there, and
    that gap must not widen to the node's boot (a plain restart after a clock step would otherwise
    mark the node's whole uptime unwatched)."""
    wall, boot = now_pair()
    inf = {"checkpoint": {**CP, "pos": 20}, "at_ns": wall - 2 * 10**9, "at_boot": boot - 10**6}
    s = _Source()
    assert resume_export(s, {"committed": CP, "in_flight": inf}, (wall - 10**9, boot - 2 * 10**6))
    assert s.handed == [({**CP, "pos": 20}, (wall - 2 * 10**9, boot - 10**6))]
    assert s.outages == []


async def test_a_healthy_agent_killed_after_a_stored_flush_leaves_the_gap_from_its_stored_moment(
    tmp_path: Path,
) -> None:
    """(review RER) A plain restart: A resumed its predecessor's hole, stored a flush through a
    watching moment, then drained again (its in-flight entry on disk) and was killed. B resumes at
    that entry's checkpoint with the gap from A's stored moment: not A's start or its predecessor's
    moment (too early), and not the node's boot (reserved for records that cannot say)."""
    log, rec = tmp_path / "tetragon.log", tmp_path / "spool.jsonl.alive"
    log.write_bytes(b"")
    wall, boot = now_pair()
    wr.write_record(str(rec), "n", "n/0", wall - 10**9, boot - 10**9)  # A's predecessor, this boot
    q = EventQueue(100)
    src = _source(log, q, from_start=False)
    a = wr.WatchRecord(str(rec), node="n", agent_id="n/a", queue=q)
    a.resume(src)
    a.source = src
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await _until(lambda: src.stats.connected)
        with log.open("ab") as f:
            f.write(LINES)
        await _until(lambda: q.enqueued == 2)
        stored_from = time.time_ns()
        await _until(lambda: (src.watching_ns() or 0) > stored_from)
        a.tick(src)
        assert q.take(2)
        taken = a.flush_starts()
        assert a.drain_starts()
        a.flushed(taken, True)  # the flush stored everything: its moment is written
        written = json.loads(rec.read_bytes())
        assert written["alive_ns"] > stored_from and written["export"]["in_flight"] is None
        with log.open("ab") as f:
            f.write(LINES)
        await _until(lambda: q.enqueued == 4)
        assert q.take(2)
        assert a.drain_starts()  # an early drain's entry on disk: A is killed here
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    doc = json.loads(rec.read_bytes())
    inf = doc["export"]["in_flight"]
    s = _Source()
    b = wr.WatchRecord(str(rec), node="n", agent_id="n/b", queue=EventQueue(100))
    assert b.resume(s) == written["alive_ns"]
    assert s.outages == [(written["alive_ns"], written["boot_ns"])]
    assert s.handed == [(inf["checkpoint"], (inf["at_ns"], inf["at_boot"]))]
    assert inf["checkpoint"]["pos"] == 2 * len(LINES)
