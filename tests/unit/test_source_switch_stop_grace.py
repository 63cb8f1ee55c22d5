"""A stopping BCC source whose thread is hung holds the switch at most half of ``shutdown.graceSeconds``.

Defect (s45/TJ): the agent's shutdown cancels the source switch and waits for it before the queue's
last drain and the final flush (agent/shutdown.py, with no deadline of its own). In BCC mode the
switch gave a stopping source ``STOP_WAIT_SECONDS`` (5 s) to read its last records, then cancelled
it, and the cut last read waited up to ``CUT_LAST_READ_SECONDS`` (10 s) behind the call that held
the probes' thread: 15 s whatever the grace, so with ``graceSeconds: 2`` the deadline had passed
before the final flush began. Each wait is now at most ``STOP_SHARE`` (a quarter) of the grace.

The real NativeProbeSource and SourceSwitch, with test_native_cut_read.py's stand-in buffer whose
poll is held (a BCC call that does not return) until the test ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.agent.source_switch import BCC, STOP_SHARE, SourceSwitch
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.source import NativeProbeSource
from stellaops_runtime.sources.queue import EventQueue
from tests.unit.test_native_cut_read import _Probes, _until
from tests.unit.test_source_switch_overlap import config
from tests.unit.test_source_switch_overlap_attach import AF, in_thread

GRACE = 2.0


def test_a_hung_probes_thread_holds_the_switch_s_stop_at_most_half_the_grace(tmp_path: Any) -> None:
    cfg = config()
    cfg = dataclasses.replace(
        cfg,
        shutdown=dataclasses.replace(cfg.shutdown, grace_seconds=GRACE),
        store=dataclasses.replace(cfg.store, spool_path=str(tmp_path / "spool")),
    )
    sw = SourceSwitch(
        cfg, queue=EventQueue(10_000), pipeline=Pipeline(cfg, node_name="n"), in_pipeline=in_thread
    )
    sw._reload_check_at = sw._next_check = float("inf")
    probes = _Probes()
    src = NativeProbeSource(NativeConfig(uprobes=(AF,)), queue=sw.queue, kernel_source="")
    src._load = lambda: probes  # type: ignore[method-assign,assignment,return-value]
    sw.bcc, sw.mode, sw._bcc_since_ns = src, BCC, time.time_ns()
    sw._boundary(BCC, NativeConfig(uprobes=(AF,)))

    async def main() -> tuple[float, list[tuple[int, int]]]:
        sw._start(src.run)
        await _until(lambda: src.stats.connected, "load")
        written = probes.write(b"cut")
        probes.hold_poll = True  # the next poll takes the record, then does not return
        await _until(probes.held.is_set, "the reader's poll")
        start = time.monotonic()
        try:  # before the fix: 5 s + 10 s; given up here at 6 s
            await asyncio.wait_for(sw._stop_active(), 6.0)
            took = time.monotonic() - start
        finally:
            probes.release.set()  # the thread is free again: no thread outlives the test
        await _until(lambda: probes.closed > 0, "the close after the given-up last read")
        spans = src.take_unwatched()
        assert any(a <= written <= b for a, b in spans), (written, spans)  # the cut read: a gap
        return took, spans

    took, _ = asyncio.run(main())
    assert took < 2 * STOP_SHARE * GRACE + 0.5, took
