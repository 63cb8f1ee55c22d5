"""Events still queued at the shutdown deadline are a gap, never a silent "not observed".

At the deadline the agent stops processing and counts what is still queued as dropped
(``events_dropped_total{reason="shutdown_deadline"}``). Those events were never counted, so the
windows the last flush stores must not claim the node was watched while they went by: before
this test they did, and ``query observed`` for a function that did not run answered "not
observed" (exit 1) although the dropped events could have held a call of it.

The real agent runs in this process against the real replay server and a SQLite store; its
pipeline thread is held busy (a job queued on it with the agent's own ``in_pipeline``) once half
the stream is processed, so the rest is queued when the stop comes, and released once the
deadline has dropped it. The stream is the synthetic one with its node set to the agent's and its times
to now, as a live Tetragon's are.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import json
import sqlite3
import threading
import time
from pathlib import Path

from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.replay.events import ReplayEvent, load_events
from stellaops_runtime.replay.server import ReplayServer
from tests.e2e import harness as h
from tests.e2e.test_agent_restart_gap import NODE, OBJS, retimed

IMAGE = h.EXPECTED["images"][0]["digest"]
WINDOW = 3600  # aggregation window (s)
RATE = 2000.0  # events/s served: the second half arrives while the pipeline thread is held


def _stored_events(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        (n,) = con.execute("SELECT COALESCE(SUM(event_count), 0) FROM observation_windows").fetchone()
    finally:
        con.close()
    return int(n)


async def test_events_dropped_at_the_shutdown_deadline_are_a_gap(tmp_path: Path) -> None:
    if (left := WINDOW - time.time() % WINDOW) < 30:  # the whole run in one aggregation window
        await asyncio.sleep(left + 1)
    events = retimed(tmp_path, OBJS, "live")
    server = ReplayServer(events, rate=RATE)
    addr = f"127.0.0.1:{h.free_port()}"  # nothing listens yet: the agent retries until it does
    db = tmp_path / "hs.db"
    cfg = parse_config(
        {
            "tetragon": {"address": addr},
            "store": {"url": f"sqlite:///{db}"},
            "hotSymbols": {"flushIntervalSeconds": 3600, "aggregationWindowSeconds": WINDOW},
            "shutdown": {"graceSeconds": 4},
            "metrics": {"port": 0},  # a free port: 8080 may be taken on a shared machine
        }
    )
    agent = Agent(cfg, node_name=NODE)
    gate = threading.Event()
    task = asyncio.create_task(agent.run())
    try:
        await server.start(addr)
        await h.wait_for(lambda: agent.pipeline.processed >= len(events) // 2, what="half processed")
        held = asyncio.ensure_future(agent.in_pipeline(gate.wait))  # the pipeline thread is busy
        await h.wait_for(lambda: agent.received == len(events), what="the whole stream received")
        agent.stop("test: stop with events queued")
        await h.wait_for(lambda: agent.dropped_at_shutdown > 0, what="the deadline's drop", timeout=30)
        dropped = agent.dropped_at_shutdown
        assert agent.queue.dropped == 0  # not also counted as reason="queue_full"
        gate.set()
        await held
        assert await asyncio.wait_for(task, 60) == 0
    finally:
        gate.set()
        agent.stop("test done")
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 60)
        await server.stop(grace=0)
    # Every event is counted once: stored, or dropped at the deadline.
    assert 0 < dropped < len(events)
    assert _stored_events(db) + dropped == len(events)
    r = h.cli("query", "observed", "--store", f"sqlite:///{db}", "--image", IMAGE,
              "--function", "inflateBack", "--json")  # fmt: skip
    doc = json.loads(r.stdout)
    assert (r.returncode, doc["answer"]) == (3, "unknown"), doc
    assert sum(g["dropped_events"] for g in doc["gaps"]) == dropped, doc["gaps"]


async def test_a_gap_handed_to_a_busy_pipeline_reaches_the_drain_after_its_caller_gave_up(
    tmp_path: Path,
) -> None:
    """The shutdown's last outage mark waits for the pipeline thread only until the deadline.

    When the thread is busy past it, the caller gives up; the mark must still run, before the
    last drain queued behind it, so the outage is a gap in what is stored. (Before, the job was
    cancelled unrun: the outage, and a batch of events, vanished.)
    """
    cfg = parse_config({"store": {"url": f"sqlite:///{tmp_path}/hs.db"}})
    agent = Agent(cfg, node_name=NODE)
    gate = threading.Event()
    marker = agent.outages
    span = (1_700_000_000 * 10**9, 1_700_000_090 * 10**9)
    marker.take = lambda: span  # the source reports one outage

    async def main() -> None:
        held = asyncio.ensure_future(agent.in_pipeline(gate.wait))
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(marker.mark(), timeout=0.2)  # as shutdown calls it
        finally:
            gate.set()
        await held
        _, windows = await agent.in_pipeline(agent.pipeline.drain)  # the last drain
        gaps = [(w.gap_start_ns, w.gap_end_ns) for w in windows if w.gap_end_ns]
        assert gaps and min(a for a, _ in gaps) <= span[0] and max(b for _, b in gaps) >= span[1], gaps

    try:
        await main()
    finally:
        agent._worker.shutdown(wait=True)


def _replayed(tmp: Path, base_s: int) -> list[ReplayEvent]:
    """The stream as a replayed one: event ``i`` at ``base_s + i`` seconds, long before it arrives."""
    p = tmp / "replayed.jsonl.gz"
    with gzip.open(p, "wt") as f:
        for i, o in enumerate(OBJS):
            t = dt.datetime.fromtimestamp(base_s + i, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            f.write(json.dumps({**o, "node_name": NODE, "time": t}) + "\n")
    res = load_events(p)
    assert not res.errors and len(res.events) == len(OBJS)
    return res.events


def _node_gaps(db: Path) -> list[tuple[dt.datetime, dt.datetime, int]]:
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT gap_start, gap_end, dropped_events FROM observation_windows"
            " WHERE image_digest = '' AND gap_end IS NOT NULL"
        ).fetchall()
    finally:
        con.close()
    return [(_utc(a), _utc(b), int(d)) for a, b, d in rows]


def _utc(v: object) -> dt.datetime:
    t = dt.datetime.fromisoformat(str(v))
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


async def test_events_of_a_replayed_stream_dropped_at_the_deadline_are_a_gap_over_their_times(
    tmp_path: Path,
) -> None:
    """A replayed (or delayed) stream's dropped events carry times after the last processed one, in
    later windows: the gap covers them, from the first dropped event's time to the last's. Before,
    it covered one instant (the last processed event's time), so those windows had no gap at all
    and a later agent's coverage there would answer "not observed" over events nobody counted."""
    base = int(time.time()) // 60 * 60 - 3 * 3600  # event i at base + i s: ~52 one-minute windows
    events = _replayed(tmp_path, base)
    server = ReplayServer(events, rate=RATE)
    addr = f"127.0.0.1:{h.free_port()}"
    db = tmp_path / "hs.db"
    cfg = parse_config(
        {
            "tetragon": {"address": addr},
            "store": {"url": f"sqlite:///{db}"},
            "hotSymbols": {"flushIntervalSeconds": 3600, "aggregationWindowSeconds": 60},
            "shutdown": {"graceSeconds": 4},
            "metrics": {"port": 0},  # a free port: 8080 may be taken on a shared machine
        }
    )
    agent = Agent(cfg, node_name=NODE)
    gate = threading.Event()
    task = asyncio.create_task(agent.run())
    try:
        await server.start(addr)
        await h.wait_for(lambda: agent.pipeline.processed >= len(events) // 2, what="half processed")
        held = asyncio.ensure_future(agent.in_pipeline(gate.wait))
        await h.wait_for(lambda: agent.received == len(events), what="the whole stream received")
        agent.stop("test: stop with events queued")
        await h.wait_for(lambda: agent.dropped_at_shutdown > 0, what="the deadline's drop", timeout=30)
        dropped = agent.dropped_at_shutdown
        gate.set()
        await held
        assert await asyncio.wait_for(task, 60) == 0
    finally:
        gate.set()
        agent.stop("test done")
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 60)
        await server.stop(grace=0)
    assert 0 < dropped < len(events)
    assert _stored_events(db) + dropped == len(events)
    gaps = _node_gaps(db)
    assert sum(d for _, _, d in gaps) == dropped, gaps
    # The queue is FIFO: the dropped events are the stream's last ones.
    first = dt.datetime.fromtimestamp(base + len(events) - dropped, dt.UTC)
    last = dt.datetime.fromtimestamp(base + len(events) - 1, dt.UTC)
    assert min(a for a, _, _ in gaps) <= first, (first, gaps)
    assert max(b for _, b, _ in gaps) >= last, (last, gaps)
    # Every minute window from the first dropped event's to the last's has its gap row.
    minutes = {a.replace(second=0, microsecond=0) for a, _, _ in gaps}
    m = first.replace(second=0, microsecond=0)
    while m <= last:
        assert m in minutes, (m, sorted(minutes))
        m += dt.timedelta(minutes=1)
