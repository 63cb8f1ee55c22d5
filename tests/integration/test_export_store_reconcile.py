"""A resuming export follower weighs its watch record against the store's export position (s37/b).

sources/export_store.py ``reconcile`` and the follower's use of it (sources/export_position_wait.py),
on real files: the record's checkpoint is used only when no other agent of the node stored
counts of the file past it; the store's position when it is further on in the file now at the
path; nothing (the file's end, never its start, and a gap) when it cannot be told. The real
agents are in tests/e2e/test_export_stale_record.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from stellaops_runtime.boot_id import this_boot
from stellaops_runtime.hotsymbols.clock_span import now_pair
from stellaops_runtime.sources import export_position_wait
from stellaops_runtime.sources.export_checkpoint import ExportPositions
from stellaops_runtime.sources.export_store import NONE, OWN, STORE, reconcile
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_export import TetragonExportSource

LINE = b'{"a":1}\n'


def _cp(path: Path, pos: int) -> dict[str, Any]:
    positions = ExportPositions(str(path), EventQueue(10))
    with path.open("rb") as f:
        f.seek(pos)
        positions.opened(f)
    cp = positions.checkpoint(0)
    assert cp is not None
    return cp


def _row(
    cp: dict[str, Any],
    *,
    agent: str = "other",
    boot: int | None = None,
    boot_id: str | None = None,
    final: bool = True,
):
    """The store's row; ``final``: its agent stopped with every count stored (s38/x)."""
    wall, now = now_pair()
    doc: dict[str, Any] = {"checkpoint": cp, "at_ns": wall, "at_boot": now if boot is None else boot}
    doc["boot_id"] = this_boot() if boot_id is None else boot_id
    if final:
        doc["final"] = True
    return (agent, doc)


def _weigh(path: Path, own: dict[str, Any], row: Any, moment: Any = None) -> tuple[str, Any]:
    moment = moment or now_pair()
    with path.open("rb") as f:
        how, cp, _, why = reconcile(f, str(path), (own, moment), row, "me")
    return how, (cp["pos"] if cp else why)


def test_the_record_against_the_store_in_one_file(tmp_path: Path) -> None:
    path = tmp_path / "tetragon.log"
    path.write_bytes(LINE * 10)
    own = _cp(path, 2 * len(LINE))
    assert _weigh(path, own, None) == (OWN, own["pos"])  # no row: agents before 0011
    assert _weigh(path, own, _row(_cp(path, 8 * len(LINE)))) == (STORE, 8 * len(LINE))
    assert _weigh(path, own, _row(_cp(path, len(LINE)))) == (OWN, own["pos"])  # behind: an older turn
    assert _weigh(path, own, _row(_cp(path, 8 * len(LINE)), agent="me")) == (OWN, own["pos"])
    how, why = _weigh(path, own, ("other", {"checkpoint": own}))
    assert how == NONE and "not well formed" in why
    # Another boot's row: its device number may differ, its inode and first bytes may not.
    assert _weigh(path, own, _row(_cp(path, 8 * len(LINE)), boot_id="another-boot")) == (STORE, 8 * len(LINE))


def test_a_row_further_on_that_is_not_final_is_not_resumed_at(tmp_path: Path) -> None:
    """s38/x: its agent may have spooled (or lost) counts of lines past it at its shutdown: read
    from there, a spooled line is counted twice once the spool is replayed (seen failing: STORE)."""
    path = tmp_path / "tetragon.log"
    path.write_bytes(LINE * 10)
    own = _cp(path, 2 * len(LINE))
    how, why = _weigh(path, own, _row(_cp(path, 8 * len(LINE)), final=False))
    assert how == NONE and "did not stop with every count stored" in why
    how, why = _weigh(path, own, _row(_cp(path, 8 * len(LINE)), final=False, boot_id="another-boot"))
    assert how == NONE and "spool" in why
    # Behind the record, or this agent's own: the record, as before (it is at least as far on).
    assert _weigh(path, own, _row(_cp(path, len(LINE)), final=False)) == (OWN, own["pos"])
    assert _weigh(path, own, _row(_cp(path, 8 * len(LINE)), agent="me", final=False)) == (OWN, own["pos"])
    # A final that is not true is no row of ours.
    for bad in (False, "true", 1, None):
        agent, doc = _row(_cp(path, 8 * len(LINE)))
        how, why = _weigh(path, own, (agent, {**doc, "final": bad}))
        assert how == NONE and "not well formed" in why, bad


def test_the_record_against_the_store_across_files(tmp_path: Path) -> None:
    path = tmp_path / "tetragon.log"
    path.write_bytes(LINE * 10)
    own = _cp(path, 4 * len(LINE))
    before = now_pair()
    path.rename(tmp_path / "tetragon-1.log")  # rotated: another agent followed the new file
    path.write_bytes(b'{"b":2}\n' * 6)
    newer = _cp(path, 3 * len(LINE))
    assert _weigh(path, own, _row(newer), before) == (STORE, newer["pos"])
    # The record's file at the path, the row of an older file: the record's.
    old = tmp_path / "old.log"
    old.write_bytes(LINE * 3)
    assert _weigh(path, _cp(path, 8), _row(_cp(old, 8))) == (OWN, 8)
    # The row's file is the one at the path but was truncated since: nothing can be resumed.
    row = _row(_cp(path, 6 * 8))
    with path.open("r+b") as f:
        f.truncate(2 * 8)
    how, why = _weigh(path, _cp(path, 8), row)
    assert how == NONE and "truncated or rewritten" in why
    # Neither is the file at the path: the record's (its rotated file) only if the row is older.
    other = tmp_path / "other.log"
    other.write_bytes(LINE * 3)
    far = _row(_cp(other, 8))
    assert _weigh(path, own, far, before)[0] == NONE
    assert _weigh(path, own, _row(_cp(other, 8), boot=0), before) == (OWN, own["pos"])


async def _follow(src: TetragonExportSource, n: int) -> list[bytes]:
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    loop = asyncio.get_running_loop()
    until = loop.time() + 60
    while src.queue.enqueued < n or not src.stats.connected:
        assert loop.time() < until, "the follower did not read what it should"
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 10)
    return [p for p, _ in src.queue.take(1000)]


async def test_the_follower_resumes_at_the_stores_position_and_never_replays(
    tmp_path: Path, monkeypatch
) -> None:
    path = tmp_path / "tetragon.log"
    path.write_bytes(b"".join(b'{"n":%d}\n' % i for i in range(6)))
    own, ahead = _cp(path, 8), _cp(path, 5 * 8)
    src = TetragonExportSource(str(path), queue=EventQueue(100), from_start=True, poll_interval=0.01)
    src.resume_outage(now_pair()[0] - 10**9, now_pair()[1] - 10**9)
    src.resume_checkpoint(own, now_pair())
    src.store_position_unknown("me")
    src.store_position(_row(ahead))
    assert await _follow(src, 1) == [b'{"n":5}'] and src.stats.resumed_at == 5 * 8
    # Every line before the final row's offset is stored, and the time before that agent's turn
    # was that agent's to mark: no gap since this agent's record (s38/x; before: up to the row's
    # moment, the other agent's whole turn).
    assert src.take_outage() is None
    # The row of another boot: nobody watched from the boot until that agent's turn on the old
    # boot ended, so the gap reaches the file's opening.
    src = TetragonExportSource(str(path), queue=EventQueue(100), from_start=True, poll_interval=0.01)
    src.resume_outage(now_pair()[0] - 10**9, now_pair()[1] - 10**9)
    src.resume_checkpoint(own, now_pair())
    src.store_position_unknown("me")
    src.store_position(_row(ahead, boot_id="another-boot"))
    assert await _follow(src, 1) == [b'{"n":5}'] and src.stats.resumed_at == 5 * 8
    assert src.take_outage() is not None
    # The store does not answer before waiting would cost (here: any line written meanwhile,
    # tests/integration/test_export_position_wait.py): from where the file ended when opened
    # (exportFromStart: never its start).
    monkeypatch.setattr(export_position_wait, "POSITION_WAIT_BYTES", 0)
    src = TetragonExportSource(str(path), queue=EventQueue(100), from_start=True, poll_interval=0.01)
    src.resume_outage(now_pair()[0] - 10**9, now_pair()[1] - 10**9)
    src.resume_checkpoint(own, now_pair())
    src.store_position_unknown("me")
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    loop = asyncio.get_running_loop()
    until = loop.time() + 60
    while "waiting for the store" not in src.stats.last_error:  # the file open, the lock taken
        assert loop.time() < until
        await asyncio.sleep(0.01)
    with path.open("ab") as f:
        f.write(b'{"n":6}\n')
    while src.queue.enqueued < 1:
        assert loop.time() < until
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert [p for p, _ in src.queue.take(1000)] == [b'{"n":6}'] and src.stats.resumed_at == -1
    assert src.take_outage() is not None  # the time since the last agent is a gap
