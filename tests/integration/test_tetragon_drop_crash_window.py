"""A loss Tetragon counted but the agent had not stored yet is never left "watched" by a crash.

The agent learns of Tetragon's losses by scraping its counters: a rise makes a
span from the last good scrape, which the outage marker puts into the pipeline
and the next flush stores as a gap. Meanwhile the watch record
(``<store.spoolPath>.alive``) kept moving with every flush, to the stream's last
message. An agent killed (SIGKILL, OOM) in between left a record past the
span's start, and nothing else: the next agent's restart gap began at the
record, its first scrape took the counters as its baseline, and the windows in
which Tetragon lost events answered "watched". Widest when Tetragon's metrics
did not answer for a while (the span then reaches back to the last good scrape).

What a kill -9 leaves is what is on disk: the exporter reads the record at the
moment it answers again (the rise is known from then until the gap is stored).
The record must not be past the last good scrape before the failures. The
event cache's hold (sources/event_hold.py) is set to 0 here, as a Tetragon run
with ``--event-cache-retries 0`` has it: the record must not lean on it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.replay.events import ReplayEvent
from stellaops_runtime.replay.server import ReplayServer
from stellaops_runtime.sources import event_hold
from stellaops_runtime.wire.tetragon import events_pb2
from tests.e2e import harness as h
from tests.integration.test_tetragon_metrics_hostile import Exporter

OVER = "tetragon_notify_overflowed_events_total"


class FlakyExporter(Exporter):
    """Tetragon's /metrics, answering 503 while ``failing``; on the first good answer after that it
    reads the watch record (what a kill -9 right then would leave)."""

    def __init__(self, body: str, record: Path, db: Path) -> None:
        super().__init__(body)
        self.record = record
        self.db = db
        self.gaps_then: list[tuple[int, int]] = []  # the node-wide gaps stored at that moment
        self.failing = False
        self.failures = 0
        self.good: list[int] = []  # wall ns of each good answer
        self.at_recovery: tuple[int, int] | None = None  # (record alive_ns, last good before) then

    async def _serve(self, _: web.Request) -> web.Response:
        if self.failing:
            self.failures += 1
            return web.Response(status=503, text="restarting")
        if self.failures and self.at_recovery is None:
            alive = json.loads(self.record.read_text())["alive_ns"]
            self.at_recovery = (alive, self.good[-1])
            self.gaps_then = _gaps(self.db)
        self.good.append(time.time_ns())
        return web.Response(text=self.body)


def _kprobe() -> ReplayEvent:
    msg = events_pb2.GetEventsResponse(node_name="n1")
    msg.process_kprobe.function_name = "security_file_open"
    msg.process_kprobe.process.binary = "/usr/bin/app"
    msg.time.FromNanoseconds(time.time_ns() + 3_600 * 1_000_000_000)  # no lag: the hold stays 0
    return ReplayEvent.from_message(msg)


@pytest.mark.asyncio
async def test_the_record_stays_before_losses_not_yet_stored(tmp_path, sqlite_at_head, monkeypatch) -> None:
    monkeypatch.setattr(event_hold, "CACHE_HOLD_NS", 0)
    spool = tmp_path / "spool"
    record = Path(f"{spool}.alive")
    db = tmp_path / "hs.db"
    server = ReplayServer([_kprobe() for _ in range(5)], rate=50, loop=True)  # a busy stream
    addr = await server.start(f"127.0.0.1:{h.free_port()}")
    async with FlakyExporter(f"{OVER} 5\n", record, db) as ex:
        cfg = parse_config(
            {
                "nodeName": "n1",
                "tetragon": {"address": addr, "metricsUrl": ex.url},
                "hotSymbols": {"flushIntervalSeconds": 0.2},
                "symbols": {"enabled": False},
                "attribution": {"enabled": False},
                "lifecycle": {"enabled": False},
                "native": {"enabled": False},
                "store": {"url": sqlite_at_head(db), "spoolPath": str(spool)},
                "metrics": {"port": 0},
                "shutdown": {"graceSeconds": 5},
            }
        )
        agent = Agent(cfg, node_name="n1")
        assert agent._poller is not None
        agent._poller.interval = 0.1  # Tetragon's counters read every 0.1 s, not 15 s
        task = asyncio.create_task(agent.run())
        try:
            await h.wait_for(lambda: len(ex.good) >= 3 and record.exists(), what="scrapes and a record")
            ex.failing = True  # Tetragon's metrics server is away (a restart), its stream is not
            await h.wait_for(lambda: ex.failures >= 10, what="ten failed scrapes")
            ex.body = f"{OVER} 12\n"  # it lost 7 events meanwhile
            ex.failing = False
            await h.wait_for(lambda: ex.at_recovery is not None, what="the first good scrape after")
            await h.wait_for(lambda: _dropped(db) == 7, what="the loss stored as a gap")
        finally:
            agent.stop("test done")
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)
            await server.stop(grace=0)
    assert ex.at_recovery is not None
    alive, last_good = ex.at_recovery
    # The span of the 7 starts when the last good scrape asked (before its answer at last_good):
    # a record past it would make the next agent's gap start too late, unless that time is a gap
    # stored already: scrapes failing for over an interval are one, marked up to each tick
    # (tests/integration/test_tetragon_metrics_default_url.py), and the record claims no further.
    uncovered = _uncovered(ex.gaps_then, last_good, alive)
    assert uncovered < 1_000, uncovered / 1e9  # the store keeps microseconds (the record's ns cut too)


def _gaps(db: Path) -> list[tuple[int, int]]:
    """The node-wide gaps of n1 stored now (wall ns)."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT gap_start, gap_end FROM observation_windows"
            " WHERE node_name = 'n1' AND image_digest = '' AND gap_start IS NOT NULL"
        ).fetchall()
    finally:
        con.close()

    def ns(text: str) -> int:
        t = datetime.fromisoformat(text)
        t = t if t.tzinfo else t.replace(tzinfo=UTC)
        return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000

    return sorted((ns(a), ns(b)) for a, b in rows)


def _uncovered(gaps: list[tuple[int, int]], start: int, end: int) -> int:
    """Nanoseconds of [start, end] past the gaps' cover from ``start`` on."""
    at = start
    for a, b in gaps:
        if a > at:
            break
        at = max(at, b)
    return end - at


def _dropped(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        (n,) = con.execute(
            "SELECT COALESCE(SUM(dropped_events), 0) FROM observation_windows WHERE node_name = 'n1'"
        ).fetchone()
    finally:
        con.close()
    return int(n)
