"""A line of the JSON export too long to hold is dropped, counted once, and made a gap.

Probe (s29/h3): the export follower drops a line longer than ``MAX_LINE``
(memory) and counted it only in a field no metric read, once per read the
line spanned: the event was lost without a trace in ``events_dropped_total``
and without a gap, so a "not observed" could rest on the time it covered.
Now it is a drop of the receive queue (``reason="queue_bytes"``, as payloads
over the queue's byte bound) and, like every drop, a node-wide gap
(``EventQueue.take_drops``). The limit is lowered for the test.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

import pytest

from stellaops_runtime.sources import export_files, export_lines
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_export import TetragonExportSource


async def _until(cond, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


async def test_an_oversized_line_is_one_counted_drop_and_a_gap(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(export_lines, "MAX_LINE", 1000)
    path = tmp_path / "tetragon.log"
    path.write_bytes(b'{"a":1}\n')
    q = EventQueue(10_000)
    src = TetragonExportSource(str(path), queue=q, from_start=True, poll_interval=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await _until(lambda: len(q) == 1)
        with path.open("ab") as f:  # one line of 3,600 bytes, arriving in three reads
            for _ in range(3):
                f.write(b"x" * 1200)
                f.flush()
                await asyncio.sleep(0.15)  # read in between (if the machine is slow, at once: same)
            f.write(b'"}\n{"a":2}\n')
        await _until(lambda: len(q) == 2)
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)
    assert [p for p, _ in q.take(10)] == [b'{"a":1}', b'{"a":2}']  # the good lines around it
    assert (src.stats.oversized_lines, q.dropped, q.dropped_oversize) == (1, 1, 1)
    drops = q.take_drops()
    assert drops is not None and drops[2] == 1  # a gap over the drop


@pytest.mark.parametrize("extra", [0, 1])
def test_drop_oversize_counts_like_the_queues_own_byte_bound(extra: int) -> None:
    q = EventQueue(10)
    for _ in range(1 + extra):
        q.drop_oversize()
    assert (q.dropped, q.dropped_oversize, len(q), q.enqueued) == (1 + extra, 1 + extra, 0, 0)
    first, last, n = q.take_drops() or (0, 0, 0)
    assert n == 1 + extra and 0 < first <= last


async def test_a_60_mb_line_is_read_through_without_being_held(tmp_path: Path) -> None:
    """s32/h2: with the limit at 64 MiB a 60 MB export line was held whole (and copied): the agent
    peaked at 254 MB. The limit is 8 MiB (docs/configuration.md) and a line over it is read
    through to its newline holding nothing: Python's own allocations while the follower reads
    it stay a fraction of the line (tracemalloc counts every buffer, no RSS luck)."""
    path = tmp_path / "tetragon.log"
    with path.open("wb") as f:
        f.write(b'{"before":1}\n{"huge":"')
        block = b"x" * (1 << 20)
        for _ in range(60):
            f.write(block)
        f.write(b'"}\n{"after":2}\n')
    del block
    q = EventQueue(10_000)
    src = TetragonExportSource(str(path), queue=q, from_start=True, poll_interval=0.01)
    stop = asyncio.Event()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        task = asyncio.create_task(src.run(stop))
        try:
            await _until(lambda: src.stats.lines >= 2)
            await _until(lambda: q.enqueued + q.dropped_oversize >= 3)
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert [p for p, _ in q.take(10)] == [b'{"before":1}', b'{"after":2}']  # the good lines around it
    assert (src.stats.oversized_lines, q.dropped_oversize) == (1, 1)
    assert export_files.MAX_LINE <= 8 << 20  # the documented limit
    assert src.stats.longest_held <= export_files.MAX_LINE + export_files.CHUNK
    assert peak < 3 * export_files.MAX_LINE, f"{peak / 2**20:.1f} MiB held for one line"
