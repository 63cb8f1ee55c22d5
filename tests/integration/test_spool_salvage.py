"""A spool file with one batch no agent of this version can read keeps the others (s40/e).

A spool file is read back after a restart, possibly by another version of the agent (a
downgrade reading a newer agent's rows, a row type or evidence kind it does not know), so one
batch line may not decode while its digest is good. The whole file was set aside for it: every
other batch's counts were lost with it (their windows only a gap). Now the batches that decode
are replayed, each once through the ledger; the file is kept aside as it was (``.corrupt-*``,
``store_spool_rows_total{event="corrupt"}``) and the lost batch's counts make the time since the
node's latest stored window a gap, as for a file set aside whole (agent/watch_record_store.py
``spool_lost``; the spooled windows kept do not shorten it). A file whose digest does not match
is still set aside whole: any of its bytes may be wrong. Real SQLite and PostgreSQL stores.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

from stellaops_runtime.agent.spool_keeper import SpoolKeeper
from stellaops_runtime.store.batches import Batch, batch_to_json
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.pending import PendingWrites
from stellaops_runtime.store.spool import read_spool, read_spool_salvaged
from tests.integration.test_spool_row_types import counts, delta


def _line(agent: str, seq: int, fn: str, count: int) -> bytes:
    return json.dumps(batch_to_json(Batch(agent, seq, [delta(fn, count)])), sort_keys=True).encode()


def _file(path: Path, lines: list[bytes], rows: int) -> None:
    header = {"format": "stellaops-runtime-spool", "version": 1, "batches": len(lines), "rows": rows}
    body = b"".join(ln + b"\n" for ln in [json.dumps(header).encode(), *lines])
    path.write_bytes(body + json.dumps({"sha256": hashlib.sha256(body).hexdigest()}).encode() + b"\n")


def _keeper(path: Path) -> tuple[SpoolKeeper, PendingWrites, list[int]]:
    pending = PendingWrites(agent_id="node-1/next")
    keeper = SpoolKeeper(str(path), pending, lambda: "")
    lost: list[int] = []
    keeper.on_lost = lambda: lost.append(1)
    return keeper, pending, lost


def test_the_batches_around_one_that_does_not_decode_are_replayed(url: str, tmp_path: Path) -> None:
    path = tmp_path / "hot.spool"
    newer = json.loads(_line("node-1/old", 2, "f_b", 11))
    newer["units"][0]["evidence"] = "evidence-of-a-newer-agent"
    bad = json.dumps(newer, sort_keys=True).encode()
    _file(path, [_line("node-1/old", 1, "f_a", 5), bad, _line("node-1/old", 3, "f_c", 7)], 3)
    keeper, pending, lost = _keeper(path)
    store = open_store(url)
    try:
        keeper.load()
        assert lost == [1] and keeper.corrupt == 1 and keeper.window_ns is None
        assert [
            p.name.startswith("hot.spool.corrupt-") for p in tmp_path.iterdir() if "corrupt" in p.name
        ] == [True]
        assert asyncio.run(pending.flush(store))
        assert counts(store) == {"f_a": 5, "f_c": 7}
        keeper.done()
        assert not path.exists()
        keeper2, pending2, _ = _keeper(path)  # the copy set aside is never replayed
        keeper2.load()
        assert pending2.pending_rows == 0
    finally:
        store.close()


def test_a_file_whose_digest_does_not_match_is_still_set_aside_whole(tmp_path: Path) -> None:
    path = tmp_path / "hot.spool"
    _file(path, [_line("node-1/old", 1, "f_a", 5), _line("node-1/old", 3, "f_c", 7)], 2)
    path.write_bytes(path.read_bytes().replace(b'"invocation_count": 5', b'"invocation_count": 9'))
    keeper, pending, lost = _keeper(path)
    keeper.load()
    assert lost == [1] and keeper.corrupt == 1 and pending.pending_rows == 0 and not path.exists()


def test_a_foreign_spool_with_a_bad_batch_keeps_its_readable_batches_at_shutdown(tmp_path: Path) -> None:
    """Another agent of the node spooled since this one started (store/spool.py merges such a file
    into the one written): its readable batches are kept there, the file as it was is set aside."""
    path = tmp_path / "hot.spool"
    keeper, pending, _ = _keeper(path)
    keeper.load()  # nothing at start
    newer = json.loads(_line("node-1/other", 2, "f_b", 11))
    newer["units"][0]["t"] = "a-row-type-of-a-newer-agent"
    _file(path, [_line("node-1/other", 1, "f_a", 5), json.dumps(newer).encode()], 2)
    pending.add([delta("f_mine", 3)], [])
    assert keeper.save()
    got = read_spool_salvaged(path)
    assert got is not None and len(got[2]) == 1  # the line it cannot read is written on (below)
    assert [(b.agent_id, b.seq) for b in got[0]] == [("node-1/other", 1), ("node-1/next", 1)]
    assert keeper.corrupt == 1 and len(list(tmp_path.glob("hot.spool.corrupt-*"))) == 1


def test_a_foreign_spools_bad_batch_merged_at_shutdown_reaches_the_next_agent_with_its_gap(
    tmp_path: Path,
) -> None:
    """s40/RE left: the batch line of a foreign file merged at shutdown that does not decode was
    dropped from the merged file, so its counts were lost and no gap marked their windows (the
    next agent read a good file): "not observed" could be said over calls that ran. It is written
    on as it was: the next agent of this version keeps it aside and its gap starts at the earliest
    window it names (another agent of the path stored later windows); one of its version (here:
    the line made readable) replays it, each batch once through the ledger."""
    path = tmp_path / "hot.spool"
    keeper, pending, _ = _keeper(path)
    keeper.load()  # nothing at start
    newer = json.loads(_line("node-1/other", 2, "f_b", 11))
    newer["units"][0]["t"] = "a-row-type-of-a-newer-agent"
    newer["units"][0]["window_start_ns"] = early = newer["units"][0]["window_start_ns"] - 3600 * 10**9
    _file(path, [_line("node-1/other", 1, "f_a", 5), json.dumps(newer).encode()], 2)
    pending.add([delta("f_mine", 3)], [])
    assert keeper.save()
    nxt, pending2, lost = _keeper(path)
    nxt.load()
    assert lost == [1] and nxt.corrupt == 1 and nxt.lost_since_ns == early
    assert sorted((b.agent_id, b.seq) for b in pending2._batches) == [("node-1/next", 1), ("node-1/other", 1)]
    # An agent that can read the line replays it: the merged file holds it as it was, counted in its header.
    data = path.read_bytes().replace(b"a-row-type-of-a-newer-agent", b"delta")
    body = data.rstrip(b"\n").rpartition(b"\n")[0] + b"\n"
    path.write_bytes(body + json.dumps({"sha256": hashlib.sha256(body).hexdigest()}).encode() + b"\n")
    back = read_spool(path) or []
    assert [(b.agent_id, b.seq, b.rows) for b in back] == [
        ("node-1/other", 1, 1),
        ("node-1/next", 1, 1),
        ("node-1/other", 2, 1),
    ]


def test_a_foreign_spool_with_a_bad_batch_stays_whole_at_its_path_until_the_merged_file_replaces_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """s40/RE: the foreign file was moved aside before the merged file was written, so a full disk
    (or a kill) at that write lost its readable batches too: nothing at the path, nobody replays a
    ``.corrupt-*`` file. It is kept aside as a hard link: the path holds it until the rename."""
    path = tmp_path / "hot.spool"
    keeper, pending, _ = _keeper(path)
    keeper.load()  # nothing at start
    newer = json.loads(_line("node-1/other", 2, "f_b", 11))
    newer["units"][0]["t"] = "a-row-type-of-a-newer-agent"
    _file(path, [_line("node-1/other", 1, "f_a", 5), json.dumps(newer).encode()], 2)
    pending.add([delta("f_mine", 3)], [])

    def full(fd: int) -> None:  # where a full disk shows on a file system with delayed allocation
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", full)
        assert not keeper.save() and keeper.lost_rows == 1
    got = read_spool_salvaged(path)  # what the next agent reads
    assert got is not None and [(b.agent_id, b.seq) for b in got[0]] == [("node-1/other", 1)]
    assert keeper.corrupt == 1 and len(list(tmp_path.glob("hot.spool.corrupt-*"))) == 1


def test_a_foreign_spool_set_aside_whole_at_shutdown_leaves_the_next_agent_its_gap(tmp_path: Path) -> None:
    """s41/E2: a foreign spool file merged at shutdown whose digest does not match was set aside and
    the merged file said nothing of it: its counts were lost with no gap. A line no agent reads now
    stands for it in the merged file, naming the earliest window its text names."""
    path = tmp_path / "hot.spool"
    keeper, pending, _ = _keeper(path)
    keeper.load()  # nothing at start
    first = json.loads(_line("node-1/other", 1, "f_a", 5))
    first["units"][0]["window_start_ns"] = early = first["units"][0]["window_start_ns"] - 7200 * 10**9
    _file(path, [json.dumps(first).encode(), _line("node-1/other", 2, "f_b", 11)], 2)
    path.write_bytes(path.read_bytes().replace(b'"f_b"', b'"f_x"'))  # the digest no longer matches
    pending.add([delta("f_mine", 3)], [])
    assert keeper.save() and keeper.corrupt == 1
    nxt, pending2, lost = _keeper(path)
    nxt.load()
    assert lost == [1] and nxt.lost_since_ns == early
    assert [(b.agent_id, b.seq) for b in pending2._batches] == [("node-1/next", 1)]


@pytest.mark.parametrize("kind", ["fifo", "symlink-to-fifo"])
def test_a_fifo_at_the_spool_path_at_shutdown_never_hangs_the_stop(tmp_path: Path, kind: str) -> None:
    """s41/RE2: the line standing for a foreign file set aside whole (2509c01) read that file's text
    with ``Path.read_bytes``, which waits for ever on a FIFO (or a symlink to one: its own size is
    small) that the read before had refused: the agent's stop hung in ``save`` and its own spooled
    counts were never written. The text is read as the spool is (a regular file, no symlink)."""
    path = tmp_path / "hot.spool"
    keeper, pending, _ = _keeper(path)
    keeper.load()  # nothing at start
    fifo = tmp_path / "fifo" if kind == "symlink-to-fifo" else path
    os.mkfifo(fifo)
    if kind == "symlink-to-fifo":
        path.symlink_to(fifo)
    pending.add([delta("f_mine", 3)], [])
    saved: list[bool] = []
    stop = threading.Thread(target=lambda: saved.append(keeper.save()), daemon=True)
    stop.start()
    stop.join(10)
    hung = stop.is_alive()
    if hung:  # let the thread go: a writer opens the FIFO
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        stop.join(10)
    assert not hung, "save() waited on the FIFO"
    assert saved == [True] and keeper.corrupt == 1
    got = read_spool_salvaged(path)
    assert got is not None and [(b.agent_id, b.seq) for b in got[0]] == [("node-1/next", 1)]
    assert len(got[2]) == 1  # the line in the set-aside file's place (its gap)
