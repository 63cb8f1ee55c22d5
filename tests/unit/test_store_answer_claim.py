"""agent/watch_record_store.py: no record claims past a hole the store's answer opened, before it is marked.

With no usable watch record the store says, as it opens, whether an agent ran on the node
before; the outage marker's tick hands that answer to the source (a restart gap since the
node's latest window, or, for the node's first agent, the event cache's hold before its
first stream: sources/tetragon_grpc.py ``first_agent``), and the marker takes it into the
pipeline on its next tick. A flush that stored counts in between must not write a watch
record claiming a moment past that hole's start: an agent killed then (SIGKILL, OOM) leaves
a record from which the next agent's gap starts, and the hole, never stored, would read
watched. Real SQLite store, real gRPC source, no network.
"""

from __future__ import annotations

import time
from pathlib import Path

from stellaops_runtime.agent import watch_record as wr
from stellaops_runtime.contracts.config import TetragonConfig
from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.hotsymbols.clock_span import now_pair
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_grpc import TetragonGrpcSource
from stellaops_runtime.store.engine import open_store

NODE = "node-a"


def _source() -> TetragonGrpcSource:
    """A gRPC source whose first stream opened a second ago and is still open (no network)."""
    src = TetragonGrpcSource(TetragonConfig(address="127.0.0.1:1"), queue=EventQueue(10))
    wall, boot = now_pair()
    src.stats.connects = 1
    src._connected_at, src._connected_boot = wall - 10**9, boot - 10**9
    src._first_opened = (src._connected_at, src._connected_boot)
    src.alive_ns = wall
    src._delivered = (src._connected_at, src._connected_boot)  # its first message came at once
    src.stats.connected = True
    return src


def _answered(tmp_path: Path, window_start: int | None) -> tuple[wr.WatchRecord, TetragonGrpcSource]:
    """No record; the agent ticks while the store is down, then the store opens and answers."""
    src = _source()
    rec = wr.WatchRecord(str(tmp_path / "spool.alive"), node=NODE, agent_id=f"{NODE}/2", queue=src.queue)
    rec.resume(src)  # no record: the store is asked
    rec.tick(src)  # the store is not open yet
    store = open_store(f"sqlite:///{tmp_path / 'hot.db'}", migrate=True)
    try:
        if window_start is not None:
            store.write([], [ObservationWindow("sha256:" + "a" * 64, NODE, window_start, event_count=1)])
        rec.store_opened(store)
    finally:
        store.close()
    return rec, src


def _claimed(rec: wr.WatchRecord) -> int | None:
    try:
        return wr.read_record(rec.path, node=NODE, now_ns=time.time_ns())[0]
    except FileNotFoundError:
        return None


def _flush(rec: wr.WatchRecord) -> None:
    rec.flushed(rec.flush_starts(), True)


def test_a_flush_between_the_answer_and_its_mark_claims_nothing_past_the_restart_gap(tmp_path: Path) -> None:
    since = (time.time_ns() // 10**9 - 600) * 10**9
    rec, src = _answered(tmp_path, since)
    _flush(rec)  # stored before the answer was even handed over
    rec.tick(src)  # handed to the source: an outage since ``since``, not in the pipeline yet
    _flush(rec)
    claimed = _claimed(rec)
    assert claimed is None or claimed <= since, (claimed, since)
    gap = src.take_outage()  # the marker's next tick takes it into the pipeline ...
    assert gap is not None and gap[0] == since
    rec.tick(src)  # ... and only then is a watching moment sampled and claimed
    _flush(rec)
    assert (_claimed(rec) or 0) > since


def test_a_flush_between_the_answer_and_its_mark_claims_nothing_past_the_first_agent_s_hold(
    tmp_path: Path,
) -> None:
    rec, src = _answered(tmp_path, None)  # the store holds no window of the node: the first agent
    _flush(rec)
    rec.tick(src)
    _flush(rec)
    opened = src._connected_at
    hold_start = opened - src.hold.ns()
    claimed = _claimed(rec)
    assert claimed is None or claimed <= hold_start, (claimed - hold_start) / 1e9 if claimed else None
    gap = src.take_outage()
    assert gap is not None and gap == (hold_start, opened), gap
    rec.tick(src)
    _flush(rec)
    assert (_claimed(rec) or 0) > hold_start
