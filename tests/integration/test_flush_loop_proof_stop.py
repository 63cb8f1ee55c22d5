"""A proof of life still waiting on the store does not hold the flush loop once the agent stops.

Defect (the clean-clone run of 52e6b221, tests/e2e/test_witness_hung_store.py): against a
black-holed store the flush loop's proof of life (agent/flusher.py ``prove_alive``) waited for its
connect for ``store.flushTimeout``; the shutdown waits for the flush loop before the final flush
(agent/shutdown.py), so the proof spent 2 s of a 4 s grace, the export position was not marked final
and the last witnesses had no time left. A proof holds no count: the loop now gives it up at the stop.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config


async def test_the_flush_loop_ends_at_the_stop_while_its_proof_hangs(tmp_path: Path) -> None:
    agent = Agent(
        parse_config(
            {"store": {"url": f"sqlite:///{tmp_path}/hs.db"}, "hotSymbols": {"flushIntervalSeconds": 0.05}}
        ),
        node_name="n1",
    )
    proving = asyncio.Event()
    released = asyncio.Event()

    async def flush(**_: object) -> bool:
        return True

    async def prove_alive(*_: object, **__: object) -> bool:  # a connect into a black hole
        proving.set()
        try:
            await asyncio.sleep(30)
        finally:
            released.set()
        return False

    agent.flusher.flush = flush  # type: ignore[method-assign]
    agent.flusher.prove_alive = prove_alive  # type: ignore[method-assign]
    loop = asyncio.create_task(agent._flush_loop())
    try:
        await asyncio.wait_for(proving.wait(), 10)
        agent._flush_stop.set()
        t0 = time.monotonic()
        await asyncio.wait_for(loop, 10)  # before: held until the proof's 30 s were over
        took = time.monotonic() - t0
    finally:
        agent._flush_stop.set()
        loop.cancel()
        agent._worker.shutdown(wait=True)
    assert took < 1.0, took
    assert released.is_set()  # the waiting proof was given up, not left running on the loop
