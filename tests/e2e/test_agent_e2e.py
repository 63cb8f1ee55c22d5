"""End to end: replay server (real gRPC on loopback) -> agent (real CLI process) -> real PostgreSQL.

Counts are asserted exactly against the synthetic stream's ground truth.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import time
from collections import Counter

import pytest
import sqlalchemy as sa

from stellaops_runtime.replay.server import ReplayServer
from stellaops_runtime.sources.event_hold import CACHE_HOLD_NS
from tests.e2e import harness as h
from tests.node_alive import each_node_alive_after

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

EVENTS = h.stream_events()
OBJS = h.stream_objects()
KIND_COUNTS = Counter(next(k for k in o if k.startswith("process_")) for o in OBJS)


def rows(url: str, evidence: str) -> dict[str, int]:
    eng = sa.create_engine(url)
    with eng.connect() as c:
        res = c.execute(
            sa.text(
                "SELECT image_digest, module, function_name, invocation_count FROM signals.hot_symbols "
                "WHERE evidence_kind = :e"
            ),
            {"e": evidence},
        )
        out = {f"{d}|{m}|{f}": n for d, m, f, n in res}
    eng.dispose()
    return out


def samples(url: str) -> list[str]:
    eng = sa.create_engine(url)
    with eng.connect() as c:
        out = [json.dumps(s) for (s,) in c.execute(sa.text("SELECT sample FROM signals.hot_symbols"))]
    eng.dispose()
    return out


def assert_exact_counts(url: str) -> None:
    assert rows(url, "invoked") == h.EXPECTED["uprobe_counts"]
    on_stack = rows(url, "on_stack")
    assert on_stack == dict(h.expected_stack_counts(OBJS))
    # The generator's own ground truth counts the innermost frame only: a lower bound.
    for key, n in h.EXPECTED["stack_frame_counts"].items():
        assert on_stack[key] >= n, key


async def test_replay_to_postgres_exact_counts_redaction_and_metrics(tmp_path, pg_url) -> None:
    server = ReplayServer(EVENTS)
    addr = await server.start("127.0.0.1:0")
    cfg, port = h.write_config(tmp_path, tetragon={"address": addr}, store={"url": pg_url})
    proc = h.start_agent(cfg, "--exit-when-idle", "2")
    try:
        m = await h.wait_processed(
            port,
            len(EVENTS),
            also=lambda m: h.metric_sum(m, "stellaops_runtime_hot_symbols_flushed_total") > 0,
            what="all events processed and a flush",
        )
        code, out = await _finish(proc)
    finally:
        await server.stop()
    assert code == 0, out
    assert server.served == len(EVENTS) == 3144

    # Metrics, scraped over HTTP while the agent ran.
    assert h.metric(m, "stellaops_runtime_events_total", kind="uprobe") == KIND_COUNTS["process_uprobe"]
    assert h.metric(m, "stellaops_runtime_events_total", kind="syscall") == KIND_COUNTS["process_kprobe"]
    assert h.metric(m, "stellaops_runtime_events_total", kind="loader") == KIND_COUNTS["process_loader"]
    assert h.metric(m, "stellaops_runtime_events_total", kind="exec") == KIND_COUNTS["process_exec"]
    assert h.metric(m, "stellaops_runtime_events_total", kind="exit") == KIND_COUNTS["process_exit"]
    secret_events = sum(1 for o in OBJS if any(s in json.dumps(o) for s in h.STREAM_SECRETS))
    assert h.metric(m, "stellaops_runtime_fields_redacted_total") == secret_events
    assert h.metric(m, "stellaops_runtime_events_dropped_total", reason="queue_full") == 0
    assert h.metric(m, "stellaops_runtime_event_processing_latency_seconds_count") == len(EVENTS)
    assert h.metric(m, "stellaops_runtime_tetragon_connected") == 1
    assert ("stellaops_runtime_witnesses_generated_total", ()) in m
    # The stream repeats itself: the fast path counted repeats (with the same counts, checked below).
    hits = h.metric(m, "stellaops_runtime_fastpath_hits_total")
    assert hits > 0 and hits + h.metric(m, "stellaops_runtime_fastpath_misses_total") <= len(EVENTS)

    assert_exact_counts(pg_url)
    stored = "\n".join(samples(pg_url))
    assert "[REDACTED]" in stored
    for secret in h.STREAM_SECRETS:
        assert secret not in stored, secret
    assert "hunter2" not in out  # nor in the agent's logs

    # The stored answers through the query CLI.
    each_node_alive_after(pg_url)  # the agent exits after the stream: its node ran on (tests/node_alive.py)
    digest = h.EXPECTED["images"][0]["digest"]
    r = h.cli("query", "observed", "--image", digest, "--function", "crc32", "--store", pg_url, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["observed"] is True
    r = h.cli("query", "observed", "--image", digest, "--function", "no_such_fn", "--store", pg_url)
    assert r.returncode == 1, r.stderr


def node_gaps(url: str) -> list[tuple[dt.datetime, dt.datetime, str]]:
    """Node-wide gap rows (no image): (gap_start, gap_end, source)."""
    eng = sa.create_engine(url)
    with eng.connect() as c:
        res = c.execute(
            sa.text(
                "SELECT gap_start, gap_end, source FROM signals.observation_windows "
                "WHERE image_digest = '' AND gap_end IS NOT NULL ORDER BY gap_start"
            )
        )
        out = [(a, b, src) for a, b, src in res]
    eng.dispose()
    return out


# With the BCC fallback on (the source switch, which never reaches its 30 s delay here) and off
# (the plain Tetragon source): a reconnect is an outage either way.
@pytest.mark.parametrize("native", [True, False], ids=["switch", "plain"])
async def test_reconnect_counts_exactly_what_was_served(tmp_path, pg_url, native) -> None:
    half = len(EVENTS) // 2
    first = ReplayServer(EVENTS[:half])
    addr = await first.start("127.0.0.1:0")
    cfg, port = h.write_config(
        tmp_path, tetragon={"address": addr}, store={"url": pg_url}, native={"enabled": native}
    )
    started = dt.datetime.now(dt.UTC)
    deadline = time.monotonic() + 90  # the agent starts and connects (slow on a loaded machine)
    # Stopped by SIGTERM once every event is processed (it flushes everything): --exit-when-idle
    # ended the agent during the outage the test makes when a loaded machine stretched it past 4 s.
    proc = h.start_agent(cfg)
    second = ReplayServer(EVENTS[half:])
    try:
        # A moment before the first server sent its last event (the outage starts at the agent's last
        # message): the last time it had sent at most half - 2 (the write of half - 1 may be under
        # way, not that of the last one). The server runs on this loop, so nothing is sent between
        # the check and the clock read; it is the agent's start at worst, never after the last send.
        before = dt.datetime.now(dt.UTC)
        while first.served < half:
            if first.served <= half - 2:
                before = dt.datetime.now(dt.UTC)
            if time.monotonic() > deadline:
                raise AssertionError(f"the first server sent {first.served} of {half} events in 90 s")
            await asyncio.sleep(0.005)
        await h.wait_for(
            lambda: (
                h.metric(h.scrape(port), "stellaops_runtime_events_received_total", source="tetragon-grpc")
                == half
            ),
            what="first half received",
        )
        stopped = dt.datetime.now(dt.UTC)
        await first.stop(grace=0)  # Tetragon restarts: the stream breaks
        await h.wait_for(
            lambda: h.metric(h.scrape(port), "stellaops_runtime_tetragon_stream_errors_total") >= 1,
            what="the agent to notice the broken stream",
        )
        await asyncio.sleep(1.5)  # Tetragon is away for a while: nobody watches the node
        await second.start(addr)
        await second.wait_served(len(EVENTS) - half, timeout=90)
        await h.wait_for(
            lambda: h.metric(h.scrape(port), "stellaops_runtime_tetragon_reconnects_total") >= 1,
            what="a reconnect",
        )
        back = dt.datetime.now(dt.UTC)
        await h.wait_processed(port, len(EVENTS))
        proc.send_signal(signal.SIGTERM)
        code, out = await _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await first.stop(grace=0)
        await second.stop(grace=0)
    assert code == 0, out
    assert first.served + second.served == len(EVENTS)
    assert_exact_counts(pg_url)
    # Tetragon replays nothing after a reconnect: the outage is a node-wide gap, never "not observed".
    gaps = [(a, b) for a, b, src in node_gaps(pg_url) if src == "none"]
    assert gaps, node_gaps(pg_url)
    start, end = min(a for a, _ in gaps), max(b for _, b in gaps)
    # From the last event the agent got, less what Tetragon may still have held then (32 s: the
    # recording's stamps are too old to be a backlog; sources/event_hold.py), not from when the test
    # saw it: on a loaded machine the scrapes that saw it can come seconds later. The hold before
    # the first stream is a gap too (tests/unit/test_first_stream_gap.py), and may merge with the
    # outage's in one window: the earliest start is no earlier than that (the outage's exact start:
    # tests/integration/test_tetragon_outage_start.py).
    hold = dt.timedelta(seconds=CACHE_HOLD_NS / 1e9)
    assert started - hold <= start <= stopped - hold + dt.timedelta(seconds=5), (before, start, stopped)
    assert end - start >= dt.timedelta(seconds=1.4), (start, end)  # the whole time away
    assert end <= back + dt.timedelta(seconds=1), (end, back)


async def test_store_outage_loses_nothing(tmp_path, pg, pg_url) -> None:
    server = ReplayServer(EVENTS, rate=1000)
    addr = await server.start("127.0.0.1:0")
    cfg, port = h.write_config(
        tmp_path, tetragon={"address": addr}, store={"url": pg_url}, hotSymbols={"flushIntervalSeconds": 0.3}
    )
    proc = h.start_agent(cfg, "--exit-when-idle", "3")
    try:
        await h.wait_for(
            lambda: h.metric(h.scrape(port), "stellaops_runtime_hot_symbols_flushed_total") > 0,
            what="a first flush",
        )
        pg.stop()
        try:
            await h.wait_for(
                lambda: h.metric(h.scrape(port), "stellaops_runtime_store_flush_failures_total") >= 2,
                what="flushes failing while PostgreSQL is down",
            )
            during = h.scrape(port)
        finally:
            pg.start()
        code, out = await _finish(proc)
    finally:
        await server.stop()
    assert code == 0, out
    assert h.metric(during, "stellaops_runtime_hot_symbols_pending") > 0
    assert h.metric(during, "stellaops_runtime_store_rows_dropped_total") == 0
    assert_exact_counts(pg_url)


async def _finish(proc):
    import asyncio

    return await asyncio.to_thread(h.finish, proc, 60)


async def test_store_down_at_start_then_up(tmp_path, pg, pg_url) -> None:
    server = ReplayServer(EVENTS)
    addr = await server.start("127.0.0.1:0")
    cfg, port = h.write_config(tmp_path, tetragon={"address": addr}, store={"url": pg_url})
    pg.stop()
    try:
        proc = h.start_agent(cfg, "--exit-when-idle", "3")
        await h.wait_for(
            lambda: (
                h.metric(h.scrape(port), "stellaops_runtime_events_received_total", source="tetragon-grpc")
                == len(EVENTS)
                and h.metric(h.scrape(port), "stellaops_runtime_store_flush_failures_total") >= 1
            ),
            what="events counted while the store is down",
        )
    finally:
        pg.start()
    try:
        code, out = await _finish(proc)
    finally:
        await server.stop()
    assert code == 0, out
    assert "not usable (will retry)" in out
    assert_exact_counts(pg_url)
