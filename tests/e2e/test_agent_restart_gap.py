"""The time between two agents on a node is a gap: a restart hole is never "watched".

Agent A streams the first half of the synthetic stream and is stopped (SIGTERM,
or SIGKILL after its counts are stored); later agent B, on the same node and
``store.spoolPath``, streams the second half. Nobody watched the node between
A's last known watching moment and B's first stream: the store must hold a
node-wide gap (source ``none``) over it, so ``query observed`` for a function
that did not run answers unknown (exit 3), not "not observed" (exit 1). The
node's first agent (no record yet, no window of the node in the store) has no
hole since an earlier agent; its only gap is the event cache's hold before its
first stream opened (tests/e2e/test_first_agent_window.py). Counts stay exact.

The stream is the synthetic one with its node set to the agent's node and its
event times set to the moment each half is served, so the hole lies in windows
in which the image was observed (a node-wide gap touches only those).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.replay.events import ReplayEvent, load_events
from stellaops_runtime.replay.server import ReplayServer
from stellaops_runtime.sources.event_hold import CACHE_HOLD_NS
from tests.e2e import harness as h
from tests.e2e.export_agents import none_gaps, summed

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

NODE = "e2e-node"
OBJS = h.stream_objects()
HALF = len(OBJS) // 2
# What Tetragon may still hold for a stream reaches back this far (sources/event_hold.py); the
# events here are stamped when served, so their lag adds at most seconds.
HOLD = dt.timedelta(seconds=CACHE_HOLD_NS / 1e9)


def retimed(
    tmp: Path, objs: list[dict[str, Any]], name: str, ahead: dt.timedelta = dt.timedelta(0)
) -> list[ReplayEvent]:
    """``objs`` as events of this node, all at the current time (plus ``ahead``)."""
    now = (dt.datetime.now(dt.UTC) + ahead).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    p = tmp / f"{name}.jsonl.gz"
    with gzip.open(p, "wt") as f:
        for o in objs:
            f.write(json.dumps({**o, "node_name": NODE, "time": now}) + "\n")
    res = load_events(p)
    assert not res.errors and len(res.events) == len(objs)
    return res.events


def merged(spans: list[tuple[dt.datetime, dt.datetime]]) -> list[tuple[dt.datetime, dt.datetime]]:
    out: list[tuple[dt.datetime, dt.datetime]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + dt.timedelta(milliseconds=1):
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def assert_first_agent_gap(url: str, started: dt.datetime, streamed: dt.datetime) -> None:
    """The node-wide gaps are one span reaching the event cache's hold before the first stream's
    opening (after ``started``, before ``streamed``) to its first message; with the native probes
    on, the switch's own gap until Tetragon first delivers joins it. The hold grows by the lag
    the first messages show: events stamped after ``started`` and in by ``streamed``."""
    spans = merged(none_gaps(url))
    assert len(spans) == 1, spans
    a, b = spans[0]
    assert b - a >= HOLD - dt.timedelta(milliseconds=1), spans
    lag = streamed - started
    assert started - HOLD - lag <= a and started <= b <= streamed, (started, spans, streamed)


def received(port: int) -> float:
    return h.metric(h.scrape(port), "stellaops_runtime_events_received_total", source="tetragon-grpc")


def all_stored(port: int, n: int) -> bool:
    m = h.scrape(port)
    return (
        h.metric(m, "stellaops_runtime_event_processing_latency_seconds_count") == n
        and h.metric(m, "stellaops_runtime_hot_symbols_in_memory") == 0
        and h.metric(m, "stellaops_runtime_hot_symbols_pending") == 0
        and h.metric(m, "stellaops_runtime_hot_symbols_flushed_total") > 0
    )


@pytest.mark.parametrize(
    ("sig", "native", "late"),
    [(signal.SIGTERM, False, False), (signal.SIGKILL, False, False), (signal.SIGTERM, True, False),
     (signal.SIGKILL, False, True)],
    ids=["sigterm", "sigkill", "sigterm-switch", "sigkill-tetragon-late"],
)  # fmt: skip
async def test_the_hole_between_two_agents_is_a_gap(tmp_path, pg_url, sig, native, late) -> None:
    """``late``: B starts while Tetragon is away and connects later; the gap runs to that moment."""
    spool = str(tmp_path / "spool.jsonl")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    t_begin = dt.datetime.now(dt.UTC)
    first = ReplayServer(retimed(tmp_path, OBJS[:HALF], "first"))  # serves, then holds the stream open
    addr_a = await first.start("127.0.0.1:0")
    conf = {"store": {"url": pg_url, "spoolPath": spool}, "native": {"enabled": native}}
    cfg_a, port_a = h.write_config(tmp_path / "a", tetragon={"address": addr_a}, **conf)
    proc_a = h.start_agent(cfg_a)
    second: ReplayServer | None = None
    proc_b: subprocess.Popen[str] | None = None
    try:
        await h.wait_for(lambda: received(port_a) == HALF, what="A received the first half")
        seen_all = dt.datetime.now(dt.UTC)  # A's last message arrived before this
        await h.wait_for(lambda: all_stored(port_a, HALF), what="A stored every count")
        # A is the node's first agent (no record, no window of the node in the store): no restart
        # gap, only the hold before its first stream opened, which Tetragon's cache reaches back to.
        await h.wait_for(lambda: bool(none_gaps(pg_url)), what="A's first-agent gap stored")
        assert_first_agent_gap(pg_url, t_begin, seen_all)
        await h.wait_for(lambda: Path(spool + ".alive").exists(), what="A's watch record")
        stopped = dt.datetime.now(dt.UTC)
        proc_a.send_signal(sig)
        code_a, out_a = await asyncio.to_thread(h.finish, proc_a, 60)
        assert code_a == (0 if sig == signal.SIGTERM else -signal.SIGKILL), out_a
        await first.stop(grace=0)
        await asyncio.sleep(1.0)  # nobody watches the node
        second = ReplayServer(retimed(tmp_path, OBJS[HALF:], "second"))
        addr_b = f"127.0.0.1:{h.free_port()}"
        if not late:
            await second.start(addr_b)
        b_started = dt.datetime.now(dt.UTC)
        cfg_b, port_b = h.write_config(tmp_path / "b", tetragon={"address": addr_b}, **conf)
        # Late: Tetragon comes a second after B is up (and gRPC retries after ~1 s more). B is
        # stopped (SIGTERM) once it stored its half: --exit-when-idle sat idle 2 s, or 8 s when late
        # (the idle time also bounded B's wait for a first connection).
        proc_b = h.start_agent(cfg_b)
        if late:
            await h.wait_for(lambda: bool(h.scrape(port_b)), what="B up, Tetragon away")
            await asyncio.sleep(1.0)
            await second.start(addr_b)
        await second.wait_served(len(OBJS) - HALF, timeout=60)
        b_streaming = dt.datetime.now(dt.UTC)  # B's first stream opened before this
        await h.wait_for(
            lambda: h.metric(h.scrape(port_b), "stellaops_runtime_source_outage_marks_total") >= 1,
            what="B's /metrics showing the hole marked",
        )
        await h.wait_for(lambda: all_stored(port_b, len(OBJS) - HALF), what="B stored every count")
        m = h.scrape(port_b)
        proc_b.send_signal(signal.SIGTERM)
        code_b, out_b = await asyncio.to_thread(h.finish, proc_b, 60)
    finally:
        if proc_a.poll() is None:
            proc_a.kill()
        if proc_b is not None and proc_b.poll() is None:
            proc_b.kill()
        await first.stop(grace=0)
        if second is not None:
            await second.stop(grace=0)
    assert code_b == 0, out_b
    assert "recorded as a gap" in out_b and "(last agent e2e-node/" in out_b, out_b
    assert h.metric(m, "stellaops_runtime_restart_gaps_total") == 1
    assert h.metric(m, "stellaops_runtime_source_outage_seconds_total") >= 1.0  # the second nobody watched
    assert h.metric_sum(m, "stellaops_runtime_watch_record_ignored_total") == 0
    # Counts exact against the stream's truth: nothing lost, nothing doubled.
    assert summed(pg_url, "invoked") == h.EXPECTED["uprobe_counts"]
    assert summed(pg_url, "on_stack") == dict(h.expected_stack_counts(OBJS))
    # The hole is one node-wide gap from A's last known watching moment to B's first stream.
    spans = merged(none_gaps(pg_url))
    assert len(spans) == 1, spans
    start, end = spans[0]
    assert t_begin - HOLD - dt.timedelta(seconds=30) <= start <= seen_all - HOLD, (t_begin, start, seen_all)
    assert start <= stopped and end >= b_started, (start, end, stopped, b_started)
    assert end <= b_streaming + dt.timedelta(seconds=1), (end, b_streaming)
    # A function that did not run, over a period including the hole: unknown, not "not observed".
    digest = h.EXPECTED["images"][0]["digest"]
    since = (t_begin - dt.timedelta(minutes=2)).isoformat()
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)).isoformat()
    args = ("--image", digest, "--store", pg_url, "--since", since, "--until", until)
    r = h.cli("query", "observed", "--function", "no_such_fn", *args)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    r = h.cli("query", "observed", "--function", "crc32", *args)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)


async def test_a_corrupt_record_is_ignored_and_the_agent_runs(tmp_path, pg_url) -> None:
    """A record cut by a crash (NUL bytes, no end): ignored with a logged reason, replaced, no gap.
    Every other kind of untrusted record: tests/unit/test_watch_record.py."""
    spool = tmp_path / "spool.jsonl"
    now = dt.datetime.now(dt.UTC)
    await asyncio.to_thread(
        Path(str(spool) + ".alive").write_text, '{"format": "stellaops-runtime-alive", \x00'
    )
    server = ReplayServer(retimed(tmp_path, OBJS, "all"))
    addr = await server.start("127.0.0.1:0")
    cfg, port = h.write_config(
        tmp_path, tetragon={"address": addr}, store={"url": pg_url, "spoolPath": str(spool)}
    )
    proc = h.start_agent(cfg, "--exit-when-idle", "2")
    try:
        await server.wait_served(len(OBJS), timeout=60)
        await h.wait_for(lambda: bool(h.scrape(port)), what="the agent's /metrics")
        m = h.scrape(port)
        code, out = await asyncio.to_thread(h.finish, proc, 60)
    finally:
        await server.stop(grace=0)
    assert code == 0, out
    assert "ignored (not_json)" in out, out
    assert h.metric(m, "stellaops_runtime_watch_record_ignored_total", reason="not_json") == 1
    assert h.metric(m, "stellaops_runtime_restart_gaps_total") == 0
    # The store holds no window of the node: the first agent's hold before its stream, no more.
    assert_first_agent_gap(pg_url, now, dt.datetime.now(dt.UTC))
    assert summed(pg_url, "invoked") == h.EXPECTED["uprobe_counts"]
    rec = json.loads(
        await asyncio.to_thread(Path(str(spool) + ".alive").read_text)
    )  # replaced by the agent's
    assert (
        rec["node"] == NODE
        and rec["agent_id"].startswith(f"{NODE}/")
        and rec["alive_ns"] > (now - HOLD).timestamp() * 1e9
    )
