"""Events the agent's own BCC probes drop in the kernel are a gap, never a silent "not observed" (issue 14).

The real agent CLI with Tetragon unreachable falls back to its BCC probes on
the real kernel, tracing two syscalls under a per-cgroup rate limit of one
event per second. A workload calls ``getsid`` thousands of times (one
passes, the rest are rate-limited in the kernel) and then ``sched_rr_get_interval`` once,
which the empty bucket drops too. Then, in the SQLite store:

- the node-wide gap rows (one row per window: merged with the switch's own
  gap, source ``none``, when they share a window) carry exactly as many dropped
  events as the kernel's ``rate_limited`` counter says;
- ``query observed`` for ``sched_rr_get_interval`` (called, but dropped) answers unknown
  (exit 3) naming the dropped events, not "not observed";
- the programs' ``recursion_missed`` is exported where the kernel reports it.

And the source in-process: drops after the last periodic read are taken by
the read made when the probes stop.

Skips, with detect.py's reason, where BCC cannot run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.detect import Report, detect
from stellaops_runtime.native.source import NativeProbeSource
from stellaops_runtime.sources.queue import EventQueue
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e]

HOST = "host:e2e-node"
P = "stellaops_runtime_"
CALLS = 3000
# Two syscalls that no other process here makes (shells call getpgrp, many programs getppid, runuser
# getpriority: a getpriority of another test's runuser passed the bucket and was stored, 1 run in 4):
# the probes trace the whole node, and another test file runs beside this one (docs/development.md).
WORKLOAD = f"import os\nfor _ in range({CALLS}):\n    os.getsid(0)\nos.sched_rr_get_interval(0)\n"


@pytest.fixture(scope="module")
def report() -> Report:
    rep = detect(mount_tracefs=True, compile_test=True, cache_dir=str(Path(".cache/native").resolve()))
    if rep.posture < Posture.PASSIVE:
        pytest.skip(f"native probes cannot run here: {rep.missing}")
    return rep


def rate_limited(port: int) -> float:
    return h.metric(h.scrape(port), P + "native_kernel_events_total", probe="syscall", counter="rate_limited")


@pytest.mark.bpf
async def test_rate_limited_calls_are_a_gap_and_a_dropped_call_is_unknown(
    tmp_path: Path, report: Report
) -> None:
    db = tmp_path / "hot.db"
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"address": f"127.0.0.1:{h.free_port()}"},  # nobody listens
        store={"url": f"sqlite:///{db}"},
        native={
            "fallbackAfterSeconds": 0.2, "tetragonCheckSeconds": 600,
            "execEvents": False, "syscalls": ["getsid", "sched_rr_get_interval"],
            "ratePerSecond": 1, "burst": 1,
        },
    )  # fmt: skip
    agent = h.start_agent(cfg)
    try:
        await h.wait_for(
            lambda: h.metric(h.scrape(port), P + "native_connected") == 1,
            timeout=60,
            what="the BCC probes attached",
        )
        await asyncio.to_thread(subprocess.run, [sys.executable, "-c", WORKLOAD], check=True)
        # the counters are read every second: wait until the reads have seen the workload's drops,
        # and two reads in a row agree (nothing else is dropped meanwhile)
        await h.wait_for(
            lambda: rate_limited(port) >= CALLS - 1, timeout=60, what="the kernel's drop counters"
        )
        seen = [rate_limited(port)]
        for _ in range(40):
            await asyncio.sleep(0.6)
            seen.append(rate_limited(port))
            if len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3]:
                break
        samples = h.scrape(port)
        kernel_rate_limited = h.metric(samples, P + "native_kernel_events_total", probe="syscall",
                                       counter="rate_limited")  # fmt: skip
        kernel_drops = sum(
            v for (n, labels), v in samples.items()
            if n == P + "native_kernel_events_total"
            and dict(labels).get("counter") in ("rate_limited", "sampled_out", "lost", "recursion_missed")
        )  # fmt: skip
        assert kernel_drops == kernel_rate_limited  # nothing but the rate limit dropped here
        assert h.metric(samples, P + "native_drop_gaps_total") >= 1
        assert (
            P + "native_kernel_events_total",
            (("counter", "recursion_missed"), ("probe", "programs")),
        ) in samples
    finally:
        agent.send_signal(signal.SIGTERM)
        code, out = await asyncio.to_thread(h.finish, agent, 60)
    assert code == 0, out
    assert "Traceback" not in out, out
    # logged once when the episode started, naming the counter, and once with its totals
    assert out.count("native probes dropped events in the kernel (syscall rate_limited") == 1, out
    n = int(kernel_rate_limited)
    assert f"stopped dropping events: {n} in this episode (syscall rate_limited {n})" in out, out

    with sqlite3.connect(db) as c:
        gaps = c.execute(
            "SELECT SUM(dropped_events), MIN(gap_start), MAX(gap_end) FROM observation_windows "
            "WHERE image_digest = '' AND gap_start IS NOT NULL"
        ).fetchone()
        getsid = c.execute(
            "SELECT SUM(invocation_count) FROM hot_symbols WHERE image_digest = ? AND function_name = ?",
            (HOST, "__x64_sys_getsid"),
        ).fetchone()[0]
        rr = c.execute(
            "SELECT COUNT(*) FROM hot_symbols WHERE function_name = '__x64_sys_sched_rr_get_interval'"
        ).fetchone()[0]
    assert gaps[0] == kernel_rate_limited, gaps
    assert getsid and getsid + kernel_rate_limited == CALLS + 1  # each call counted or counted as dropped
    assert rr == 0  # the bucket was empty: the call was dropped in the kernel

    r = h.cli("query", "observed", "--store", f"sqlite:///{db}", "--image", HOST,
              "--function", "__x64_sys_sched_rr_get_interval", "--json")  # fmt: skip
    doc = json.loads(r.stdout)
    assert (r.returncode, doc["answer"]) == (3, "unknown"), doc
    assert sum(g["dropped_events"] for g in doc["gaps"]) == kernel_rate_limited, doc["gaps"]
    assert "dropped" in doc["reason"], doc
    # the call that passed is observed, as before
    r = h.cli(
        "query", "observed", "--store", f"sqlite:///{db}", "--image", HOST, "--function", "__x64_sys_getsid"
    )
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.bpf
async def test_drops_after_the_last_read_are_taken_when_the_probes_stop(report: Report) -> None:
    """The real source in-process: calls dropped less than a second before the stop (no periodic read
    since) are still queued, from the last read made at the stop."""
    cfg = NativeConfig(exec_events=False, syscalls=("getpriority",), rate_per_second=1, burst=1)
    src = NativeProbeSource(
        cfg,
        queue=EventQueue(10_000),
        kernel_source=report.kernel_source,
        ring_buffer=report.ok("ring buffer"),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    try:
        await asyncio.wait_for(src.ready.wait(), 60)
        assert src.stats.connected, src.stats.last_error
        await h.wait_for(lambda: bool(src.stats.kernel), timeout=60, what="the first counter read")
        assert src.take_drops() == []  # nothing dropped yet
        for _ in range(500):
            os.getpriority(os.PRIO_PROCESS, 0)
        stopped_ns = time.time_ns()
        stop.set()
        await asyncio.wait_for(task, 60)
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
    drops = src.take_drops()
    limited = src.stats.kernel["syscall"]["rate_limited"]
    assert limited >= 499  # the first call passed (a burst of 1), the rest were limited
    assert sum(d.total for d in drops) == limited == src.stats.dropped_total
    assert drops[-1].end_ns >= stopped_ns  # taken by the read at the stop
    assert drops[-1].start_ns < stopped_ns


@pytest.mark.bpf
async def test_a_full_perf_buffer_is_a_gap_of_the_records_lost_counted_once(report: Report) -> None:
    """One page of perf buffer and a storm of syscalls between two polls: records are lost, and the
    gap carries each of them once (the probes' ``lost`` and the perf ring's own count are the same
    records; both were summed, a gap of more dropped events than calls made)."""
    cfg = NativeConfig(exec_events=False, syscalls=("getsid",), ring_buffer_pages=1, force_perf_buffer=True)
    src = NativeProbeSource(
        cfg, queue=EventQueue(400_000), kernel_source=report.kernel_source, ring_buffer=False
    )
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    calls = 100_000
    storm = f"import os\nfor _ in range({calls}):\n    os.getsid(0)\n"
    try:
        await asyncio.wait_for(src.ready.wait(), 60)
        assert src.stats.connected, src.stats.last_error
        await asyncio.to_thread(subprocess.run, [sys.executable, "-c", storm], check=True)
        # the perf ring tells its reader of its losses when it next reads: wait until it did
        await h.wait_for(
            lambda: src.stats.kernel.get("perf_buffer", {}).get("lost", 0) > 0, timeout=60, what="perf losses"
        )
        stop.set()
        await asyncio.wait_for(task, 60)
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
    k = src.stats.kernel
    lost = k["syscall"]["lost"]
    assert 0 < k["perf_buffer"]["lost"] <= lost, k
    assert sum(d.total for d in src.take_drops()) == src.stats.dropped_total == lost
    assert lost <= k["syscall"]["seen"]
