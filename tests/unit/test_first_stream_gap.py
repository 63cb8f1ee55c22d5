"""The time before an agent's first Tetragon stream delivered is a gap, whatever the configuration.

sources/tetragon_grpc.py: an agent that just started has watched nothing before its first
stream. Tetragon's event cache (and a Tetragon behind, by its lag) sends that stream events
stamped before it opened, and sent everything it notified earlier to no listener; and it adds
the stream's listener only when its handler runs, after the agent created the call. So the
span from the opening less the hold (sources/event_hold.py, with the lag the first messages
show) to the first message's arrival is a node-wide gap, and with it every window it touches:
else those windows' rows read watched and a function that ran there before the agent listened
answers "not observed".

Each test runs the real gRPC source against the real replay server, the real outage marker
and pipeline, one flush into a real SQLite store, and reads the store's rows, as the first
flush of an agent without ``store.spoolPath`` (no watch record, no store question) leaves
them. No sleep over 0.2 s.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.agent.outages import OutageMarker
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.agent.source_switch import SourceSwitch
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.replay.events import ReplayEvent
from stellaops_runtime.replay.server import ReplayServer
from stellaops_runtime.sources.event_hold import CACHE_HOLD_NS
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_grpc import TetragonGrpcSource
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.wire.tetragon import events_pb2
from tests.e2e import harness as h

NODE = "e2e-node"  # the recorded stream's node name
S = 1_000_000_000
EVENTS = 40


def _stamped(at_ns: int) -> list[ReplayEvent]:
    """The recorded stream's first events, every one stamped ``at_ns``."""
    out = []
    for e in h.stream_events()[:EVENTS]:
        msg = events_pb2.GetEventsResponse.FromString(e.payload)
        msg.node_name = NODE
        msg.time.FromNanoseconds(at_ns)
        out.append(ReplayEvent.from_message(msg))
    return out


class LateListener(ReplayServer):
    """Tetragon adding the stream's listener a while after the call reached it (its handler
    builds the filters first): what it notified meanwhile went to no listener."""

    listening_ns = 0

    async def _get_events(self, request: Any, context: Any) -> None:
        await asyncio.sleep(0.15)
        self.listening_ns = time.time_ns()
        await super()._get_events(request, context)


def _config(addr: str, *, native: bool) -> Any:
    """The agent's configuration for these tests: the replay server's address, nothing else on."""
    off = {"enabled": False}
    more = {"native": {"enabled": True}} if native else {"lifecycle": off, "native": off}
    return parse_config(
        {"nodeName": NODE, "tetragon": {"address": addr}, "symbols": off, "attribution": off, **more}
    )


async def _in_thread(fn: Any, *args: Any) -> Any:
    return fn(*args)


async def _first_flush(
    tmp_path: Path, server: ReplayServer, until: int = EVENTS
) -> tuple[list[tuple[int, int, int]], list[int]]:
    """The source's first stream delivers ``until`` events, the marker ticking, then the agent
    stops; one flush is stored. Returns the node-wide gap rows (window, gap start, gap end) and
    the windows of the events' rows."""
    addr = await server.start(f"127.0.0.1:{h.free_port()}")
    cfg = _config(addr, native=False)
    q = EventQueue(100_000)
    src = TetragonGrpcSource(cfg.tetragon, queue=q)
    pipeline = Pipeline(cfg, node_name=NODE)
    marker = OutageMarker(src, pipeline=pipeline, in_pipeline=_in_thread)
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await h.wait_for(lambda: src.stats.received >= 1, timeout=30, what="the first event")
        await marker.mark()  # the outage marker's ticks, as the events come in
        await h.wait_for(lambda: src.stats.received >= until, timeout=30, what="events")
    finally:
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop(grace=0)
    # The agent's last tick, at shutdown (the stream stopped): what it watched is no gap.
    assert src.take_outage() is None
    pipeline.process_proto(q.take(len(q)))
    deltas, windows = pipeline.drain()
    db = tmp_path / "hs.db"
    store = open_store(f"sqlite:///{db}", migrate=True)
    try:
        store.write(deltas, windows)
    finally:
        store.close()
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT window_start, gap_start, gap_end FROM observation_windows "
            "WHERE node_name = ? AND image_digest = '' AND gap_start IS NOT NULL",
            (NODE,),
        ).fetchall()
        counted = con.execute(
            "SELECT window_start FROM observation_windows WHERE node_name = ? AND event_count > 0", (NODE,)
        ).fetchall()
    finally:
        con.close()
    return [(_ns(w), _ns(a), _ns(b)) for w, a, b in rows], sorted({_ns(w) for (w,) in counted})


def _ns(text: str) -> int:
    t = dt.datetime.fromisoformat(text)
    t = t if t.tzinfo else t.replace(tzinfo=dt.UTC)
    return int(t.timestamp()) * S + t.microsecond * 1000


def _covered(gaps: list[tuple[int, int, int]], windows: list[int]) -> list[int]:
    """The windows with counted events and no node-wide gap row: what reads watched."""
    gapped = {w for w, _, _ in gaps}
    return [w for w in windows if w not in gapped]


@pytest.mark.asyncio
async def test_without_a_spool_path_the_first_stream_s_cached_events_claim_no_time(tmp_path: Path) -> None:
    stamped = time.time_ns() - 20 * S  # within the event cache's hold: events it held back
    started = time.time_ns()
    gaps, windows = await _first_flush(tmp_path, ReplayServer(_stamped(stamped)))
    assert gaps, "no gap: the time before the agent's first stream reads watched"
    assert windows and not _covered(gaps, windows), (_covered(gaps, windows), gaps)
    assert min(a for _, a, _ in gaps) <= stamped
    assert max(b for _, _, b in gaps) >= started
    assert min(a for _, a, _ in gaps) >= started - CACHE_HOLD_NS - 30 * S  # the hold and the lag, no more


@pytest.mark.asyncio
async def test_a_tetragon_minutes_behind_at_the_first_stream_is_covered_back_to_its_stamps(
    tmp_path: Path,
) -> None:
    stamped = time.time_ns() - 200 * S  # a backlog of minutes, far past the 32 s default hold
    # Paced: the later events come later, so the lag the ticks read grows as the stream goes on.
    # It stops while they come: its last tick reads the larger lag of the last ones.
    gaps, windows = await _first_flush(tmp_path, ReplayServer(_stamped(stamped), rate=100), EVENTS // 2)
    assert windows and not _covered(gaps, windows), (_covered(gaps, windows), gaps)
    assert min(a for _, a, _ in gaps) <= stamped, (min(a for _, a, _ in gaps) - stamped) / S


@pytest.mark.asyncio
async def test_the_time_before_tetragon_listens_on_the_new_stream_is_a_gap(tmp_path: Path) -> None:
    server = LateListener(_stamped(time.time_ns()))
    gaps, _ = await _first_flush(tmp_path, server)
    assert server.listening_ns
    end = max(b for _, _, b in gaps)
    # Calls Tetragon notified before it listened went to nobody: the gap reaches at least there.
    assert end >= server.listening_ns, (server.listening_ns - end) / 1e6


@pytest.mark.asyncio
async def test_the_switch_back_to_tetragon_is_a_gap_until_tetragon_listens() -> None:
    """agent/source_switch.py: the probes stopped (the switch's gap opened), the Tetragon stream's
    call is created, Tetragon's handler adds its listener later: the gap must reach that moment."""
    server = LateListener(_stamped(time.time_ns()))
    addr = await server.start(f"127.0.0.1:{h.free_port()}")
    cfg = _config(addr, native=True)
    pipeline = Pipeline(cfg, node_name=NODE)
    sw = SourceSwitch(cfg, queue=EventQueue(100_000), pipeline=pipeline, in_pipeline=_in_thread)
    sw._open_gap(time.time_ns())  # as the switch to Tetragon opens it, the probes asked to stop
    stop = asyncio.Event()
    task = asyncio.create_task(sw.tetragon.run(stop))
    spans = []
    try:
        while sw.tetragon.stats.received == 0 or sw._gap_from is not None:
            await sw._tick()  # the switch's ticks (agent: every 0.2 s or so) ...
            if (span := sw.take_outage()) is not None:  # ... and the outage marker's (every second)
                spans.append(span)
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop(grace=0)
    for span in spans:
        pipeline.gaps.source_gap(NODE, *span)
    gaps = [w for w in pipeline.drain()[1] if w.has_gap and w.image_digest == ""]
    assert server.listening_ns and gaps
    end = max(w.gap_end_ns for w in gaps)
    assert end >= server.listening_ns, (server.listening_ns - end) / 1e6
