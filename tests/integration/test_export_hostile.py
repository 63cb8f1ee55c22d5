"""The JSON export follower against hostile delivery (probe s31/h7).

What the follower did before, each a test below:
- a directory or unreadable path at ``exportFile`` ended the source task with an
  exception nobody logged: the agent ran on, unready, and never followed the file
  once the path was fixed;
- a FIFO at the path blocked the event loop in ``open()`` (metrics, flushes, all of it);
- an agent starting at the end of a file whose last line was still being written
  read that line's tail as a line (a malformed event) and lost the event;
- a file far ahead of the pipeline (a backlog, a rotation) overflowed the queue: lines
  dropped (a gap) although the file still had them;
- the export source had no watching moment and no outage, so the hole between two
  agents was never a gap (tests/e2e/test_export_restart_gap.py runs the real agents).
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from stellaops_runtime.sources import tetragon_export
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_export import TetragonExportSource


async def _until(cond, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


def _lines(q: EventQueue) -> list[bytes]:
    return [p for p, _ in q.take(1_000_000)]


async def _drain(q: EventQueue, n: int, got: list[bytes]) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while len(got) < n and asyncio.get_running_loop().time() < deadline:
        await q.wait(0.2)
        batch = q.take(7)
        got += [p for p, _ in batch]
        q.done(batch)


async def test_a_directory_at_the_path_is_retried_with_a_reason(tmp_path: Path, caplog) -> None:
    path = tmp_path / "tetragon.log"
    path.mkdir()
    q = EventQueue(100)
    src = TetragonExportSource(str(path), queue=q, poll_interval=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await _until(lambda: task.done() or getattr(src.stats, "open_errors", 0) >= 3)
        assert not task.done()  # the source went on (it ended with IsADirectoryError, unlogged)
        assert "is a directory" in src.stats.last_error
        assert sum("is a directory" in r.getMessage() for r in caplog.records) == 1  # said once
        path.rmdir()
        path.write_bytes(b'{"a":1}\n')  # the path fixed: followed (a new file: from its start)
        await _until(lambda: len(q) == 1)
        assert src.stats.connected and src.stats.last_error == ""
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)
    assert _lines(q) == [b'{"a":1}']


async def test_an_unreadable_file_is_retried_with_a_reason(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "tetragon.log"
    path.write_bytes(b'{"a":1}\n')
    real_open = os.open
    denied = {"on": True}

    def fake_open(p, flags, *a):  # the agent runs as root here: EACCES is made, not set by chmod
        if denied["on"] and os.fspath(p) == str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(p, flags, *a)

    monkeypatch.setattr(tetragon_export.os, "open", fake_open)
    q = EventQueue(100)
    src = TetragonExportSource(str(path), queue=q, from_start=True, poll_interval=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await _until(lambda: task.done() or getattr(src.stats, "open_errors", 0) >= 2)
        assert "Permission denied" in src.stats.last_error and not task.done()
        denied["on"] = False
        await _until(lambda: len(q) == 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)


async def test_a_fifo_at_the_path_never_blocks_the_agent(tmp_path: Path) -> None:
    path = tmp_path / "tetragon.log"
    os.mkfifo(path)
    # Whatever happens, release a blocked open() after 4 s so that a failing run ends
    # (O_RDWR opens a FIFO at once on Linux and counts as its writer).
    release = threading.Timer(4.0, lambda: os.close(os.open(path, os.O_RDWR | os.O_NONBLOCK)))
    release.daemon = True
    q = EventQueue(100)
    src = TetragonExportSource(str(path), queue=q, poll_interval=0.02)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    release.start()
    task = asyncio.create_task(src.run(stop))
    try:
        await _until(lambda: task.done() or getattr(src.stats, "open_errors", 0) >= 2, timeout=3.0)
        assert loop.time() - t0 < 3.0 and not task.done()  # the loop ran meanwhile, the source too
        assert "not a regular file" in src.stats.last_error
    finally:
        release.cancel()
        stop.set()
        await asyncio.wait_for(task, 6)


async def test_a_half_written_last_line_at_start_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "tetragon.log"
    path.write_bytes(b'{"old":1}\n{"old":2}\n{"half":')  # Tetragon is writing its last line
    q = EventQueue(100)
    src = TetragonExportSource(str(path), queue=q, poll_interval=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await _until(lambda: src.stats.connected)
        with path.open("ab") as f:
            f.write(b'3}\n{"new":4}\n')
        await _until(lambda: len(q) == 2)
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)
    assert _lines(q) == [b'{"half":3}', b'{"new":4}']


async def test_a_rotated_file_far_behind_loses_no_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tetragon_export, "CHUNK", 64)  # a "large" backlog of 40 chunks
    path = tmp_path / "tetragon.log"
    path.write_bytes(b"")
    q = EventQueue(100)
    q.capacity = 5
    src = TetragonExportSource(str(path), queue=q, poll_interval=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    got: list[bytes] = []
    try:
        await _until(lambda: src.stats.connected)
        old = [b'{"old":%04d}' % i for i in range(200)]
        new = [b'{"new":%04d}' % i for i in range(20)]
        with path.open("ab") as f:
            f.write(b"\n".join(old) + b"\n")
        os.rename(path, tmp_path / "tetragon-1.log")
        path.write_bytes(b"\n".join(new) + b"\n")
        await _drain(q, 220, got)
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)
    assert got == old + new  # every line once, in order, through a queue of 5
    assert q.dropped == 0 and src.stats.rotations == 1


async def test_deleted_and_recreated_file_keeps_every_line(tmp_path: Path) -> None:
    path = tmp_path / "tetragon.log"
    path.write_bytes(b"")
    q = EventQueue(100)
    src = TetragonExportSource(str(path), queue=q, poll_interval=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await _until(lambda: src.stats.connected)
        with path.open("ab") as f:
            f.write(b'{"a":1}\n')
            os.unlink(path)  # deleted while Tetragon still writes to its handle
            f.write(b'{"a":2}\n')
        await _until(lambda: len(q) == 2)
        path.write_bytes(b'{"b":1}\n')  # recreated
        await _until(lambda: len(q) == 3)
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)
    assert _lines(q) == [b'{"a":1}', b'{"a":2}', b'{"b":1}']
    assert q.dropped == 0


async def test_watching_moment_and_the_hole_since_the_last_agent(tmp_path: Path, caplog) -> None:
    path = tmp_path / "tetragon.log"
    path.write_bytes(b'{"counted":"by the last agent"}\n')
    q = EventQueue(100)
    src = TetragonExportSource(str(path), queue=q, from_start=True, poll_interval=0.02)
    assert hasattr(src, "watching_ns"), "the export source keeps no watching moment: no restart gap"
    assert src.watching_ns() is None and src.take_outage() is None
    src.resume_outage(1_000)  # the last agent's record (without a checkpoint): a hole since then
    hole = src.take_outage()  # still unopened: the hole runs to now, piece by piece
    assert hole is not None and hole[0] == 1_000
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await _until(lambda: src.watching_ns() is not None)
        # exportFromStart, a record without a checkpoint (another source's, an older agent's): that
        # agent may have counted the file's lines, so it is read from its end (s34/h4), said so.
        assert "read from its end, not its start" in caplog.text
        rest = src.take_outage()
        # up to the opening, from where the last piece ended or, earlier, the event cache's hold before
        # the opening (read from its end: tests/unit/test_export_first_window.py)
        assert rest is not None and rest[0] <= hole[1] and rest[1] <= (src.watching_ns() or 0)
        assert src.take_outage() is None  # closed
        with path.open("ab") as f:
            f.write(b'{"half":')
        seen = src.watching_ns() or 0
        await asyncio.sleep(0.2)  # several polls see a half-written line: the moment stays
        assert src.watching_ns() == seen
        with path.open("ab") as f:
            f.write(b"1}\n")
        await _until(lambda: len(q) == 1 and (src.watching_ns() or 0) > seen)
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)
    assert _lines(q) == [b'{"half":1}']  # the last agent's line is not read again
    assert src.watching_ns() is None


async def test_truncated_and_rewritten_past_the_read_position_is_read_from_its_start(tmp_path: Path) -> None:
    """copytruncate under load: between two polls the file is emptied and written past where the
    follower was; the size never looked smaller, so it read on from the old position: the new
    lines before it lost, a piece of a line read as one."""
    path = tmp_path / "tetragon.log"
    path.write_bytes(b'{"old":1}\n{"old":2}\n')
    q = EventQueue(100)
    src = TetragonExportSource(str(path), queue=q, from_start=True, poll_interval=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await _until(lambda: len(q) == 2)
        new = [b'{"new":%d,"pad":"%s"}' % (i, b"x" * i) for i in range(6)]
        path.write_bytes(b"\n".join(new) + b"\n")  # no await since the last read: one step
        await _until(lambda: len(q) == 8)
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)
    assert _lines(q) == [b'{"old":1}', b'{"old":2}', *new]
    assert src.stats.truncations == 1


async def test_a_path_pointed_back_at_a_file_read_before_continues_where_it_was(tmp_path: Path) -> None:
    """The path replaced by a symlink to the file rotated away (or renamed back): every line of
    that file was read again from its start, each event counted twice."""
    path = tmp_path / "tetragon.log"
    old = tmp_path / "tetragon-1.log"
    path.write_bytes(b'{"a":1}\n{"a":2}\n')
    q = EventQueue(100)
    src = TetragonExportSource(str(path), queue=q, from_start=True, poll_interval=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await _until(lambda: len(q) == 2)
        os.rename(path, old)
        with old.open("ab") as f:
            f.write(b'{"a":"2b"}\n')  # the old file's last line: read at the rotation
        path.write_bytes(b'{"b":1}\n')
        await _until(lambda: len(q) == 4)
        with old.open("ab") as f:
            f.write(b'{"a":3}\n')  # written to the old file after the rotation was noticed
        tmp = tmp_path / "link"
        tmp.symlink_to(old)
        os.replace(tmp, path)  # the path is now a symlink to the old file
        await _until(lambda: src.stats.rotations == 2 and len(q) >= 5)
        await asyncio.sleep(0.1)  # more polls: nothing else may come (the old code read a:1-3 again)
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)
    assert _lines(q) == [b'{"a":1}', b'{"a":2}', b'{"a":"2b"}', b'{"b":1}', b'{"a":3}']


async def test_two_rotations_while_the_reader_is_behind_lose_no_file(tmp_path: Path, monkeypatch) -> None:
    """The reader waits for room (the pipeline behind) while Tetragon rotates twice: the file in
    between was at the path only while the reader was busy with the first one, and was never read
    (it looked at the path only at the first file's end). Every line of the three files, once."""
    monkeypatch.setattr(tetragon_export, "CHUNK", 64)
    path = tmp_path / "tetragon.log"
    a = [b'{"a":%04d}' % i for i in range(60)]
    b = [b'{"b":%04d}' % i for i in range(30)]
    c = [b'{"c":%04d}' % i for i in range(10)]
    path.write_bytes(b"\n".join(a) + b"\n")
    q = EventQueue(100)
    q.capacity = 5
    src = TetragonExportSource(str(path), queue=q, from_start=True, poll_interval=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    got: list[bytes] = []
    try:
        await _until(lambda: src.stats.queue_waits > 0)  # behind, in the first file
        os.rename(path, tmp_path / "tetragon-1.log")
        path.write_bytes(b"\n".join(b) + b"\n")
        await _until(lambda: len(src._next) == 1)  # the reader, still in the first file, holds it
        os.rename(path, tmp_path / "tetragon-2.log")
        path.write_bytes(b"\n".join(c) + b"\n")
        await _drain(q, 100, got)
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)
    assert got == a + b + c
    assert q.dropped == 0 and src.stats.rotations == 2


async def test_a_read_that_keeps_failing_is_retried_and_logged_once(tmp_path: Path, caplog) -> None:
    path = tmp_path / "tetragon.log"
    path.write_bytes(b'{"a":1}\n')
    q = EventQueue(100)
    src = TetragonExportSource(str(path), queue=q, from_start=True, poll_interval=0.01)
    failing = {"on": True}

    class Broken:  # a file whose reads fail with EIO (a failing disk) until it recovers
        def __init__(self, f):
            self.f = f

        def read(self, n=-1):
            if failing["on"]:
                raise OSError(5, "Input/output error")
            return self.f.read(n)

        def __getattr__(self, name):
            return getattr(self.f, name)

    real_open = src._open

    async def broken_open(stop, *, at_end):
        f = await real_open(stop, at_end=at_end)
        return Broken(f) if f is not None else None

    src._open = broken_open  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await _until(lambda: src.stats.read_errors >= 20)
        assert not task.done() and "Input/output error" in src.stats.last_error
        failing["on"] = False
        await _until(lambda: len(q) == 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)
    assert sum("Input/output error" in r.getMessage() for r in caplog.records) == 1


async def test_a_path_with_a_nul_byte_is_retried_with_a_reason_never_a_dead_task(
    tmp_path: Path, caplog
) -> None:
    """Probe (s36/h2): ``exportFile`` holding a NUL byte made ``open()`` raise ValueError: the source
    task died unlogged, and the agent ran on unready, saying nothing of why."""
    q = EventQueue(100)
    src = TetragonExportSource(str(tmp_path / "a\0b.log"), queue=q, poll_interval=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await _until(lambda: task.done() or src.stats.open_errors >= 3)
        assert not task.done(), task.exception()
        assert "NUL byte" in src.stats.last_error and "\\x00" in src.stats.last_error
        assert sum("NUL byte" in r.getMessage() for r in caplog.records) == 1  # said once
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
