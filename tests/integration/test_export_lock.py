"""Two followers of one export file: the second waits, then reads from the file's end.

The follower holds a lock on the export file's directory (sources/export_lock.py) from before
it opens the file until it stops following it, so a second agent of the node (another
``store.spoolPath``, none) never counts a line the first one counts. These are the follower's
sides of it on real files, in one process (each source opens the directory itself, so the
locks conflict as two processes' do); the real agents are in tests/e2e/test_export_two_agents.py.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from pathlib import Path

import pytest

from stellaops_runtime.sources import export_lock
from stellaops_runtime.sources.event_hold import CACHE_HOLD_NS
from stellaops_runtime.sources.export_checkpoint import ExportPositions
from stellaops_runtime.sources.export_lock import MAX_LATER, ExportLock
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_export import TetragonExportSource


async def _until(cond, timeout: float = 30.0) -> None:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def _lines(q: EventQueue) -> list[bytes]:
    return [p for p, _ in q.take(1_000_000)]


async def _start(src: TetragonExportSource) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(src.run(stop))


async def _stop(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_a_second_follower_waits_then_reads_from_the_end_with_a_gap(tmp_path: Path, caplog) -> None:
    path = tmp_path / "tetragon.log"
    path.write_bytes(b'{"a":1}\n')
    qa, qb = EventQueue(100), EventQueue(100)
    a = TetragonExportSource(str(path), queue=qa, from_start=True, poll_interval=0.01)
    # exportFromStart, no watch record (no store.spoolPath): alone it would read the file whole.
    b = TetragonExportSource(str(path), queue=qb, from_start=True, poll_interval=0.01)
    sa, ta = await _start(a)
    await _until(lambda: a.stats.connected)
    before = time.time_ns()
    with caplog.at_level(logging.WARNING, logger="stellaops_runtime.sources.tetragon_export"):
        sb, tb = await _start(b)
        try:
            await _until(lambda: b.stats.other_agent)
            assert not b.stats.connected and b.watching_ns() is None
            assert "another agent follows the export files in" in b.stats.last_error
            with path.open("ab") as f:
                f.write(b'{"a":2}\n')
            await _until(lambda: qa.enqueued == 2)
            await _stop(sa, ta)  # the first agent is gone: the second follows from here on
            await _until(lambda: b.stats.connected)
            with path.open("ab") as f:
                f.write(b'{"b":3}\n')
            await _until(lambda: qb.enqueued == 1)
            assert not b.stats.other_agent and b.stats.last_error == ""
        finally:
            await _stop(sb, tb)
    assert _lines(qa) == [b'{"a":1}', b'{"a":2}']
    assert _lines(qb) == [b'{"b":3}']  # nothing the first one read
    gap = b.take_outage()
    # From the wait's start, or the event cache's hold before the opening (lines written after it
    # stamped before it: tests/unit/test_export_first_window.py), whichever is earlier.
    assert gap is not None and gap[0] <= b.lock.waited_since[0] and before - CACHE_HOLD_NS <= gap[0] < gap[1]  # type: ignore[index]
    assert b.lock.conflicts == 1
    text = caplog.text
    assert text.count("another agent follows the export files in") == 1  # once, not every poll
    assert "nothing says where its counted lines end" in text


async def test_a_checkpoint_of_its_own_is_not_used_after_another_agent_followed(tmp_path: Path) -> None:
    path = tmp_path / "tetragon.log"
    path.write_bytes(b'{"a":1}\n{"a":2}\n')
    q0 = EventQueue(100)
    old = ExportPositions(str(path), q0)  # where this agent's stored counts ended, long ago
    with path.open("rb") as f:
        f.seek(8)
        old.opened(f)
    cp = old.checkpoint(0)
    assert cp is not None and cp["pos"] == 8
    qa, qb = EventQueue(100), EventQueue(100)
    a = TetragonExportSource(str(path), queue=qa, from_start=True, poll_interval=0.01)
    b = TetragonExportSource(str(path), queue=qb, from_start=True, poll_interval=0.01)
    b.resume_outage(1_000, None)
    b.resume_checkpoint(cp, None)
    sa, ta = await _start(a)
    await _until(lambda: qa.enqueued == 2)
    sb, tb = await _start(b)
    try:
        await _until(lambda: b.stats.other_agent)
        await _stop(sa, ta)
        await _until(lambda: b.stats.connected)
        with path.open("ab") as f:
            f.write(b'{"b":3}\n')
        await _until(lambda: qb.enqueued == 1)
    finally:
        await _stop(sb, tb)
    assert _lines(qb) == [b'{"b":3}'] and b.stats.resumed_at == -1  # not '{"a":2}' a second time
    assert b.take_outage() is not None


async def test_the_lock_is_the_directorys_and_waits_for_the_directory(tmp_path: Path) -> None:
    d = tmp_path / "tetragon"
    path = d / "tetragon.log"
    lock = ExportLock(str(path))
    assert lock.take() == "missing"  # no directory yet: no file there either
    d.mkdir()
    other = ExportLock(str(d / "another.log"))  # another file of the same directory
    assert other.take() == "held"
    assert lock.take() == "other" and lock.other_agent and lock.waited_since is not None
    other.release()
    assert lock.take() == "held" and not lock.other_agent
    lock.release()
    # A directory made while the follower waits: the file put there later is read whole.
    d2 = tmp_path / "later"
    q = EventQueue(100)
    src = TetragonExportSource(str(d2 / "tetragon.log"), queue=q, poll_interval=0.01)
    stop, task = await _start(src)
    try:
        await _until(lambda: src.stats.missing_file_waits > 0)
        d2.mkdir()
        (d2 / "tetragon.log").write_bytes(b'{"a":1}\n')
        await _until(lambda: q.enqueued == 1)
        assert src.lock.take() == "held"
    finally:
        await _stop(stop, task)
    again = ExportLock(str(d2 / "x.log"))
    assert again.take() == "held"  # released when the source stopped
    again.release()


@pytest.mark.parametrize("refusal", [errno.ENOLCK, errno.EOPNOTSUPP])
async def test_a_directory_that_cannot_be_locked_is_followed_and_said(
    tmp_path: Path, monkeypatch, caplog, refusal: int
) -> None:
    """A file system refusing ``flock`` (ENOLCK: no lock manager; EOPNOTSUPP): the file is followed
    unguarded, and the source says so for as long as it follows (``stats.unguarded``: the agent's
    ``export_unguarded`` gauge and /readyz detail), not only in one log line (s36/w2)."""

    def refused(fd: int) -> None:
        raise OSError(refusal, os.strerror(refusal))

    monkeypatch.setattr(export_lock, "_flock", refused)  # the lock's one call to the kernel's flock
    path = tmp_path / "tetragon.log"
    path.write_bytes(b'{"a":1}\n')
    src = TetragonExportSource(str(path), queue=EventQueue(100), from_start=True, poll_interval=0.01)
    with caplog.at_level(logging.WARNING, logger="stellaops_runtime.sources.tetragon_export"):
        stop, task = await _start(src)
        try:
            await _until(lambda: src.queue.enqueued == 1)
            assert src.stats.connected and src.stats.unguarded and not src.stats.other_agent
            assert src.lock.take() == "unguarded"
        finally:
            await _stop(stop, task)
    assert caplog.text.count("a second agent following it would go unnoticed") == 1


def test_a_lock_taken_is_not_unguarded(tmp_path: Path) -> None:
    lock = ExportLock(str(tmp_path / "tetragon.log"))
    assert lock.take() == "held" and not lock.unguarded
    lock.release()


async def test_a_directory_replaced_while_followed_is_locked_again(tmp_path: Path, caplog) -> None:
    """Probe (s36/r1; H2 left it): the export directory renamed away and made again (its file with
    it) while an agent follows. The follower moves on to the new directory's file, but its lock
    stayed on the old directory's inode, so an agent started after it locked the new directory
    and followed the same file: every line counted twice. The follower now locks the new
    directory as soon as it sees it (and keeps the old lock until it stops)."""
    d = tmp_path / "tetragon"
    d.mkdir()
    path = d / "tetragon.log"
    path.write_bytes(b'{"a":1}\n')
    qa, qb = EventQueue(100), EventQueue(100)
    a = TetragonExportSource(str(path), queue=qa, from_start=True, poll_interval=0.01)
    b = TetragonExportSource(str(path), queue=qb, from_start=True, poll_interval=0.01)
    sa, ta = await _start(a)
    try:
        await _until(lambda: a.stats.connected and qa.enqueued == 1)
        d.rename(tmp_path / "tetragon.old")
        d.mkdir()
        path.write_bytes(b'{"b":2}\n')
        await _until(lambda: qa.enqueued == 2)  # the holder follows the new directory's file
        await _until(lambda: a.lock.covers(str(d)))
        sb, tb = await _start(b)
        try:
            await _until(lambda: b.stats.other_agent or b.stats.connected)
            assert not b.stats.connected, "B follows the file A follows: each line counted twice"
            with path.open("ab") as f:
                f.write(b'{"c":3}\n')
            await _until(lambda: qa.enqueued == 3)
        finally:
            await _stop(sb, tb)
    finally:
        await _stop(sa, ta)
    assert qb.enqueued == 0
    assert _lines(qa) == [b'{"a":1}', b'{"b":2}', b'{"c":3}']


async def test_a_directory_made_again_and_locked_first_by_another_is_said(tmp_path: Path, caplog) -> None:
    """The race the follower cannot win: another agent locked the new directory before the
    follower's next poll; both follow it, and the follower says so (an error, once)."""
    d = tmp_path / "tetragon"
    d.mkdir()
    path = d / "tetragon.log"
    path.write_bytes(b'{"a":1}\n')
    a = TetragonExportSource(str(path), queue=EventQueue(100), from_start=True, poll_interval=0.2)
    sa, ta = await _start(a)
    other = ExportLock(str(path))
    try:
        await _until(lambda: a.stats.connected)
        with caplog.at_level(logging.ERROR, logger="stellaops_runtime.sources.tetragon_export"):
            d.rename(tmp_path / "tetragon.old")
            d.mkdir()
            assert other.take() == "held"  # before the follower's next poll
            await _until(lambda: "was made again, and another agent locked it" in caplog.text)
    finally:
        other.release()
        await _stop(sa, ta)
    assert caplog.text.count("was made again") == 1


def test_a_directory_made_again_and_again_keeps_open_files_bounded(tmp_path: Path, caplog) -> None:
    d = tmp_path / "tetragon"
    d.mkdir()
    lock = ExportLock(str(d / "tetragon.log"))
    assert lock.take() == "held"
    try:
        with caplog.at_level(logging.ERROR, logger="stellaops_runtime.sources.tetragon_export"):
            for i in range(MAX_LATER + 3):
                d.rename(tmp_path / f"old{i}")
                d.mkdir()
                lock.keep()
        assert len(lock._later) == MAX_LATER
        assert caplog.text.count("was made again more than") == 1
        assert lock.unguarded  # the directory at the path is not locked: export_unguarded 1
    finally:
        lock.release()
    assert not lock._later


def test_each_of_the_two_errors_of_a_directory_made_again_is_said(tmp_path: Path, caplog) -> None:
    """Another agent locked a directory made again first, and later the directory was made again
    more than MAX_LATER times: two different troubles, each said once. One shared "warned" flag
    made the first to happen silence the other for good (s36/r1 noticed; w2)."""
    d = tmp_path / "tetragon"
    d.mkdir()
    lock = ExportLock(str(d / "tetragon.log"))
    other = ExportLock(str(d / "tetragon.log"))
    assert lock.take() == "held"
    try:
        with caplog.at_level(logging.ERROR, logger="stellaops_runtime.sources.tetragon_export"):
            d.rename(tmp_path / "first")
            d.mkdir()
            assert other.take() == "held"  # before the follower looks again
            lock.keep()
            lock.keep()
            other.release()
            for i in range(MAX_LATER + 2):
                d.rename(tmp_path / f"old{i}")
                d.mkdir()
                lock.keep()
        assert len(lock._later) == MAX_LATER
        assert caplog.text.count("was made again, and another agent locked it") == 1
        assert caplog.text.count("was made again more than") == 1
    finally:
        lock.release()


async def test_a_lock_refused_then_allowed_is_taken_and_one_taken_meanwhile_is_said(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    """A refusal may pass (NFS's lock manager back): the unguarded follower tries the lock again
    every RETRY_POLLS polls, so an agent started after that waits; if another agent took it
    meanwhile, both follow the file, and that is said (an error, once)."""
    refusing = [True]
    real = export_lock._flock

    def sometimes(fd: int) -> None:
        if refusing[0]:
            raise OSError(errno.ENOLCK, "No locks available")
        real(fd)

    monkeypatch.setattr(export_lock, "_flock", sometimes)
    path = tmp_path / "tetragon.log"
    path.write_bytes(b'{"a":1}\n')
    a = TetragonExportSource(str(path), queue=EventQueue(100), from_start=True, poll_interval=0.001)
    b = TetragonExportSource(str(path), queue=EventQueue(100), from_start=True, poll_interval=0.001)
    sa, ta = await _start(a)
    sb, tb = await _start(b)
    with caplog.at_level(logging.WARNING, logger="stellaops_runtime.sources.tetragon_export"):
        try:
            await _until(lambda: a.stats.unguarded and b.stats.unguarded)  # both follow, unguarded
            refusing[0] = False
            await _until(lambda: not a.stats.unguarded or not b.stats.unguarded)
            await _until(lambda: "while this one followed its files unguarded" in caplog.text)
            assert a.stats.unguarded != b.stats.unguarded  # one holds it, the other still says so
            third = ExportLock(str(path))
            assert third.take() == "other"  # a third agent waits
            third.release()
        finally:
            await _stop(sa, ta)
            await _stop(sb, tb)
    assert caplog.text.count("can be locked now") == 1
    assert caplog.text.count("while this one followed its files unguarded") == 1


def test_a_directory_made_again_that_refuses_the_lock_is_said_until_it_is_locked(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    """The export directory made again on a file system that refuses ``flock``: nothing keeps a
    second agent off the new directory's file, and the follower said nothing of it and still
    reported itself guarded (s36/w2). Now it is ``unguarded`` (export_unguarded 1), said once,
    and guarded again once the new directory can be locked."""
    d = tmp_path / "tetragon"
    d.mkdir()
    lock = ExportLock(str(d / "tetragon.log"))
    assert lock.take() == "held" and not lock.unguarded
    real = export_lock._flock
    try:
        with caplog.at_level(logging.WARNING, logger="stellaops_runtime.sources.tetragon_export"):
            d.rename(tmp_path / "first")
            d.mkdir()

            def refused(fd: int) -> None:
                raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

            monkeypatch.setattr(export_lock, "_flock", refused)
            lock.keep()
            lock.keep()
            assert lock.unguarded and not lock.covers(str(d))
            monkeypatch.setattr(export_lock, "_flock", real)
            lock.keep()
            assert not lock.unguarded and lock.covers(str(d))
        assert caplog.text.count("was made again and cannot be locked") == 1
    finally:
        lock.release()


async def test_a_symlink_to_the_export_file_and_its_target_are_one_lock(tmp_path: Path) -> None:
    """Probe (s37/b): agent A given /a/tetragon.log, a symlink to /b/tetragon.log, and agent B
    given /b/tetragon.log. The lock was taken on each configured path's own directory (/a and
    /b), so both followed the one file and counted every line twice. The lock is now on the
    directory of the file really followed, either way round."""
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    target = b_dir / "tetragon.log"
    target.write_bytes(b'{"a":1}\n')
    link = a_dir / "tetragon.log"
    link.symlink_to(target)
    qa, qb = EventQueue(100), EventQueue(100)
    a = TetragonExportSource(str(link), queue=qa, from_start=True, poll_interval=0.01)
    b = TetragonExportSource(str(target), queue=qb, from_start=True, poll_interval=0.01)
    sa, ta = await _start(a)
    try:
        await _until(lambda: a.stats.connected and qa.enqueued == 1)
        sb, tb = await _start(b)
        try:
            await _until(lambda: b.stats.other_agent or b.stats.connected)
            assert not b.stats.connected, "B follows the file A follows through a link: counted twice"
            with target.open("ab") as f:
                f.write(b'{"a":2}\n')
            await _until(lambda: qa.enqueued == 2)
        finally:
            await _stop(sb, tb)
    finally:
        await _stop(sa, ta)
    assert qb.enqueued == 0
    held = ExportLock(str(target))
    assert held.take() == "held"
    try:
        assert ExportLock(str(link)).take() == "other"  # the other way round too
    finally:
        held.release()


async def test_a_symlink_pointed_elsewhere_while_followed_locks_the_new_directory(tmp_path: Path) -> None:
    """The link at the path is pointed at a file of another directory while it is followed (the
    follower goes on to that file, as at a rotation): that directory is locked too on the next
    poll, so an agent given the new target waits."""
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    first, second = tmp_path / "b" / "tetragon.log", tmp_path / "c" / "tetragon.log"
    first.write_bytes(b'{"a":1}\n')
    second.write_bytes(b'{"b":2}\n')
    link = tmp_path / "a" / "tetragon.log"
    link.symlink_to(first)
    qa, qb = EventQueue(100), EventQueue(100)
    a = TetragonExportSource(str(link), queue=qa, from_start=True, poll_interval=0.01)
    b = TetragonExportSource(str(second), queue=qb, from_start=True, poll_interval=0.01)
    sa, ta = await _start(a)
    try:
        await _until(lambda: qa.enqueued == 1)
        tmp_link = tmp_path / "a" / "next.log"
        tmp_link.symlink_to(second)
        tmp_link.rename(link)  # repointed atomically
        await _until(lambda: qa.enqueued == 2)  # the follower reads the new target's file
        await _until(lambda: a.lock.covers(str(tmp_path / "c")))
        sb, tb = await _start(b)
        try:
            await _until(lambda: b.stats.other_agent or b.stats.connected)
            assert not b.stats.connected, "B follows the file A follows: each line counted twice"
        finally:
            await _stop(sb, tb)
    finally:
        await _stop(sa, ta)
    assert qb.enqueued == 0
    assert _lines(qa) == [b'{"a":1}', b'{"b":2}']


async def test_a_lock_kept_past_the_sources_stop_is_held_until_released(tmp_path: Path) -> None:
    """The agent keeps the export lock after its source stops, until its last flush stored the
    counts and the node's export position (agent/runner.py): another agent of the node that took
    the file in between would read where the store said the counts ended before that flush
    (s37/b). A source of its own (no agent) lets it go as it stops."""
    path = tmp_path / "tetragon.log"
    path.write_bytes(b'{"a":1}\n')
    src = TetragonExportSource(str(path), queue=EventQueue(100), from_start=True, poll_interval=0.01)
    src.keep_lock = True
    stop, task = await _start(src)
    await _until(lambda: src.queue.enqueued == 1)
    await _stop(stop, task)
    other = ExportLock(str(path))
    try:
        assert other.take() == "other"  # the agent's last flush is still to come
        src.lock.release()
        assert other.take() == "held"
    finally:
        other.release()
