"""A stall of the agent's event loop with the Tetragon stream open is unwatched time, a gap.

Defect (s32/h2): Tetragon drops events for a gRPC client that does not read (a bounded
per-client queue), silently. While the agent's event loop did not run (a long pause, a
slow call holding the loop, SIGSTOP) the stream stayed open, no outage was recorded, and
``query observed`` could answer "not observed" (exit 1) over time in which events may have
been lost. Now a stall longer than ``STALL_SECONDS`` (sources/loop_stall.py) is recorded as
a node-wide gap, like an outage, and the answer is unknown (exit 3).

The real agent (a subprocess, stopped with SIGSTOP and continued with SIGCONT) against the
real replay server, the synthetic stream (tests/fixtures/tetragon/synthetic, copied from
/work/shared/fixtures/tetragon) retimed to now.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal

import pytest

from stellaops_runtime.replay.server import ReplayServer
from stellaops_runtime.sources.loop_stall import STALL_SECONDS
from tests.e2e import harness as h
from tests.e2e.test_agent_restart_gap import NODE, OBJS, all_stored, none_gaps, received, retimed, summed

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


async def test_a_stopped_agent_marks_the_stall_as_a_gap(tmp_path, pg_url) -> None:
    assert NODE == "e2e-node"
    # Stamped in a window after the hold before the agent's first stream, itself a gap
    # (tests/unit/test_first_stream_gap.py): serves them, then holds the stream open.
    server = ReplayServer(retimed(tmp_path, OBJS, "all", ahead=dt.timedelta(seconds=150)))
    addr = await server.start("127.0.0.1:0")
    cfg, port = h.write_config(tmp_path, tetragon={"address": addr}, store={"url": pg_url})
    proc = h.start_agent(cfg)
    digest = h.EXPECTED["images"][0]["digest"]
    t_begin = dt.datetime.now(dt.UTC)
    try:
        await h.wait_for(lambda: received(port) == len(OBJS), what="the stream received")
        # Every message arrived by now, the first too: the first stream's hold gap ends at or before
        # it. Stored in parts on a loaded machine (a marker tick before the first message takes the
        # span up to that tick, the next one the rest, sources/open_outage.py), so the period starts
        # here rather than after the part stored first.
        delivered = dt.datetime.now(dt.UTC)
        await h.wait_for(lambda: all_stored(port, len(OBJS)), what="every count stored")
        await h.wait_for(lambda: bool(none_gaps(pg_url)), what="the hold before the first stream stored")
        first = none_gaps(pg_url)
        assert min(a for a, _ in first) <= t_begin  # the time before the agent watched: unknown
        since = max(delivered, max(b for _, b in first) + dt.timedelta(milliseconds=1)).isoformat()
        until = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=4)).isoformat()
        args = ("--image", digest, "--store", pg_url, "--since", since, "--until", until)
        r = h.cli("query", "observed", "--function", "no_such_fn", *args)
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)  # watched throughout: "not observed"
        assert not [s for s in none_gaps(pg_url) if s[1] > delivered]  # no gap after the first message
        stopped = dt.datetime.now(dt.UTC)
        proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(STALL_SECONDS + 1.5)  # the agent is stopped: it reads nothing meanwhile
        proc.send_signal(signal.SIGCONT)
        resumed = dt.datetime.now(dt.UTC)
        await h.wait_for(lambda: bool(none_gaps(pg_url)), what="the stall stored as a gap")
        m = h.scrape(port)
        proc.send_signal(signal.SIGTERM)
        code, out = await asyncio.to_thread(h.finish, proc, 60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        await server.stop(grace=0)
    assert code == 0, out
    assert "event loop did not run" in out and "recorded as a gap" in out, out
    assert h.metric(m, "stellaops_runtime_source_outage_marks_total") >= 1
    spans = [s for s in none_gaps(pg_url) if s[1] > delivered]  # past the first stream's hold
    assert spans and min(a for a, _ in spans) <= stopped + dt.timedelta(seconds=1), (spans, stopped)
    assert max(b for _, b in spans) >= resumed - dt.timedelta(seconds=1), (spans, resumed)
    assert summed(pg_url, "invoked") == h.EXPECTED["uprobe_counts"]  # counts untouched
    args = ("--image", digest, "--store", pg_url, "--since", since, "--until", until)
    r = h.cli("query", "observed", "--function", "no_such_fn", *args)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)  # not fully watched: unknown
    r = h.cli("query", "observed", "--function", "crc32", *args)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
