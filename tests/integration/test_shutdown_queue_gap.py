"""Events still queued at the shutdown deadline are a gap, never a silent "not observed".

At the deadline the agent stops processing and counts what is still queued as dropped
(``events_dropped_total{reason="shutdown_deadline"}``). Those events were never counted, so the
windows the last flush stores must not claim the node was watched while they went by: before
this test they did, and ``query observed`` for a function that did not run answered "not
observed" (exit 1) although the dropped events could have held a call of it.

The real agent runs in this process against the real replay server and a SQLite store; its
pipeline thread is held busy (a job queued on it with the agent's own ``in_pipeline``) while the
stream arrives, so the events are queued when the stop comes, and released once the deadline
has dropped them. The stream is the synthetic one with its node set to the agent's and its times
to now, as a live Tetragon's are.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path

from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.replay.server import ReplayServer
from tests.e2e import harness as h
from tests.e2e.test_agent_restart_gap import NODE, OBJS, retimed

IMAGE = h.EXPECTED["images"][0]["digest"]


def _stored_events(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        (n,) = con.execute("SELECT COALESCE(SUM(event_count), 0) FROM observation_windows").fetchone()
    finally:
        con.close()
    return int(n)


async def test_events_dropped_at_the_shutdown_deadline_are_a_gap(tmp_path: Path) -> None:
    events = retimed(tmp_path, OBJS, "live")
    server = ReplayServer(events)
    addr = await server.start("127.0.0.1:0")
    db = tmp_path / "hs.db"
    cfg = parse_config(
        {
            "tetragon": {"address": addr},
            "store": {"url": f"sqlite:///{db}"},
            "hotSymbols": {"flushIntervalSeconds": 3600},
            "shutdown": {"graceSeconds": 4},
        }
    )
    agent = Agent(cfg, node_name=NODE)
    gate = threading.Event()
    task = asyncio.create_task(agent.run())
    try:
        await h.wait_for(lambda: agent.store is not None and agent.source_stats.connected, what="connected")
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
