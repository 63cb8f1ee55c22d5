"""The switch's stop does not wait behind a busy pipeline thread to mark the probes' drops (review RTJ, s45).

Defect: when the source switch ended (the agent's shutdown cancels it first, and awaits it with no
deadline of its own before the last drain, the final flush and the spool: agent/shutdown.py), its
``finally`` marked the BCC probes' drops and unwatched spans as gaps one by one, each awaited on the
pipeline thread. Behind the job holding that thread (a first drain attributing large SBOMs takes
seconds, a minute on a loaded node) the stop took as long as that job, past ``shutdown.graceSeconds``
and possibly the pod's grace (SIGKILL: the rows held for the store never spooled). TJ's 78b52bb5
bounded the probes' own thread at the stop, not this one. Now the marks are all handed to the pipeline
thread at once, in order, and waited for at most a share of the grace; queued there ahead of the last
drain, they are in it whether or not they were waited for.

A real pipeline thread (daemon_pool.DaemonPool, one worker, as the agent's) held by a job until the
test releases it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from stellaops_runtime.agent.source_switch import SourceSwitch
from stellaops_runtime.daemon_pool import DaemonPool
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.drop_counters import NativeDrop
from stellaops_runtime.native.source import NativeProbeSource
from stellaops_runtime.sources.queue import EventQueue
from tests.unit.test_source_switch import NODE, config, pipeline

WAIT = 0.3  # the share of the grace the stop waits for its marks


async def test_the_stop_hands_its_marks_over_and_they_run_ahead_of_the_last_drain() -> None:
    cfg = config()
    p = pipeline(cfg)
    thread = DaemonPool(max_workers=1, name="test-pipeline")

    async def in_pipeline(fn: Any, *args: Any) -> Any:  # the agent's (agent/runner.py)
        return await asyncio.shield(asyncio.get_running_loop().run_in_executor(thread, fn, *args))

    sw = SourceSwitch(cfg, queue=EventQueue(100), pipeline=p, in_pipeline=in_pipeline)
    sw.bcc = NativeProbeSource(NativeConfig(), queue=EventQueue(100), kernel_source="", ring_buffer=True)
    sw.bcc.stats.drops = [NativeDrop(1_000, 2_000, {("syscall", "lost"): 3}),
                          NativeDrop(2_000, 3_000, {("syscall", "rate_limited"): 4})]  # fmt: skip
    release = threading.Event()
    busy = thread.submit(release.wait, 30)  # a long drain holds the pipeline thread
    try:
        start = time.monotonic()
        await asyncio.wait_for(sw._mark_at_stop(WAIT), 10)  # before the fix: until the drain ended
        took = time.monotonic() - start
        # the last drain, queued after the stop returned: it must see both drops as gaps
        last_drain = thread.submit(lambda: dict(p.gaps.stats.native_dropped))
    finally:
        release.set()
    assert took < WAIT + 1.0, took
    assert busy.result(5) is True
    assert last_drain.result(5) == {NODE: 7}
    assert sw.bcc.stats.drops == [] and sw.stats.native_drop_gaps == 2
    thread.shutdown()


async def test_an_idle_pipeline_marks_them_before_the_stop_returns() -> None:
    cfg = config()
    p = pipeline(cfg)
    thread = DaemonPool(max_workers=1, name="test-pipeline-idle")

    async def in_pipeline(fn: Any, *args: Any) -> Any:
        return await asyncio.shield(asyncio.get_running_loop().run_in_executor(thread, fn, *args))

    sw = SourceSwitch(cfg, queue=EventQueue(100), pipeline=p, in_pipeline=in_pipeline)
    sw.bcc = NativeProbeSource(NativeConfig(), queue=EventQueue(100), kernel_source="", ring_buffer=True)
    sw.bcc.stats.drops = [NativeDrop(1_000, 2_000, {("syscall", "lost"): 5})]
    await asyncio.wait_for(sw._mark_at_stop(5.0), 10)
    assert p.gaps.stats.native_dropped == {NODE: 5}  # waited for: done when the stop returns
    assert sw.in_pipeline is in_pipeline  # the switch's own again
    thread.shutdown()
