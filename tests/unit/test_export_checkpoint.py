"""The export follower's checkpoints: where the queued lines end, and whether a file is still the same.

(s32/h2) A restarted export agent resumes at the last agent's checkpoint instead of counting the
file again from its start (tests/e2e/test_export_resume.py runs real agents); these are the pieces.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.agent.export_resume import ExportResume, resume_export
from stellaops_runtime.sources.export_checkpoint import ExportPositions, matches, path_hash, valid
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_export import TetragonExportSource


async def _until(cond, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


async def _read_all(src: TetragonExportSource, q: EventQueue, n: int) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await _until(lambda: q.enqueued == n)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def _two_lines_counted(path: Path) -> dict[str, Any]:
    """The checkpoint of an agent that read and counted the two lines of the file at ``path``."""
    q = EventQueue(100)
    first = TetragonExportSource(str(path), queue=q, from_start=True, poll_interval=0.01)
    await _read_all(first, q, 2)
    q.take(2)
    cp = first.positions.checkpoint(2)
    assert cp is not None
    return cp


async def test_the_checkpoint_of_a_count_is_where_that_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "t.log"
    path.write_bytes(b'{"a":1}\n\n{"b":22}\n{"c":333}\n')
    q = EventQueue(100)
    src = TetragonExportSource(str(path), queue=q, from_start=True, poll_interval=0.01)
    await _read_all(src, q, 3)
    assert q.take(2)  # the consumer took two lines
    cp = src.positions.checkpoint(2)
    assert cp is not None and cp["pos"] == len(b'{"a":1}\n\n{"b":22}\n')
    head = path.read_bytes()[: cp["pos"]]
    assert (cp["head_len"], cp["head_sha256"]) == (len(head), hashlib.sha256(head).hexdigest())
    assert valid(cp) == cp
    with path.open("rb") as f:
        assert matches(f, cp) == ""
    assert src.positions.checkpoint(3)["pos"] == path.stat().st_size  # type: ignore[index]


def test_marks_stay_bounded_by_the_lines_not_taken(tmp_path: Path) -> None:
    path = tmp_path / "t.log"
    path.write_bytes(b"x\n" * 10)
    q = EventQueue(10_000)
    pos = ExportPositions(str(path), q)
    with path.open("rb") as f:
        pos.opened(f)
    for i in range(5000):
        q.put(b"x")
        pos.queued(2 * (i + 1))
        q.take(1)
    assert len(pos._marks) <= 2
    assert pos.checkpoint(5000)["pos"] == 10_000  # type: ignore[index]


@pytest.mark.parametrize("how", ["rotated", "truncated", "rewritten"])
def test_a_file_changed_under_the_checkpoint_does_not_match(tmp_path: Path, how: str) -> None:
    path = tmp_path / "t.log"
    path.write_bytes(b'{"first":1}\n{"second":2}\n')
    q = EventQueue(10)
    pos = ExportPositions(str(path), q)
    with path.open("rb") as f:
        pos.opened(f)
        f.seek(0, 2)
        pos.read(f)
    q.put(b"x")
    pos.queued(12)
    cp = pos.checkpoint(1)
    assert cp is not None
    if how == "rotated":
        path.rename(tmp_path / "t.log.1")
        path.write_bytes(b'{"first":1}\n{"second":2}\n')
    elif how == "truncated":
        with path.open("r+b") as f:
            f.truncate(5)
    else:
        with path.open("r+b") as f:
            f.write(b'{"FIRST":1}\n{"other":3}\n')
    with path.open("rb") as f:
        why = matches(f, cp)
    assert why and {"rotated": "another file", "truncated": "shorter", "rewritten": "first bytes"}[how] in why


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        {"path": "p"},
        {"path": "p", "dev": 1, "ino": 2, "pos": -1, "head_len": 0, "head_sha256": ""},
        {"path": "p", "dev": 1, "ino": 2, "pos": 3, "head_len": 4, "head_sha256": ""},
        {"path": "p", "dev": True, "ino": 2, "pos": 3, "head_len": 3, "head_sha256": ""},
    ],
)
def test_a_malformed_checkpoint_is_not_used(bad: object) -> None:
    assert valid(bad) is None


class _Source:
    def __init__(self) -> None:
        self.handed: list[tuple[dict, tuple[int, int] | None]] = []

    def resume_checkpoint(self, cp: dict, moment: tuple[int, int] | None) -> None:
        self.handed.append((cp, moment))


CP = {"path_sha256": "0" * 64, "dev": 1, "ino": 2, "pos": 10, "head_len": 10, "head_sha256": "ab"}


def test_resume_prefers_the_checkpoint_in_flight_and_ends_the_gap_at_its_moment() -> None:
    s = _Source()
    doc = {
        "committed": CP,
        "in_flight": {"checkpoint": {**CP, "pos": 20, "head_len": 10}, "at_ns": 50, "at_boot": 1},
    }
    assert resume_export(s, doc, (40, 0))
    assert s.handed == [({**CP, "pos": 20}, (50, 1))]
    s2 = _Source()
    assert resume_export(s2, {"committed": CP, "in_flight": None}, (40, 0))
    assert s2.handed == [(CP, (40, 0))]  # nothing in doubt: the gap ends where it starts


@pytest.mark.parametrize(
    "doc",
    [
        # (an in-flight moment unreadable, or before the record's: resumed at the checkpoint in
        # flight, the gap from the node's boot: test_export_resume_first_drain.py)
        {"committed": {**CP, "pos": "x"}, "in_flight": None},
        {"committed": CP},
        "export",
    ],
)
def test_resume_uses_no_checkpoint_of_a_malformed_record(doc: object, caplog) -> None:
    s = _Source()
    assert not resume_export(s, doc, (40, 0))
    assert s.handed == [] and "not well formed" in caplog.text


def test_another_boot_uses_no_checkpoint_as_a_time() -> None:
    """A record of this boot without its boot-clock moment: nothing is handed."""
    s = _Source()
    assert not resume_export(s, {"committed": CP, "in_flight": None}, (40, None))
    assert s.handed == []


def test_another_boots_checkpoint_positions_the_file_and_keeps_the_gap() -> None:
    """s33/h3: after a reboot the checkpoint still says where the counted lines end (the file may
    be kept on a persistent hostPath); it is handed without a moment (the gap stays whole)."""
    s = _Source()
    doc = {
        "committed": CP,
        "in_flight": {"checkpoint": {**CP, "pos": 20}, "at_ns": 50, "at_boot": 10**18},
    }
    assert resume_export(s, doc, (40, None), timed=False)
    assert s.handed == [({**CP, "pos": 20}, None)]  # the furthest position that may be stored
    s2 = _Source()
    assert resume_export(s2, {"committed": CP, "in_flight": None}, (40, None), timed=False)
    assert s2.handed == [(CP, None)]


def _drain(r: ExportResume) -> bool:
    """A drain as the agent runs it: its in-flight entry recorded (the write succeeded)."""
    entry = r.drain_starts()
    r.recorded(entry)
    return entry is not None


def test_in_flight_is_recorded_before_a_drain_and_committed_after_its_flush(tmp_path: Path) -> None:
    path = tmp_path / "t.log"
    path.write_bytes(b"a\nb\nc\n")
    q = EventQueue(10)
    pos = ExportPositions(str(path), q)
    with path.open("rb") as f:
        pos.opened(f)
    r = ExportResume(q)
    r.positions = pos
    for end in (2, 4):
        q.put(b"x")
        pos.queued(end)
    q.take(2)
    r.flush_starts(2)
    assert _drain(r) and r.in_flight is not None and r.in_flight["checkpoint"]["pos"] == 4
    assert not _drain(r)  # the same position: nothing new to record
    q.put(b"x")
    pos.queued(6)
    q.take(1)
    assert _drain(r)  # an early drain while the flush runs: further in flight
    assert r.flushed(2, True) and r.committed is not None and r.committed["pos"] == 4
    assert r.in_flight is not None and r.in_flight["checkpoint"]["pos"] == 6  # still in doubt
    r.flush_starts(3)
    assert not r.flushed(3, False)  # a failed flush commits nothing
    assert r.final() and r.committed["pos"] == 6 and r.in_flight is None


def test_a_held_drain_commits_nothing_until_one_is_recorded(tmp_path: Path) -> None:
    """s33/h3: a drain whose in-flight entry could not be written is held; the flush it belonged
    to commits nothing, nor does a shutdown while one is held."""
    path = tmp_path / "t.log"
    path.write_bytes(b"a\nb\n")
    q = EventQueue(10)
    pos = ExportPositions(str(path), q)
    with path.open("rb") as f:
        pos.opened(f)
    r = ExportResume(q)
    r.positions = pos
    q.put(b"x")
    pos.queued(2)
    q.take(1)
    r.flush_starts(1)
    assert r.drain_starts() is not None
    r.drain_held()  # the record could not be written
    assert r.in_flight is None and r.held == 1 and r.holds == 1
    assert not r.flushed(1, True)  # the flush stored nothing of those lines
    assert r.committed is None and not r.final()  # held counts were never stored
    r.flush_starts(1)
    assert _drain(r) and r.held == 0  # written now: the drain goes
    assert r.flushed(1, True) and r.committed is not None and r.committed["pos"] == 2


async def test_a_source_resumes_at_a_matching_checkpoint_without_a_gap(tmp_path: Path) -> None:
    path = tmp_path / "t.log"
    path.write_bytes(b'{"old":1}\n{"old":2}\n')
    cp = await _two_lines_counted(path)
    with path.open("ab") as f:
        f.write(b'{"new":3}\n')
    q2 = EventQueue(100)
    src = TetragonExportSource(str(path), queue=q2, from_start=True, poll_interval=0.01)
    src.resume_outage(1_000, None)
    src.resume_checkpoint(cp, (1_000, 0))
    await _read_all(src, q2, 1)
    assert [p for p, _ in q2.take(10)] == [b'{"new":3}'] and src.stats.resumed_at == cp["pos"]
    assert src.take_outage() is None  # nothing was in doubt: no gap


async def test_a_source_whose_file_changed_reads_it_whole_and_keeps_the_gap(tmp_path: Path, caplog) -> None:
    path = tmp_path / "t.log"
    path.write_bytes(b'{"old":1}\n')
    cp = {
        "path_sha256": path_hash(str(path)),
        "dev": 0,
        "ino": 0,
        "pos": 10,
        "head_len": 10,
        "head_sha256": "00",
    }
    q = EventQueue(100)
    src = TetragonExportSource(str(path), queue=q, from_start=True, poll_interval=0.01)
    src.resume_outage(1_000, None)
    src.resume_checkpoint(cp, (1_000, 0))
    await _read_all(src, q, 1)
    assert src.stats.resumed_at == -1 and "not resumed" in caplog.text
    gap = src.take_outage()
    assert gap is not None and gap[0] == 1_000


def test_a_record_with_the_checkpoints_of_a_long_path_stays_within_its_bound(tmp_path: Path) -> None:
    """The record is at most 4 KiB (agent/watch_record.py ignores a larger one, and with it the
    restart gap): the checkpoints keep the followed path as a hash, whatever its length."""
    from stellaops_runtime.agent import watch_record as wr

    long = tmp_path.joinpath(*(c * 200 for c in "abcdefghijkl"), "t.log")  # 2,400+ bytes
    long.parent.mkdir(parents=True)
    long.write_bytes(b"x\n")
    q = EventQueue(10)
    pos = ExportPositions(str(long), q)
    with long.open("rb") as f:
        pos.opened(f)
    q.put(b"x")
    pos.queued(2)
    cp = pos.checkpoint(1)
    doc = {"committed": cp, "in_flight": {"checkpoint": cp, "at_ns": 2, "at_boot": 1}}
    rec = tmp_path / "spool.alive"
    wr.write_record(str(rec), "n", "n/1", 1, 0, doc)
    assert len(rec.read_bytes()) <= wr.MAX_RECORD_BYTES


def test_a_checkpoint_of_another_boot_allows_a_new_device_number_only(tmp_path: Path) -> None:
    """After a reboot a btrfs or overlay mount may number its device anew: the inode and the
    first bytes still decide."""
    path = tmp_path / "t.log"
    path.write_bytes(b'{"a":1}\n')
    st = path.stat()
    head = path.read_bytes()
    cp = {
        "path_sha256": path_hash(str(path)),
        "dev": st.st_dev + 1,
        "ino": st.st_ino,
        "pos": len(head),
        "head_len": len(head),
        "head_sha256": hashlib.sha256(head).hexdigest(),
    }
    with path.open("rb") as f:
        assert "another file" in matches(f, cp)  # this boot: the device must match
        assert matches(f, cp, same_dev=False) == ""
        assert "another file" in matches(f, {**cp, "ino": st.st_ino + 1}, same_dev=False)
        assert "first bytes" in matches(f, {**cp, "head_sha256": "00"}, same_dev=False)


def test_a_record_of_another_boot_keeps_its_checkpoints_for_positioning(tmp_path: Path) -> None:
    from stellaops_runtime.agent import watch_record as wr

    rec = tmp_path / "spool.alive"
    now = time.time_ns()
    doc = {"committed": CP, "in_flight": None}
    wr.write_record(str(rec), "n", "n/1", now - 10**9, 5, doc)
    same = wr.read_record(str(rec), node="n", now_ns=now)
    assert same.export == doc and same.export_timed
    raw = json.loads(rec.read_bytes())
    rec.write_text(json.dumps({**raw, "boot_id": "another-boot"}))
    other = wr.read_record(str(rec), node="n", now_ns=now)
    assert other.export == doc and not other.export_timed and other.boot_ns is None


def test_a_record_further_ahead_than_any_clock_step_keeps_its_checkpoints_for_positioning(
    tmp_path: Path,
) -> None:
    """The clock was set back more than a day since (this boot): the record's time says nothing,
    but its checkpoint still says where the counted lines end (else exportFromStart re-reads)."""
    from stellaops_runtime.agent import watch_record as wr

    rec = tmp_path / "spool.alive"
    now = time.time_ns()
    doc = {"committed": CP, "in_flight": None}
    wr.write_record(str(rec), "n", "n/1", now + 2 * 86_400 * 10**9, 5, doc)
    hole = wr.read_record(str(rec), node="n", now_ns=now)
    assert hole.export == doc and not hole.export_timed and hole.alive_ns <= now


def test_a_drain_is_held_while_the_record_cannot_be_written(tmp_path: Path) -> None:
    """s33/h3: the in-flight entry is written durably before the drain goes; a record whose
    directory is gone holds the drain (False), and the next drain after it is back goes."""
    from stellaops_runtime.agent import watch_record as wr

    path = tmp_path / "t.log"
    path.write_bytes(b"a\nb\n")
    d = tmp_path / "node"
    d.mkdir()
    q = EventQueue(10)
    pos = ExportPositions(str(path), q)
    with path.open("rb") as f:
        pos.opened(f)
    rec = wr.WatchRecord(str(d / "spool.alive"), node="n", agent_id="n/1", queue=q)
    rec.export.positions = pos
    q.put(b"x")
    pos.queued(2)
    q.take(1)
    d.rename(tmp_path / "away")
    assert not rec.drain_starts() and rec.export.held == 1 and rec.write_errors == 1
    assert rec.export.in_flight is None
    (tmp_path / "away").rename(d)
    assert rec.drain_starts() and rec.export.held == 0
    on_disk = json.loads((d / "spool.alive").read_bytes())["export"]["in_flight"]["checkpoint"]
    assert on_disk["pos"] == 2


def test_a_durable_record_write_syncs_the_file_and_its_directory(tmp_path: Path, monkeypatch) -> None:
    """The in-flight checkpoint must survive a power loss that the rows it lets in survive."""
    from stellaops_runtime.agent import watch_record_file as wf

    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real(fd)

    monkeypatch.setattr(wf.os, "fsync", fsync)
    wf.write_record(str(tmp_path / "s.alive"), "n", "n/1", 1, 0, None)
    assert synced == []  # the watching moment alone: a lost write is a larger gap, the safe side
    wf.write_record(str(tmp_path / "s.alive"), "n", "n/1", 1, 0, None, durable=True)
    assert synced == ["file", "dir"]


async def test_a_checkpoint_of_the_same_file_under_another_path_never_replays_it_from_its_start(
    tmp_path: Path, caplog
) -> None:
    """s40/e: ``tetragon.exportFile`` changed to another name of the file the last agent followed
    (/var/run/... for /run/..., a hostPath mounted elsewhere, a hard link): its checkpoint, written
    for another path, was not used, and with ``exportFromStart`` the file was read whole, every line
    the last agent stored counted twice. It is that file (its inode): read from its end, a gap."""
    path = tmp_path / "t.log"
    path.write_bytes(b'{"old":1}\n{"old":2}\n')
    cp = await _two_lines_counted(path)
    other = tmp_path / "other-name.log"
    os.link(path, other)  # the same file, another name
    q2 = EventQueue(100)
    src = TetragonExportSource(str(other), queue=q2, from_start=True, poll_interval=0.01)
    src.resume_outage(1_000, None)
    src.resume_checkpoint(cp, (1_000, 0))
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await _until(lambda: src.stats.connected)
        with other.open("ab") as f:
            f.write(b'{"new":3}\n')
        await _until(lambda: q2.enqueued >= 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert [p for p, _ in q2.take(10)] == [b'{"new":3}']  # never the stored lines again
    gap = src.take_outage()
    assert gap is not None and gap[0] == 1_000
