"""The export source's first file claims no window it did not watch whole (sources/tetragon_export.py).

An agent reading Tetragon's JSON export file from its end reads the lines written after it opened
the file; Tetragon's event cache writes events stamped up to its hold (32 s) before that, and the
lines before the end were not read: the hold before the opening is a node-wide gap, as for the
gRPC stream's first stream (tests/unit/test_first_stream_gap.py). Read from its start
(``exportFromStart``, or a file made after the agent looked), the file holds what Tetragon wrote
since it made it, and nothing before: the hold on either side of the first line's stamp is a gap
(its write may come up to the hold after its stamp; later lines may carry stamps up to the hold
before it), never the whole file's time up to the opening.

Real export source on a real file, the real pipeline counting its lines; no sleep over 0.2 s.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.sources.event_hold import CACHE_HOLD_NS
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_export import TetragonExportSource
from tests.e2e import harness as h

S = 1_000_000_000
NODE = "e2e-node"


def _lines(at_ns: int, n: int = 20) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at_ns // S)) + f".{at_ns % S:09d}Z"
    return "".join(json.dumps({**o, "node_name": NODE, "time": stamp}) + "\n" for o in h.stream_objects()[:n])


async def _first_read(tmp_path: Path, before: str, after: str, *, from_start: bool) -> tuple[Any, list[Any]]:
    """The export file holds ``before`` when the source opens it, then ``after`` is appended;
    returns the source's first outage span and the pipeline's rows (counted windows and gaps)."""
    path = tmp_path / "tetragon.log"
    path.write_text(before)
    q = EventQueue(100_000)
    src = TetragonExportSource(str(path), queue=q, from_start=from_start, poll_interval=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await h.wait_for(lambda: src.stats.connected, timeout=10, what="the file opened")
        with path.open("a") as f:
            f.write(after)
        want = (before.count("\n") if from_start else 0) + after.count("\n")
        await h.wait_for(lambda: src.stats.lines >= want, timeout=10, what="the lines read")
        span = src.take_outage()
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        src.lock.release()
    cfg = parse_config({"nodeName": NODE, "symbols": {"enabled": False}, "attribution": {"enabled": False}})
    pipeline = Pipeline(cfg, node_name=NODE)
    pipeline.process_json(q.take(len(q)))
    if span is not None:
        pipeline.gaps.source_gap(NODE, *span)
    return span, pipeline.drain()[1]


def _uncovered(rows: list[Any]) -> list[int]:
    """Windows with counted events and no node-wide gap row: what reads watched."""
    gapped = {w.window_start_ns for w in rows if w.has_gap and w.image_digest == ""}
    return sorted({w.window_start_ns for w in rows if w.event_count and w.window_start_ns not in gapped})


@pytest.mark.asyncio
async def test_a_file_read_from_its_end_claims_nothing_before_it_was_opened(tmp_path: Path) -> None:
    opened = time.time_ns()
    cached = opened - 20 * S  # written after the opening, stamped before it: held by the cache
    span, rows = await _first_read(tmp_path, _lines(cached - 60 * S), _lines(cached), from_start=False)
    assert span is not None, "no gap: the time before the agent opened the file reads watched"
    assert not _uncovered(rows), _uncovered(rows)
    assert span[0] <= cached and span[1] >= opened
    assert span[0] >= opened - CACHE_HOLD_NS - S


@pytest.mark.asyncio
async def test_a_file_read_from_its_start_claims_nothing_before_its_first_line(tmp_path: Path) -> None:
    first = time.time_ns() - 3_600 * S  # an hour of lines already in the file: those are watched
    span, rows = await _first_read(tmp_path, _lines(first), _lines(first + 600 * S), from_start=True)
    assert span is not None, "no gap: the window of the file's first line reads watched from its start"
    assert span[0] <= first - CACHE_HOLD_NS + S and span[1] >= first + CACHE_HOLD_NS - S, span
    # ... and no more: the lines' time after the hold is what the file watched.
    assert span[1] <= first + CACHE_HOLD_NS + S, (span[1] - first) / S
    assert [w for w in _uncovered(rows) if w <= first] == []


@pytest.mark.asyncio
async def test_a_first_line_with_no_time_is_held_about_its_arrival(tmp_path: Path) -> None:
    """A file read from its start whose first line carries no time (or a hostile one): the hold is
    taken about the moment the line was read, never left out."""
    obj = {k: v for k, v in h.stream_objects()[0].items() if k != "time"}
    timeless = json.dumps({**obj, "node_name": NODE}) + "\n"
    before = time.time_ns()
    span, _ = await _first_read(tmp_path, timeless, _lines(time.time_ns()), from_start=True)
    after = time.time_ns()
    assert span is not None, "no gap about a first line with no time"
    assert before - CACHE_HOLD_NS <= span[0] <= after - CACHE_HOLD_NS and before <= span[1] <= after, span
