"""The spans of the export file an agent counted, and a resume that never reads them again (s39/x).

sources/export_checkpoint.py ``ExportPositions.spans``: the bytes of each file whose lines
were taken (where the agent began in it, to the checkpoint), carried by every batch and
written with its counts (store/export_spans.py). sources/export_store.py ``reconcile``: a
stored span of another agent reaching past the checkpoint an agent would resume at (a spool
replayed, which writes no position row) means nothing is resumed: the file is read from its
end with a gap, never those lines again. The stores are in
tests/integration/test_export_spans_store.py, the real agents in
tests/e2e/test_export_spool_whole_life.py.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from stellaops_runtime.hotsymbols.clock_span import now_pair
from stellaops_runtime.sources.export_checkpoint import ExportPositions
from stellaops_runtime.sources.export_store import NONE, OWN, STORE, reconcile
from stellaops_runtime.sources.queue import EventQueue

LINE = b'{"a":1}\n'


def _follow(positions: ExportPositions, q: EventQueue, f: Any, lines: int) -> None:
    for _ in range(lines):
        f.seek(f.tell() + len(LINE))
        assert q.put(LINE)  # queued: the running count moves
        positions.queued(f.tell())


def _take(q: EventQueue, n: int) -> None:
    assert len(q.take(n)) == n


def watched(tmp_path: Path, source: Any, queue: EventQueue) -> Any:
    """The flusher's pending writes of a stand-in agent of ``source`` (what
    agent/watch_record_attach.py ``attach_watch_record`` reads), its watch record attached."""
    from types import SimpleNamespace

    from stellaops_runtime.agent.watch_record_attach import attach_watch_record
    from stellaops_runtime.store.pending import PendingWrites

    pending = PendingWrites()
    agent = SimpleNamespace(
        config=SimpleNamespace(store=SimpleNamespace(spool_path=str(tmp_path / "hot.spool"))),
        node_name="node-a",
        agent_id="node-a/1",
        queue=queue,
        source=source,
        flusher=SimpleNamespace(pending=pending, spool=SimpleNamespace(window_ns=None), on_open=None),
        outages=SimpleNamespace(record=None),
    )
    attach_watch_record(agent)
    return pending


def test_spans_run_from_where_the_agent_began_to_the_lines_taken(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_bytes(LINE * 10)
    b.write_bytes(LINE * 10)
    q = EventQueue(100)
    positions = ExportPositions(str(a), q)
    ino_a, ino_b = os.stat(a).st_ino, os.stat(b).st_ino
    with a.open("rb") as fa, b.open("rb") as fb:
        fa.seek(4 * len(LINE))  # resumed at a checkpoint: the agent read nothing before it
        positions.opened(fa)
        assert positions.spans(0) == [[ino_a, 32, 32, ""]]
        _follow(positions, q, fa, 6)
        _take(q, 2)
        assert positions.spans(2) == [[ino_a, 32, 48, ""]]  # up to the lines taken, not those queued
        positions.opened(fb)  # rotated: the next file from its start
        _follow(positions, q, fb, 3)
        assert positions.spans(2) == [[ino_a, 32, 48, ""]]  # no line of b is taken yet: b is not named
        _take(q, 5)
        assert positions.spans(7) == [[ino_a, 32, 80, ""], [ino_b, 0, 8, ""]]
        fb.seek(0)  # truncated and read again from its start: one span, the least and the greatest
        positions.opened(fb)
        _follow(positions, q, fb, 1)
        _take(q, 2)
        assert positions.spans(9) == [[ino_a, 32, 80, ""], [ino_b, 0, 24, ""]]


def _cp(path: Path, pos: int) -> dict[str, Any]:
    positions = ExportPositions(str(path), EventQueue(10))
    with path.open("rb") as f:
        f.seek(pos)
        positions.opened(f)
    cp = positions.checkpoint(0)
    assert cp is not None
    return cp


def test_another_agents_stored_span_past_the_checkpoint_means_no_resume(tmp_path: Path) -> None:
    path = tmp_path / "tetragon.log"
    path.write_bytes(LINE * 20)
    ino = os.stat(path).st_ino
    own = _cp(path, 40)

    def weigh(spans: list[Any], row: Any = None) -> tuple[str, str]:
        with path.open("rb") as f:
            how, _, _, why = reconcile(f, str(path), (own, now_pair()), row, "me", spans=spans)
        return how, why

    # Y's spool, replayed: its counts of bytes 40..120 are stored, and no row says so.
    how, why = weigh([("y", ino, 40, 120, "")])
    assert how == NONE and "agent y" in why and "up to byte 120" in why
    assert weigh([("y", ino, 0, 40, "")])[0] == OWN  # before the checkpoint: nothing stored past it
    assert weigh([("y", ino + 1, 40, 120, "")])[0] == OWN  # another file's bytes
    assert weigh([("me", ino, 40, 120, "")])[0] == OWN  # the record's agent: its record is as far on
    # At another agent's final row: that agent's spans are its own; a third agent's past it are not.
    final_cp = _cp(path, 80)
    row = ("z", {"checkpoint": final_cp, "at_ns": now_pair()[0], "at_boot": 0, "boot_id": "", "final": True})
    assert weigh([("z", ino, 40, 80, "")], row)[0] == STORE
    assert weigh([("z", ino, 40, 80, ""), ("y", ino, 80, 120, "")], row)[0] == NONE


def test_a_file_that_took_a_deleted_files_inode_is_another_file(tmp_path: Path) -> None:
    """Tetragon's rotation deletes old backups, and a file made later may get one's inode: the spans
    of the old file (its first 1024 bytes other) are not lines of the new one stored."""
    path = tmp_path / "tetragon.log"
    path.write_bytes(LINE * 300)  # past 1024 bytes: its head is known
    ino = os.stat(path).st_ino
    q = EventQueue(400)
    positions = ExportPositions(str(path), q)
    with path.open("rb") as f:
        positions.opened(f)
        _follow(positions, q, f, 200)
        positions.read(f)  # read to byte 1600: its first 1024 bytes are known
        assert len(q.take(200)) == 200
        (span,) = positions.spans(200)
    head = hashlib.sha256((LINE * 300)[:1024]).hexdigest()
    assert span == [ino, 0, 1600, head]
    own = _cp(path, 1200)
    assert own["head_len"] == 1024 and own["head_sha256"] == head

    def weigh(spans: list[Any]) -> str:
        with path.open("rb") as f:
            return reconcile(f, str(path), (own, now_pair()), None, "me", spans=spans)[0]

    assert weigh([("old", ino, 0, 9000, "c" * 64)]) == OWN  # the deleted file's bytes
    assert weigh([("y", ino, 0, 1600, head)]) == NONE  # this file's: stored past the checkpoint
    assert weigh([("y", ino, 0, 1600, "")]) == NONE  # its head not known: taken as this file's


def test_an_export_agent_writes_spooled_counts_only_while_it_holds_the_export_lock(tmp_path: Path) -> None:
    """agent/watch_record.py wires the flusher's gate to the export source's lock: spooled export
    counts are checked only while no other agent of the node can be storing counts of the file."""
    from stellaops_runtime.sources.tetragon_export import TetragonExportSource

    export = tmp_path / "tetragon.log"
    export.write_bytes(LINE)
    source = TetragonExportSource(str(export), queue=EventQueue(10))
    pending = watched(tmp_path, source, source.queue)
    assert pending.spool_gate is not None and pending.spool_gate() is False  # not taken yet
    assert source.lock.take() == "held"
    try:
        assert pending.spool_gate() is True
    finally:
        source.lock.release()
    assert pending.spool_gate() is False
    # s40/e: while it does not hold the lock (unguarded), its replay's check is not exact.
    assert pending.spool_unlocked is not None and pending.spool_unlocked() is True
    assert source.lock.take() == "held"
    try:
        assert pending.spool_unlocked() is False
    finally:
        source.lock.release()


def test_an_agent_without_an_export_source_replays_spooled_counts_as_unlocked(tmp_path: Path) -> None:
    """s40/e: an agent with no export source (the gRPC stream) holds no export lock, so another
    agent's counts of a spooled batch's lines may be in flight while it is checked: its replay is
    weighed as unlocked (store/export_spans.py ``guard``)."""
    from types import SimpleNamespace

    pending = watched(tmp_path, SimpleNamespace(), EventQueue(10))  # no lock: not an export source
    assert pending.spool_gate is None  # nothing to wait for
    assert pending.spool_unlocked is not None and pending.spool_unlocked() is True


def test_a_rotated_resume_never_reads_again_the_new_files_stored_lines(tmp_path: Path) -> None:
    """s39/rx: a checkpoint in a file rotated beside the path is resumed there, then the file at
    the path is read from its start (sources/export_restart.py ``_resume_at``), so another agent's
    stored span of that new file (a spool replayed, which wrote no row; its successor killed before
    any count of its own) means its lines are stored: nothing is resumed. Before the fix only the
    checkpoint's file was checked and the new file's lines were counted a second time."""
    path, rotated = tmp_path / "tetragon.log", tmp_path / "tetragon.log.1"
    path.write_bytes(LINE * 20)
    own = _cp(path, 40)  # the record: byte 40 of the file before its rotation
    path.rename(rotated)
    path.write_bytes(LINE * 200)  # the new file, past 1024 bytes: its head is known
    new_ino = os.stat(path).st_ino
    head = hashlib.sha256((LINE * 200)[:1024]).hexdigest()

    def weigh(spans: list[Any]) -> tuple[str, str]:
        with path.open("rb") as f:
            how, _, _, why = reconcile(f, str(path), (own, now_pair()), None, "me", spans=spans)
        return how, why

    assert weigh([])[0] == OWN  # nothing stored of the new file: the rotated file is read on, then it
    how, why = weigh([("y", new_ino, 0, 800, head)])
    assert how == NONE and "agent y" in why and "rotated" in why, why
    assert weigh([("y", new_ino, 0, 800, "")])[0] == NONE  # its head not known: taken as this file's
    assert weigh([("y", new_ino, 0, 800, "d" * 64)])[0] == OWN  # a deleted file's that had its inode
    assert weigh([("y", new_ino, 0, 0, head)])[0] == OWN  # an empty span: no line stored
    assert weigh([("me", new_ino, 0, 800, head)])[0] == OWN  # the record's agent: its record is further


def test_a_file_rewritten_in_place_is_not_read_again_from_its_start_over_stored_lines(tmp_path: Path) -> None:
    """s39/rx: a file truncated and written again in place (copytruncate) keeps its inode but is
    not the checkpoint's file (its first bytes differ), and with exportFromStart it is read from its
    start; another agent's stored span of its new content (its head) was checked only against the
    checkpoint's old head, so those lines were counted again. Nothing is resumed now."""
    path = tmp_path / "tetragon.log"
    path.write_bytes(b'{"old":1}\n' * 200)  # 2000 bytes: the record's head is known
    own = _cp(path, 1500)
    ino = os.stat(path).st_ino
    with path.open("r+b") as f:  # copytruncate: the same inode, other content
        f.truncate(0)
        f.write(LINE * 200)
    assert os.stat(path).st_ino == ino
    head = hashlib.sha256((LINE * 200)[:1024]).hexdigest()

    def weigh(spans: list[Any]) -> tuple[str, str]:
        with path.open("rb") as f:
            how, _, _, why = reconcile(f, str(path), (own, now_pair()), None, "me", spans=spans)
        return how, why

    assert weigh([])[0] == OWN  # nothing stored of the new content (the resume then finds it rewritten)
    how, why = weigh([("y", ino, 0, 800, head)])
    assert how == NONE and "agent y" in why, why
    assert weigh([("y", ino, 0, 800, own["head_sha256"])])[0] == OWN  # the old content's, before the record


def test_a_deleted_files_span_longer_than_the_small_file_now_at_its_inode_is_not_its(tmp_path: Path) -> None:
    """s39/rx: a file under 1024 bytes has no known head, so its spans met every span of its inode,
    a deleted backup's too (Tetragon deletes old backups, a new file may get one's inode): a restart
    soon after a rotation on a quiet node lost its resume to a gap. A span reaching past the file's
    end now is not of it (a file only grows; truncated, its lines are new): its bytes are not there."""
    path, rotated = tmp_path / "tetragon.log", tmp_path / "tetragon.log.1"
    path.write_bytes(LINE * 20)
    own = _cp(path, 40)  # the record: byte 40, then the file is rotated
    path.rename(rotated)
    path.write_bytes(LINE * 10)  # the new file: 80 bytes, its head not known
    ino = os.stat(path).st_ino

    def weigh(cp: dict[str, Any], spans: list[Any]) -> str:
        with path.open("rb") as f:
            return reconcile(f, str(path), (cp, now_pair()), None, "me", spans=spans)[0]

    old = ("old", ino, 0, 9000, "c" * 64)  # a deleted 10 MB backup that had this inode
    assert weigh(own, [old]) == OWN  # the rotated file is read on, then the new one
    assert weigh(own, [("y", ino, 0, 80, "")]) == NONE  # the new file's own bytes, stored
    here = _cp(path, 40)  # resumed in the small file itself
    assert weigh(here, [old]) == OWN
    assert weigh(here, [("y", ino, 40, 80, "")]) == NONE
