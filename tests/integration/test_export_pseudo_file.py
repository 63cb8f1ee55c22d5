"""A /proc or /sys file at the export path is refused, never read again and again.

Probe (s36/h2): the path replaced by a symlink to a file of /proc (``/proc/self/status``; the
agent's ``environ`` the same way) was followed as the next file: its size reads 0 while it
yields bytes, so on every poll the follower took it for a truncated file, read it again from
its start and queued its lines again (malformed events, counted every 0.1 s for ever) and
logged "was truncated" each time. Such a file is now refused like a FIFO or a directory: the
follower keeps the file it reads (or waits at start), says why once, and counts it in
``open_errors``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from stellaops_runtime.sources.export_files import made_as_read
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_export import TetragonExportSource

PROC = "/proc/self/status"  # lines, a size of 0


async def _until(cond, timeout: float = 30.0) -> None:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def _point(path: Path, target: str) -> None:
    tmp = path.with_name("link.tmp")
    os.symlink(target, tmp)
    os.replace(tmp, path)


async def test_a_proc_file_put_at_the_path_is_refused_and_the_file_read_goes_on(
    tmp_path: Path, caplog
) -> None:
    path = tmp_path / "tetragon.log"
    path.write_bytes(b'{"a":1}\n')
    q = EventQueue(100_000)
    src = TetragonExportSource(str(path), queue=q, from_start=True, poll_interval=0.01)
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO, logger="stellaops_runtime.sources.tetragon_export"):
        task = asyncio.create_task(src.run(stop))
        try:
            await _until(lambda: q.enqueued == 1)
            _point(path, PROC)
            await _until(lambda: src.stats.open_errors >= 20 or src.stats.truncations >= 20)
            assert src.stats.truncations == 0 and q.enqueued == 1  # nothing of /proc read
            assert "a /proc or /sys file" in src.stats.last_error
            path.unlink()
            path.write_bytes(b'{"b":2}\n')  # a real file again: followed from its start
            await _until(lambda: q.enqueued == 2)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert [p for p, _ in q.take(10)] == [b'{"a":1}', b'{"b":2}']
    assert caplog.text.count("a /proc or /sys file") == 1 and "truncated" not in caplog.text


async def test_a_proc_file_at_the_path_at_start_is_waited_past(tmp_path: Path) -> None:
    path = tmp_path / "tetragon.log"
    _point(path, PROC)
    q = EventQueue(100_000)
    src = TetragonExportSource(str(path), queue=q, from_start=True, poll_interval=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await _until(lambda: src.stats.open_errors >= 3 or q.enqueued > 0)
        assert q.enqueued == 0 and not src.stats.connected
        path.unlink()
        path.write_bytes(b'{"a":1}\n')
        await _until(lambda: q.enqueued == 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert src.stats.truncations == 0


def test_a_new_file_written_between_its_stat_and_its_read_is_a_real_file(tmp_path: Path) -> None:
    """A rotation's new file, empty when looked at and written to just after, is no /proc file."""
    path = tmp_path / "tetragon.log"
    path.write_bytes(b"")
    with path.open("rb") as f:
        st = os.fstat(f.fileno())  # size 0: the rotation's new file, before Tetragon's first line
        path.write_bytes(b'{"a":1}\n')
        assert not made_as_read(f.fileno(), st)
    with open(PROC, "rb") as f:
        assert made_as_read(f.fileno(), os.fstat(f.fileno()))


SYSFS = "/sys/class/net/lo/mtu"  # a sysfs attribute: its size reads 4096 (a page), not 0


@pytest.mark.skipif(not os.path.isfile(SYSFS), reason="no sysfs here")
async def test_a_sysfs_file_put_at_the_path_is_refused_too(tmp_path: Path, caplog) -> None:
    """Probe (s36/r1): a sysfs attribute's size reads 4096, so the size check let it through: it was
    followed, its text queued as a line, and one that changes (a network statistic) looked
    rewritten on every poll and was queued again each time (65 lines in 1 s)."""
    path = tmp_path / "tetragon.log"
    path.write_bytes(b'{"a":1}\n')
    q = EventQueue(100_000)
    src = TetragonExportSource(str(path), queue=q, from_start=True, poll_interval=0.01)
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO, logger="stellaops_runtime.sources.tetragon_export"):
        task = asyncio.create_task(src.run(stop))
        try:
            await _until(lambda: q.enqueued == 1)
            _point(path, SYSFS)
            await _until(lambda: src.stats.open_errors >= 1 or q.enqueued > 1)
            path.unlink()
            path.write_bytes(b'{"b":2}\n')
            await _until(lambda: q.enqueued >= 2)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert [p for p, _ in q.take(10)] == [b'{"a":1}', b'{"b":2}']
    assert caplog.text.count("a /proc or /sys file") == 1 and "file system sysfs" in caplog.text


@pytest.mark.skipif(not os.path.isfile(SYSFS), reason="no sysfs here")
def test_a_sysfs_file_is_made_as_read_and_a_real_one_of_that_size_is_not(tmp_path: Path) -> None:
    with open(SYSFS, "rb") as f:
        assert made_as_read(f.fileno(), os.fstat(f.fileno()))
    real = tmp_path / "tetragon.log"
    real.write_bytes(b"x" * 4095 + b"\n")  # a page, as a sysfs attribute's size reads
    with real.open("rb") as f:
        assert not made_as_read(f.fileno(), os.fstat(f.fileno()))
