"""A watch record ahead of the clock (the wall clock stepped back since the last agent) is a gap.

The last agent on the node watched until 30 s ago by the boot clock, and since then the wall
clock was set back an hour (NTP, ``date -s``): its record says an hour from now. The real agent,
started on the node, must still record the 30 s nobody watched, on the new clock (just before its
start) and on the old one (just after the record's time), so ``query observed`` for a function
that did not run answers unknown (exit 3). Before, the record was ignored as "future": no gap at
all, and the answer was "not observed" (exit 1) over time nobody watched.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path

import pytest

from stellaops_runtime.replay.server import ReplayServer
from tests.e2e import harness as h
from tests.e2e.test_agent_restart_gap import NODE, OBJS, merged, none_gaps, retimed, summed

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

S = 1_000_000_000


def covered(spans: list[tuple[dt.datetime, dt.datetime]], a: dt.datetime, b: dt.datetime) -> bool:
    return any(x <= a and b <= y for x, y in spans)


def at(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns / S, dt.UTC)


async def test_a_record_ahead_of_a_clock_stepped_back_is_a_gap_on_both_sides(tmp_path, pg_url) -> None:
    spool = tmp_path / "spool.jsonl"
    now_ns = time.time_ns()
    alive = now_ns + 3600 * S
    boot_id = (await asyncio.to_thread(Path("/proc/sys/kernel/random/boot_id").read_text)).strip()
    doc = {"format": "stellaops-runtime-alive", "node": NODE, "agent_id": f"{NODE}/old", "alive_ns": alive,
           "boot_id": boot_id, "boot_ns": time.clock_gettime_ns(time.CLOCK_BOOTTIME) - 30 * S}  # fmt: skip
    await asyncio.to_thread(Path(str(spool) + ".alive").write_text, json.dumps(doc))
    server = ReplayServer(retimed(tmp_path, OBJS, "all"))
    addr = await server.start("127.0.0.1:0")
    cfg, port = h.write_config(
        tmp_path, tetragon={"address": addr}, store={"url": pg_url, "spoolPath": str(spool)}
    )
    proc = h.start_agent(cfg, "--exit-when-idle", "2")
    try:
        await server.wait_served(len(OBJS), timeout=60)
        await h.wait_for(
            lambda: h.metric(h.scrape(port), "stellaops_runtime_source_outage_marks_total") >= 1,
            timeout=20,
            what="the hole marked (marked within a second of the first stream)",
        )
        m = h.scrape(port)
        code, out = await asyncio.to_thread(h.finish, proc, 60)
    finally:
        await server.stop(grace=0)
    assert code == 0, out
    assert h.metric(m, "stellaops_runtime_restart_gaps_total") == 1
    assert h.metric_sum(m, "stellaops_runtime_watch_record_ignored_total") == 0
    assert summed(pg_url, "invoked") == h.EXPECTED["uprobe_counts"]  # counts exact
    spans = merged(none_gaps(pg_url))
    utc = dt.UTC
    new_side = (
        dt.datetime.fromtimestamp((now_ns - 29 * S) / S, utc),
        dt.datetime.fromtimestamp(now_ns / S, utc),
    )
    old_side = dt.datetime.fromtimestamp(alive / S, utc), dt.datetime.fromtimestamp((alive + 29 * S) / S, utc)
    assert covered(spans, *new_side) and covered(spans, *old_side), spans
    digest = h.EXPECTED["images"][0]["digest"]
    since = (new_side[0] - dt.timedelta(minutes=2)).isoformat()
    until = (dt.datetime.now(utc) + dt.timedelta(minutes=2)).isoformat()
    args = ("--image", digest, "--store", pg_url, "--since", since, "--until", until)
    r = h.cli("query", "observed", "--function", "no_such_fn", *args)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    r = h.cli("query", "observed", "--function", "crc32", *args)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
