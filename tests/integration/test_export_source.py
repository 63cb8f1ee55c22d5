"""The JSON export follower on real files: appends, rotation, truncation, partial lines."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

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


async def test_follows_appends_rotation_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "tetragon.log"
    path.write_bytes(b'{"a":1}\n{"a":2}\n')
    q = EventQueue(10_000)
    src = TetragonExportSource(str(path), queue=q, from_start=True, poll_interval=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await _until(lambda: len(q) == 2)
        assert src.stats.connected
        with path.open("ab") as f:  # a line written in two parts
            f.write(b'{"a":')
            f.flush()
            await asyncio.sleep(0.1)
            f.write(b"3}\n")
        await _until(lambda: len(q) == 3)
        # Rotation as Tetragon's exporter does it: rename, then a new file at the path.
        with path.open("ab") as f:
            f.write(b'{"a":4}\n{"a":5}')  # the last line of the old file has no newline
        os.rename(path, tmp_path / "tetragon-2026-11-24T09-00-00.000.log")
        path.write_bytes(b'{"b":1}\n{"b":2}\n')
        await _until(lambda: len(q) == 7)
        assert src.stats.rotations == 1
        # Truncation in place (shorter than what was read).
        path.write_bytes(b'{"c":1}\n')
        await _until(lambda: len(q) == 8)
        assert src.stats.truncations == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)
    assert _lines(q) == [
        b'{"a":1}', b'{"a":2}', b'{"a":3}', b'{"a":4}', b'{"a":5}', b'{"b":1}', b'{"b":2}', b'{"c":1}',
    ]  # fmt: skip
    assert src.stats.lines == 8


async def test_starts_at_end_by_default(tmp_path: Path) -> None:
    path = tmp_path / "tetragon.log"
    path.write_bytes(b'{"old":1}\n')  # there before the agent: skipped (tail)
    q = EventQueue(100)
    src = TetragonExportSource(str(path), queue=q, poll_interval=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await _until(lambda: src.stats.connected)
        with path.open("ab") as f:
            f.write(b'{"new":1}\n')
        await _until(lambda: len(q) == 1)
        assert _lines(q) == [b'{"new":1}']
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)


async def test_a_file_that_appears_later_is_read_from_its_start(tmp_path: Path) -> None:
    """Probe s31/h7: the follower waited for a missing file, then opened it at its end, so the
    lines Tetragon wrote between creating it and the next poll were lost, uncounted."""
    path = tmp_path / "tetragon.log"
    q = EventQueue(100)
    src = TetragonExportSource(str(path), queue=q, poll_interval=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await _until(lambda: src.stats.missing_file_waits > 0)
        path.write_bytes(b'{"first":1}\n')  # written after the agent looked: it must be read
        await _until(lambda: src.stats.connected)
        with path.open("ab") as f:
            f.write(b'{"new":1}\n')
        await _until(lambda: len(q) == 2)
        assert _lines(q) == [b'{"first":1}', b'{"new":1}']
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)


async def test_full_queue_makes_the_reader_wait_not_drop(tmp_path: Path) -> None:
    """Probe s31/h7: a full queue dropped export lines (40 of 50 here), as a gRPC stream must;
    but the file keeps what is not read yet, so the reader now waits for room: nothing lost."""
    path = tmp_path / "tetragon.log"
    path.write_bytes(b"".join(b'{"n":%d}\n' % i for i in range(50)))
    q = EventQueue(100)
    q.capacity = 10  # smaller than the constructor allows in config, on purpose
    src = TetragonExportSource(str(path), queue=q, from_start=True, poll_interval=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    got: list[bytes] = []
    try:
        await _until(lambda: len(q) == 10)
        assert src.stats.lines == 10 and src.stats.queue_waits == 1
        while len(got) < 50:  # the consumer takes a few at a time
            await q.wait(5)
            batch = q.take(3)
            got += [p for p, _ in batch]
            q.done(batch)
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)
    assert got == [b'{"n":%d}' % i for i in range(50)]
    assert q.dropped == 0 and q.enqueued == 50 and src.stats.lines == 50
