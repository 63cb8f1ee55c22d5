"""A live agent on a node that sends no event, lifecycle off, flushing less often than a window: never down.

Before migration 0015 a node's watched time ended at the start of its latest window (stamped by the
node's clock) and read as down three windows after it (store/coverage_open.py): an idle live node
whose agent writes no row (no event; no lifecycle rows with ``lifecycle.enabled`` off) read as
down, and with ``hotSymbols.flushIntervalSeconds`` longer than a window even a busy one between
flushes. Now the agent writes its proof of life at every flush, empty ones included
(store/node_liveness.py), and the open time starts only three of its flush intervals and 2 s after
the latest one. The real agent (gRPC from the replay server, which then stays open and silent, a
SQLite store, one-second windows, a flush every 1.5 s) is asked about over six windows after its
last event: no open gap (seen failing before the fix: an open gap from its last window on, three
windows after it). Once it is killed, the gap opens within that grace, from the moment it claimed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from stellaops_runtime.replay.server import ReplayServer
from stellaops_runtime.store.coverage_open import open_gaps
from stellaops_runtime.store.engine import open_store
from tests.e2e import harness as h
from tests.e2e.test_agent_killed_open_day import IMAGE, OBJS
from tests.e2e.test_agent_restart_gap import all_stored, received, retimed

pytestmark = [pytest.mark.e2e]


def proved(url: str) -> bool:
    """Whether the node's row is a proof of life, not the start row (written before its start)."""
    with open_store(url) as s, s.engine.connect() as c:
        q = "SELECT count(*) FROM node_liveness WHERE written_at >= started_at"
        return bool(c.execute(sa.text(q)).scalar_one())


def opened(url: str) -> list[tuple[str, dt.datetime]]:
    with open_store(url) as s, s.engine.connect() as c:
        # SQLite on this host: its clock is the store's
        return [(g.node_name, g.start) for g in open_gaps(c, image=IMAGE, asked=dt.datetime.now(dt.UTC))]


async def test_an_idle_live_agent_flushing_less_often_than_a_window_never_reads_as_down(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    url = sqlite_at_head(tmp_path / "hot.db")
    # stamped 15 s ahead, as in test_agent_killed_open_day.py: no hold of Tetragon's behind the stream
    server = ReplayServer(retimed(tmp_path, OBJS, "ahead", ahead=dt.timedelta(seconds=15)))
    addr = await server.start("127.0.0.1:0")
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"address": addr},
        hotSymbols={"aggregationWindowSeconds": 1, "flushIntervalSeconds": 1.5},  # lifecycle: off
        symbols={"hostRoot": "/"},
        attribution={"hostRoot": "/"},
        store={"url": url, "spoolPath": str(tmp_path / "spool.jsonl")},
        native={"enabled": False},
    )
    proc = h.start_agent(cfg)
    try:
        await h.wait_for(lambda: received(port) == len(OBJS), what="the agent received the stream")
        await h.wait_for(lambda: all_stored(port, len(OBJS)), what="the agent stored every count")
        # and wrote its first proof of life: until then its start row (written before its first rows,
        # claiming nothing) reads the node as down, by design (docs/evidence.md); the proof follows
        # the flush that stored the counts by up to a flush interval (seen: 1.5 s, and the loop below
        # failed at once in 7 runs of 7 at 01:10 UTC where it had passed in the clean-clone runs)
        await h.wait_for(lambda: proved(url), what="the agent's first proof of life")
        last = dt.datetime.now(dt.UTC)
        # six windows on, the stream open and silent: asked every half second, never open
        while dt.datetime.now(dt.UTC) < last + dt.timedelta(seconds=6):
            assert opened(url) == [], "a live idle node read as down"
            await asyncio.sleep(0.5)
        assert proc.poll() is None
        # every proof of life was written (a failed one is counted here: agent/flusher.py)
        assert h.metric(h.scrape(port), "stellaops_runtime_node_liveness_write_failures_total") == 0
        proc.send_signal(signal.SIGKILL)
        killed = dt.datetime.now(dt.UTC)
        code, out = await asyncio.to_thread(h.finish, proc, 60)
        assert code == -signal.SIGKILL, out
    finally:
        if proc.poll() is None:
            proc.kill()
        await server.stop(grace=0)
    # dead: within three flush intervals and 2 s (6.5 s) of its last proof the gap opens, from the
    # moment it claimed: now less the 32 s Tetragon's event cache may hold (sources/event_hold.py)
    await h.wait_for(lambda: bool(opened(url)), what="the open gap", timeout=10)
    ((node, start),) = opened(url)
    assert node == "e2e-node"
    assert killed - dt.timedelta(seconds=32 + 3) <= start <= killed - dt.timedelta(seconds=32), start
