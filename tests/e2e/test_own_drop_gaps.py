"""Events the agent itself drops (its receive queue is full) are a gap, never a silent "not observed".

Tetragon replays the synthetic stream (three times over) over gRPC as fast
as it can into an agent with the smallest receive queue, so the queue
overflows. Every event is either counted or counted as dropped, and a
function never called in an image observed while the agent was dropping
events is answered *unknown* (exit 3), naming the dropped events, not *not
observed*. The stream is replayed with its recorded times, so this checks
the gap in event time, not only on the wall clock.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from stellaops_runtime.replay.events import load_events
from stellaops_runtime.replay.server import ReplayServer
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e]

IMAGE = h.EXPECTED["images"][0]["digest"]


async def test_a_full_receive_queue_marks_a_gap(tmp_path) -> None:  # type: ignore[no-untyped-def]
    events = load_events(h.STREAM).events
    server = ReplayServer(events * 3)
    addr = await server.start("127.0.0.1:0")
    url = f"sqlite:///{tmp_path}/hot.db"
    cfg, port = h.write_config(tmp_path, tetragon={"address": addr, "queueSize": 100}, store={"url": url})
    proc = h.start_agent(cfg, "--exit-when-idle", "2")
    m: dict[Any, float] = {}
    try:
        while proc.poll() is None:
            m = h.scrape(port) or m
            await asyncio.sleep(0.1)
        code, out = await asyncio.to_thread(h.finish, proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
        await server.stop()
    assert code == 0, out
    dropped = h.metric(m, "stellaops_runtime_events_dropped_total", reason="queue_full")
    processed = h.metric_sum(m, "stellaops_runtime_event_processing_latency_seconds_count")
    assert dropped > 0, "the replay must overflow a 100-event queue"
    assert processed + dropped == len(events) * 3
    r = h.cli("query", "observed", "--store", url, "--image", IMAGE, "--function", "inflateBack", "--json")
    doc = json.loads(r.stdout)
    assert (r.returncode, doc["answer"]) == (3, "unknown"), doc
    assert sum(g["dropped_events"] for g in doc["gaps"]) > 0, doc["gaps"]
