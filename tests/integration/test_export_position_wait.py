"""A store slow or down while the export follower restarts: the resume waits, nothing is lost (s37/r5).

Defect (s37/r5): a restarting agent whose watch record holds a checkpoint of its export file
waits for the store's export position of the node (sources/export_store.py) before it resumes.
The wait ended after 60 s (``POSITION_WAIT_SECONDS``): a store down longer while the agent
restarted (an upgrade rolling every node while PostgreSQL fails over) made every node read its
file from the end, the lines written meanwhile a gap, where before the row existed it resumed
exactly. The file keeps those lines, so the follower now waits for as long as waiting loses
nothing (the file at the path is still the one it opened, at most ``POSITION_WAIT_BYTES`` written
to it since); when it stops waiting unanswered it reads from where the file ended when it opened
it (every line written after it took the export lock: no other agent can have counted those), the
hole before that a gap. Real files, the real follower; the store's answer is handed as the
agent's store-opening thread hands it (``store_position``). The real agents are in
tests/e2e/test_export_position_outage.py.

Defect (s37/r5, B's race): the row was read as the store opened, which could be before the
follower took the export lock; another agent holding the lock then (it keeps it until its last
flush stored its counts and position) could store a further position and exit, and the follower
resumed at the older row and counted that agent's last lines again. The row is now read once the
lock is held (a real SQLite store).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.agent.export_resume import ExportResume
from stellaops_runtime.boot_id import this_boot
from stellaops_runtime.hotsymbols.clock_span import now_pair
from stellaops_runtime.sources import export_position_wait
from stellaops_runtime.sources.export_checkpoint import ExportPositions
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_export import TetragonExportSource
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.export_position import mark_final, write_position


def _line(i: int) -> bytes:
    return b'{"n":%d}\n' % i


def _cp(path: Path, pos: int) -> dict[str, Any]:
    positions = ExportPositions(str(path), EventQueue(10))
    with path.open("rb") as f:
        f.seek(pos)
        positions.opened(f)
    cp = positions.checkpoint(0)
    assert cp is not None
    return cp


def _source(path: Path, cp: dict[str, Any]) -> TetragonExportSource:
    """A follower handed the record's checkpoint ``cp`` (written a second ago), asking the store."""
    src = TetragonExportSource(str(path), queue=EventQueue(100), from_start=False, poll_interval=0.01)
    wall, boot = now_pair()
    src.resume_outage(wall - 10**9, boot - 10**9)
    src.resume_checkpoint(cp, (wall - 10**9, boot - 10**9))
    assert src.store_position_unknown("me")
    return src


async def _until(cond: Any, what: str) -> None:
    loop = asyncio.get_running_loop()
    until = loop.time() + 60
    while not cond():
        assert loop.time() < until, what
        await asyncio.sleep(0.01)


def _waiting(src: TetragonExportSource) -> bool:
    return "waiting for the store" in src.stats.last_error


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


async def _stop(src: TetragonExportSource, stop: asyncio.Event, task: asyncio.Task[None]) -> list[bytes]:
    stop.set()
    await asyncio.wait_for(task, 30)
    return [p for p, _ in src.queue.take(1000)]


async def test_a_store_answering_after_the_wait_is_said_still_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(export_position_wait, "POSITION_WAIT_SECONDS", 0.05)  # stands for the 60 s
    path = tmp_path / "tetragon.log"
    path.write_bytes(b"".join(_line(i) for i in range(6)))
    src = _source(path, _cp(path, 2 * 8))  # the record: counts end after line 1
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    said = "still waiting (the file keeps the lines)"
    await _until(lambda: said in caplog.text or src.stats.connected, "the wait's time passes")
    assert not src.stats.connected, "the follower stopped waiting though waiting lost nothing"
    _append(path, _line(6))  # written while the store is away: the file keeps it
    src.store_position(None)  # the store is back: no row (no other agent stored counts of it)
    await _until(lambda: src.queue.enqueued >= 5, "the follower read on from its checkpoint")
    got = await _stop(src, stop, task)
    assert got == [_line(i).strip() for i in range(2, 7)]  # none lost, none twice
    assert src.stats.resumed_at == 2 * 8


async def test_a_rotation_while_waiting_reads_every_line_written_since_the_file_was_opened(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tetragon.log"
    path.write_bytes(b"".join(_line(i) for i in range(4)))
    src = _source(path, _cp(path, 8))
    before = now_pair()
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    await _until(lambda: _waiting(src), "the follower waits for the store")
    appended = now_pair()
    _append(path, _line(4))  # after the follower took the lock and opened the file
    path.rename(tmp_path / "tetragon-1.log")  # Tetragon rotates: waiting longer would lose lines
    path.write_bytes(_line(5))
    await _until(lambda: src.queue.enqueued >= 2, "the follower stopped waiting and read on")
    got = await _stop(src, stop, task)
    assert got == [_line(4).strip(), _line(5).strip()]  # lines 1-3: before the open, a gap
    assert src.stats.resumed_at == -1
    hole = src.take_outage()
    assert hole is not None and before[0] <= hole[1] <= appended[0]  # ends when the file was opened


async def test_too_much_written_while_waiting_ends_the_wait_and_reads_it_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_position_wait, "POSITION_WAIT_BYTES", 2 * 8)
    path = tmp_path / "tetragon.log"
    path.write_bytes(b"".join(_line(i) for i in range(4)))
    src = _source(path, _cp(path, 8))
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    await _until(lambda: _waiting(src), "the follower waits for the store")
    _append(path, _line(4) + _line(5))  # at the bound: still waiting
    _append(path, _line(6))  # past it
    await _until(lambda: src.queue.enqueued >= 3, "the follower stopped waiting and read on")
    got = await _stop(src, stop, task)
    assert got == [_line(i).strip() for i in (4, 5, 6)]  # written after the open: all read
    assert src.stats.resumed_at == -1
    assert src.take_outage() is not None  # lines 1-3: a gap


def test_the_documented_bounds() -> None:
    assert export_position_wait.POSITION_WAIT_SECONDS == 60  # docs/operations.md "One agent per node"
    assert export_position_wait.POSITION_WAIT_BYTES == 64 << 20


async def test_a_stop_while_waiting_reads_nothing(tmp_path: Path) -> None:
    path = tmp_path / "tetragon.log"
    path.write_bytes(b"".join(_line(i) for i in range(4)))
    src = _source(path, _cp(path, 8))
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    await _until(lambda: _waiting(src), "the follower waits for the store")
    assert await _stop(src, stop, task) == []
    assert src.watching_ns() is None  # the record keeps the last agent's moment and checkpoint


def _stored_row(store: Any, cp: dict[str, Any], agent: str, *, last: bool = False) -> None:
    """Agent ``agent``'s flush stored counts of the file up to ``cp`` (store/export_position.py);
    ``last``: its shutdown then stored every count and marked the row final."""
    wall, boot = now_pair()
    doc = {"node": "node-1", "agent_id": agent, "checkpoint": cp, "at_ns": wall, "at_boot": boot}
    with store.db.begin() as conn:
        write_position(conn, {**doc, "boot_id": this_boot()})
    if last:
        mark_final(store.db, {**doc, "boot_id": this_boot()})


async def test_a_store_opened_before_the_lock_is_held_is_read_again_after(tmp_path: Path) -> None:
    """X's store opens before X takes the export lock; agent Y, holding it, then stores its last
    flush (to line 4) and exits. X must resume after Y's lines, not at the row read before."""
    path = tmp_path / "tetragon.log"
    path.write_bytes(b"".join(_line(i) for i in range(6)))
    store = open_store(f"sqlite:///{tmp_path}/hot.db")
    try:
        _stored_row(store, _cp(path, 2 * 8), "node-1/y")  # Y's earlier flush: to line 1
        src = _source(path, _cp(path, 8))  # X's record: to line 0
        resume = ExportResume(src.queue)
        resume.attach(src)
        resume.ask_store("node-1/x-before")
        assert resume.awaits_position
        resume.store_opened(store.db, "node-1")  # X's store opens: X does not hold the lock yet
        _stored_row(store, _cp(path, 5 * 8), "node-1/y", last=True)  # Y's last flush, then Y exits
        stop = asyncio.Event()
        task = asyncio.create_task(src.run(stop))
        await _until(lambda: src.queue.enqueued >= 1, "X read on")
        got = await _stop(src, stop, task)
    finally:
        store.close()
    assert got == [_line(5).strip()], "X counted lines Y had stored"
    assert src.stats.resumed_at == 5 * 8


async def test_a_position_read_hung_in_the_store_does_not_hold_the_agents_exit(tmp_path: Path) -> None:
    """s44/SG: the read ran on the event loop's default executor, whose threads the interpreter
    (and asyncio.run) joins at exit: a read hung in a black-holed store held the stopped agent's
    exit until the store's own timeouts, past its shutdown grace. It runs on a daemon thread now
    (store/threads.py), never joined."""
    path = tmp_path / "tetragon.log"
    path.write_bytes(b"".join(_line(i) for i in range(4)))
    src = _source(path, _cp(path, 8))
    called, release = threading.Event(), threading.Event()
    daemon: list[bool] = []

    def hung_read() -> Any:
        daemon.append(threading.current_thread().daemon)
        called.set()
        release.wait(5)
        raise OSError("the store is away")

    src.position_reader(hung_read)
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await _until(called.is_set, "the row is read")
        assert await _stop(src, stop, task) == []  # the stop does not wait for the read
        assert daemon == [True], "the read runs on a thread the exit joins"
    finally:
        release.set()
