"""The source switch's proof-of-life moment follows Tetragon's open, silent stream (source_switch_gaps.py).

With ``native.enabled`` the agent's source is the switch (agent/optional_parts.py), also while it
reads Tetragon's gRPC stream. The switch had no ``live_ns``: the watch record's ``claimed`` moment
(agent/watch_record.py, the node's proof of life, store/node_liveness.py) fell back to its
``watching_ns``, the stream's last message less the hold, which stands still while the stream is
open and silent; once it trailed the proof's writes by more than the hold and largest backlog
(store/coverage_live.py) a live idle node read as down. Real parts: the switch, its Tetragon
source on the real replay server (open and silent once the stream is sent), the receive queue, the
watch record's own tick / flush_starts / flushed. Seen failing before: the claimed moment did not move.
"""

from __future__ import annotations

import asyncio

from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.agent.source_switch import TETRAGON, SourceSwitch
from stellaops_runtime.agent.watch_record import WatchRecord
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.replay.server import ReplayServer
from stellaops_runtime.sources.queue import EventQueue
from tests.e2e import harness as h

NODE = "switch-node"


async def in_thread(fn: object, *args: object) -> object:
    return fn(*args)  # type: ignore[operator]


async def test_a_silent_open_stream_read_through_the_switch_moves_the_claimed_moment() -> None:
    events = h.stream_events()[:20]
    server = ReplayServer(events)
    addr = await server.start("127.0.0.1:0")
    cfg = parse_config(
        {"tetragon": {"address": addr}, "symbols": {"enabled": False}, "native": {"fallbackAfterSeconds": 30}}
    )
    q = EventQueue(1000)
    pipeline = Pipeline(cfg, node_name=NODE)
    sw = SourceSwitch(cfg, queue=q, pipeline=pipeline, in_pipeline=in_thread)
    watch = WatchRecord("", node=NODE, agent_id=f"{NODE}/a1", queue=q)
    watch.source = sw
    stop = asyncio.Event()
    task = asyncio.create_task(sw.run(stop))

    def one_flush() -> tuple[int, int] | None:
        """The flush loop's steps (agent/draining.py): tick, take everything, flush, claim."""
        watch.tick(sw)
        sw.process(q.take(100))
        taken = watch.flush_starts()
        watch.flushed(taken, True)
        return watch.claimed

    try:
        await h.wait_for(lambda: sw.stats.received == len(events), timeout=20, what="the stream")
        assert sw.mode == TETRAGON and sw.tetragon.delivering
        first = one_flush()
        await asyncio.sleep(0.6)  # the stream open and silent
        second = one_flush()
    finally:
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop(grace=0)
    assert first is not None and second is not None
    assert second[0] - first[0] >= 500_000_000, (first, second)  # a live idle node is watched on
    assert second[1] - first[1] >= 500_000_000
