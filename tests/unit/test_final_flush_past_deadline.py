"""A last flush entered with no time left still drains the aggregator before it spools (s46/F3).

Defect: when the shutdown's earlier steps (a flush hung in a black-holed store: its start row,
then its rows, each up to ``store.flushTimeout``) used the time to the drain's deadline,
``Flusher.final_flush`` spooled the buffer without draining: every count read since the last
drain reached neither the store nor the spool, and the agent exited 0
(tests/e2e/test_store_failures.py's black hole test). It now drains once before it spools; a drain
that cannot end in time is then the shutdown's to report as lost (agent/shutdown.py).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from stellaops_runtime.agent.flusher import Flusher
from stellaops_runtime.contracts.config import AgentConfig
from stellaops_runtime.contracts.hotsymbols import HotSymbolDelta
from stellaops_runtime.store.spool import read_spool
from tests.unit.test_pending import delta


async def test_a_final_flush_past_its_deadline_spools_the_counts_drained_then(tmp_path: Path) -> None:
    spool = tmp_path / "hot.spool"
    base = AgentConfig()
    cfg = dataclasses.replace(base, store=dataclasses.replace(base.store, spool_path=str(spool)))
    drains = []

    async def drain() -> None:  # the aggregator's counts read since the last drain
        drains.append(1)
        f.pending.add([delta("inflate", count=47)], [])

    f = Flusher(cfg, agent_id="n/a", drain=drain, stop=lambda _why: None)
    f.pending.add([delta("malloc", count=2)], [])  # drained earlier, its write aborted
    assert await f.final_flush(time.monotonic() - 0.1) is True
    assert drains == [1]
    batches = read_spool(spool)
    assert batches is not None
    counts = {
        u.key.function_name: u.invocation_count
        for b in batches
        for u in b.units
        if isinstance(u, HotSymbolDelta)
    }
    assert counts == {"malloc": 2, "inflate": 47}  # before: {"malloc": 2}, inflate lost
