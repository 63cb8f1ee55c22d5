"""Events the agent itself drops (its receive queue is full) are a gap, never a silent "not observed".

The agent's own path, step by step and deterministic (a real overflow
depends on which of the replay server and the pipeline is faster): the
synthetic stream goes through the real receive queue, with half of it
dropped because the queue is full, into the real pipeline (the runner's
consumer steps: take, process, report the drops), then the drained rows go
to a real store and ``stella-runtime query`` is asked. Every event is
counted or counted as dropped, and a function never called in an image
observed while events were dropped is *unknown* (exit 3), naming the
dropped events. The stream keeps its recorded times, so this checks the
gap in event time, not only on the wall clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.store.engine import open_store
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e]

IMAGE = h.EXPECTED["images"][0]["digest"]


def test_a_full_receive_queue_marks_a_gap(tmp_path: Path, sqlite_at_head: Callable[[Path], str]) -> None:
    events = [e.payload for e in h.stream_events()]
    url = sqlite_at_head(tmp_path / "hot.db")  # at head (tests/conftest.py): not a migration test
    pipeline = Pipeline(parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}}),
                        node_name="agent-node")  # fmt: skip
    q = EventQueue(100)
    half = len(events) // 2
    for payload in events[:half]:  # the pipeline keeps up
        assert q.put(payload)
        pipeline.process_proto(q.take(512))
    assert q.take_drops() is None
    for payload in events[half : half + 300]:  # a burst the pipeline does not keep up with
        q.put(payload)
    dropped = q.dropped
    assert dropped == 200
    pipeline.process_proto(q.take(512))  # the runner's consumer: process, then report the drops
    drops = q.take_drops()
    assert drops is not None and drops[2] == dropped
    pipeline.note_own_drops(*drops)
    for payload in events[half + 300 :]:
        assert q.put(payload)
        pipeline.process_proto(q.take(512))
    assert pipeline.processed + dropped == len(events)
    deltas, windows = pipeline.drain()
    with open_store(url) as s:
        s.write(deltas, windows)
    r = h.cli("query", "observed", "--store", url, "--image", IMAGE, "--function", "inflateBack", "--json")
    doc = json.loads(r.stdout)
    assert (r.returncode, doc["answer"]) == (3, "unknown"), doc
    assert {g["dropped_events"] for g in doc["gaps"]} == {dropped}, doc["gaps"]
    assert "dropped" in doc["reason"]
