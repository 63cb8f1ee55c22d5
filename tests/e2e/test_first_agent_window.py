"""The node's first agent claims no time before its stream opened.

Tetragon's event cache sends a new stream events stamped up to its hold
(sources/event_hold.py: 32 s plus its lag) before the stream opened: calls of
processes it had not resolved yet. Calls it sent before to no listener are
gone. So the rows such events make must not make their window (or their UTC
day, when the agent starts just after midnight) read watched: the first
agent on a node, with no watch record and a store that holds no window of
the node, marks a node-wide gap from the opening less the hold to the
opening, as every later agent's restart gap already covers that time.

Here a real agent (a subprocess) is the node's first, and the replay server
serves it events stamped 20 s before it started. A function that did not run,
asked about the time before the agent started, must answer unknown (exit 3),
not "not observed" (exit 1); the counts stay exact.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
from pathlib import Path

import pytest

from stellaops_runtime.replay.events import load_events
from stellaops_runtime.replay.server import ReplayServer
from stellaops_runtime.sources.event_hold import CACHE_HOLD_NS
from tests.e2e import harness as h
from tests.e2e.export_agents import none_gaps, summed

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

NODE = "e2e-node"
OBJS = h.stream_objects()
EARLY = dt.timedelta(seconds=20)  # within the event cache's hold


async def test_the_first_agent_s_cached_events_do_not_make_the_time_before_it_watched(
    tmp_path: Path, pg_url: str
) -> None:
    stamped = dt.datetime.now(dt.UTC) - EARLY
    p = tmp_path / "early.jsonl.gz"
    with gzip.open(p, "wt") as f:
        for o in OBJS:
            f.write(
                json.dumps({**o, "node_name": NODE, "time": stamped.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}) + "\n"
            )
    res = load_events(p)
    assert not res.errors and len(res.events) == len(OBJS)
    server = ReplayServer(res.events)
    addr = await server.start("127.0.0.1:0")
    spool = str(tmp_path / "spool.jsonl")  # no record beside it: the store is asked, and has none
    cfg, _port = h.write_config(
        tmp_path, tetragon={"address": addr}, store={"url": pg_url, "spoolPath": spool}
    )
    started = dt.datetime.now(dt.UTC)
    proc = h.start_agent(cfg, "--exit-when-idle", "1")
    try:
        await server.wait_served(len(OBJS), timeout=60)
        code, out = await asyncio.to_thread(h.finish, proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
        await server.stop(grace=0)
    assert code == 0, out
    assert "the first agent on this node" in out, out
    assert summed(pg_url, "invoked") == h.EXPECTED["uprobe_counts"]
    digest = h.EXPECTED["images"][0]["digest"]
    args = ("--image", digest, "--store", pg_url)
    span = ("--since", (stamped - dt.timedelta(seconds=1)).isoformat(), "--until", started.isoformat())
    r = h.cli("query", "observed", "--function", "no_such_fn", *args, *span)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    r = h.cli("query", "observed", "--function", "crc32", *args, *span)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    # One node-wide gap reaching from the hold before the stream opened to the opening.
    gaps = none_gaps(pg_url)
    assert gaps, "no gap: the time before the first agent started reads watched"
    start = min(a for a, _ in gaps)
    end = max(b for _, b in gaps)
    assert start <= stamped, (start, stamped)
    # The hold grows by the lag the first messages show (stamped EARLY before the start, in by now).
    lag = dt.datetime.now(dt.UTC) - stamped
    assert start >= started - dt.timedelta(seconds=CACHE_HOLD_NS / 1e9) - lag - dt.timedelta(seconds=1), (
        start,
        started,
    )
    assert end >= started, (end, started)
