"""Faults of the spool file: shared by two agents, left half-written, impossible to write.

Probes (s29/h3), on the real files of a temporary directory and the agent's
own Flusher (the end-to-end cases of two agents are in tests/e2e/test_spool_shared.py):

- two agents in two containers are often both pid 1: the temporary file a
  spool is written to was named by pid alone, so one agent truncated and
  renamed away the other's half-written file (its rows gone, or its write
  failing at the rename);
- a spool file that is corrupt and was not loaded by this agent (another
  agent's, written since) is moved aside and counted when this agent spools,
  and this agent's rows are still written;
- an agent SIGKILLed while writing its spool leaves its temporary file (up
  to a whole spool) on the hostPath for good: the next agent removes it;
- a spool path that cannot be written: the rows are reported lost (exit 2
  follows), never said to be spooled.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from stellaops_runtime.agent.flusher import Flusher
from stellaops_runtime.contracts.config import AgentConfig
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.spool import (
    read_spool,
    read_spool_salvaged,
    spool_identity,
    spool_lock,
    write_spool,
)

S = 1_000_000_000
T0 = 1_763_971_200 * S
IMG = "sha256:" + "7" * 64


def delta(fn: str, n: int) -> HotSymbolDelta:
    key = HotSymbolKey(IMG, "/lib/libz.so.1", fn, EvidenceKind.INVOKED)
    return HotSymbolDelta(
        key=key, window_start_ns=T0, invocation_count=n, first_seen_ns=T0, last_seen_ns=T0 + 1
    )


def flusher(spool: Path, agent_id: str) -> Flusher:
    async def no_drain() -> None:
        return None

    cfg = AgentConfig(store={"url": "sqlite:///unused.db", "spoolPath": str(spool)})
    return Flusher(cfg, agent_id=agent_id, drain=no_drain, stop=lambda _reason: None)


def test_a_half_written_spool_of_another_agent_with_the_same_pid_is_never_touched(tmp_path: Path) -> None:
    spool = tmp_path / "hot.spool"
    theirs = tmp_path / f".hot.spool.tmp-{os.getpid()}"  # the name the old code gave our file too
    theirs.write_bytes(b"another agent's spool, being written")
    assert write_spool(spool, [Batch("node/a", 1, [delta("f", 3)])]) == 1
    assert theirs.read_bytes() == b"another agent's spool, being written"
    [b] = read_spool(spool) or []
    assert (b.agent_id, b.rows) == ("node/a", 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hot.spool.tmp-" + str(os.getpid()), "hot.spool"]


def test_a_corrupt_spool_another_agent_left_is_set_aside_and_ours_written(tmp_path: Path) -> None:
    spool = tmp_path / "hot.spool"
    f = flusher(spool, "node/ours")
    f.spool.load()  # nothing there at our start
    spool.write_bytes(b'{"format": "stellaops-runtime-spool", "version": 1}\n')  # another agent's, damaged
    f.pending.add([delta("ours", 5)], [])
    assert f.spool.save()
    assert f.spool.corrupt == 1 and "truncated" in f.spool.error
    assert len(list(tmp_path.glob("hot.spool.corrupt-*"))) == 1
    got = read_spool_salvaged(spool)  # with a line in the lost file's place: the next agent's gap (s41/E2)
    assert got is not None and len(got[2]) == 1
    [b] = got[0]
    assert (b.agent_id, b.rows, f.spool.spooled_rows) == ("node/ours", 1, 1)


def test_the_spool_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    spool = tmp_path / "hot.spool"
    with spool_lock(spool) as held:
        assert held
        with spool_lock(spool, wait=0.05) as again:  # another holder (flock: per open file)
            assert not again
    with spool_lock(spool, wait=0) as held:
        assert held


def test_a_replayed_spool_is_removed_only_if_it_is_the_file_that_was_loaded(tmp_path: Path) -> None:
    spool = tmp_path / "hot.spool"
    write_spool(spool, [Batch("node/old", 4, [delta("old", 2)])])
    f = flusher(spool, "node/ours")
    f.spool.load()
    # Another agent replaces the file meanwhile (its own rows merged with the old ones).
    write_spool(spool, [Batch("node/old", 4, [delta("old", 2)]), Batch("node/other", 1, [delta("o", 1)])])
    newer = spool_identity(spool)
    f.pending.take_all()  # as if the loaded batches were stored
    asyncio.run(f.flush())  # nothing pending: the loaded spool is done
    assert spool_identity(spool) == newer  # the other agent's file stays
    assert not f.spool._loaded


def test_a_killed_agents_temporary_spool_is_removed_by_the_next_one(tmp_path: Path) -> None:
    spool = tmp_path / "hot.spool"
    stale = tmp_path / ".hot.spool.tmp-1-0a0b0c0d"  # a SIGKILL at the end of the grace period
    stale.write_bytes(b"x" * 4096)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / ".hot.spool.tmp-1-01020304"  # being written right now by an agent without the lock
    fresh.write_bytes(b"y")
    other = tmp_path / ".other.spool.tmp-1-0a0b0c0d"
    other.write_bytes(b"z")
    os.utime(other, (old, old))
    f = flusher(spool, "node/ours")
    f.spool.load()
    assert not stale.exists() and fresh.exists() and other.exists()


def test_a_spool_path_that_cannot_be_written_reports_the_rows_lost(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"")
    f = flusher(blocker / "hot.spool", "node/ours")  # ENOTDIR, as a read-only or full disk would fail
    f.spool.load()
    f.pending.add([delta("a", 2), delta("b", 3)], [])
    assert f.spool.save() is False
    assert (f.spool.lost_rows, f.spool.spooled_rows) == (2, 0)
    assert f.pending.pending_rows == 2  # still held (counted as lost by the caller, never dropped silently)
