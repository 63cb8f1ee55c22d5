"""/metrics never says "nothing in memory, nothing pending" while drained rows are on their way.

A drain runs on the pipeline thread; its rows join the outage buffer in a callback on the event
loop. A /metrics rendering (also a pipeline-thread job) queued behind the drain ran before that
callback and read ``hot_symbols_in_memory 0`` and ``hot_symbols_pending 0``, though the rows were
stored nowhere yet. A mid-session CI run of tests/e2e/test_export_restart_gap.py took that for
"every count stored", SIGKILLed the agent, and lost counts (deflate 17 of 24); an operator reading
the same two gauges before a restart would conclude the same. The rows are now counted in
``hot_symbols_pending`` from the end of the drain until the buffer holds them.

The real agent object and its pipeline thread; the event loop is held while the rendering runs,
so the drain's callback has not run when the gauges are read.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from stellaops_runtime.agent.metrics import AgentCollector
from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey

IMG = "sha256:" + "d" * 64


def gauge(text: str, name: str) -> float:
    line = next(ln for ln in text.splitlines() if ln.startswith(f"stellaops_runtime_{name} "))
    return float(line.split()[1])


async def test_drained_rows_are_pending_until_the_buffer_has_them(tmp_path: Path) -> None:
    agent = Agent(parse_config({"store": {"url": f"sqlite:///{tmp_path}/hs.db"}}), node_name="n1")
    rows = [
        HotSymbolDelta(HotSymbolKey(IMG, "/lib/libz.so.1", fn, EvidenceKind.INVOKED), 0, 2, 1, 1)
        for fn in ("crc32", "inflate", "deflate")
    ]
    agent.pipeline.drain = lambda: (rows, [])  # type: ignore[method-assign]
    registry = CollectorRegistry()
    registry.register(AgentCollector(agent))
    try:
        drain = asyncio.ensure_future(agent._drain())
        await asyncio.sleep(0)  # the drain's job is on the pipeline thread now
        # A rendering queued behind it, read while the loop is held: the callback cannot run.
        text = agent._worker.submit(lambda: generate_latest(registry).decode()).result(timeout=60)
        assert gauge(text, "hot_symbols_in_memory") == 0
        assert gauge(text, "hot_symbols_pending") == 3  # 0 before: the rows were counted nowhere
        assert await asyncio.wait_for(drain, 60)
        after = await agent.in_pipeline(lambda: generate_latest(registry).decode())
        assert gauge(after, "hot_symbols_pending") == 3  # now in the buffer, counted once
        assert agent.pending.pending_rows == 3 and agent.rows_in_transit == 0
    finally:
        agent._worker.shutdown(wait=True)
