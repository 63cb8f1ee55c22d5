"""The agent's flush loop marks a claim due only once the write holding its counts succeeded.

A periodic write freezes the buffer it stores; counts drained while it runs (an early drain under
a key storm) are not in it. The loop used to mark every claim staged by then as stored, so a claim
whose counts arrived during the write got its witness from a store without them, and its mark was
spent: no later witness (not even the last one at shutdown) carried those counts unless new counts
touched the claim again. Now the loop takes the claims staged before the write, marks them after it
succeeds, and puts them back when it fails or is cut short.

The real agent object and its real flush loop, a real witness bridge; the write is the agent's
flusher with a step added in the middle (new counts observed, as an early drain would).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.witness import keys
from stellaops_runtime.witness.bridge import Claim, WitnessBridge

IMG = "sha256:" + "e" * 64


def rows(fn: str) -> list[HotSymbolDelta]:
    return [HotSymbolDelta(HotSymbolKey(IMG, "/lib/libz.so.1", fn, EvidenceKind.INVOKED), 0, 1, 0, 0)]


async def test_counts_drained_during_a_write_are_due_only_after_the_next_write(tmp_path: Path) -> None:
    keys.generate(tmp_path / "k", tmp_path / "k.pub")
    bridge = WitnessBridge(
        [Claim(IMG, "pkg:deb/debian/zlib1g", fn) for fn in ("crc32", "inflate")], key_file=str(tmp_path / "k")
    )
    agent = Agent(
        parse_config(
            {"store": {"url": f"sqlite:///{tmp_path}/hs.db"}, "hotSymbols": {"flushIntervalSeconds": 0.05}}
        ),
        node_name="n1",
    )
    agent.witness = bridge
    outcomes = [True, False, True]
    seen: list[int] = []
    four = asyncio.Event()

    async def flush(**_: object) -> bool:  # the flush loop passes proof_follows
        seen.append(bridge.marked)
        if len(seen) == 4:
            four.set()
        if len(seen) == 1:
            bridge.observe(rows("inflate"))  # drained while the first write runs: not in it
        return outcomes[len(seen) - 1] if len(seen) <= len(outcomes) else True

    agent.flusher.flush = flush  # type: ignore[method-assign]
    bridge.observe(rows("crc32"))  # drained before the first write
    loop = asyncio.create_task(agent._flush_loop())
    try:
        await asyncio.wait_for(four.wait(), 30)
    finally:
        agent._flush_stop.set()
        await asyncio.wait_for(loop, 10)
        agent._worker.shutdown(wait=True)
    # write 1 (ok) marked crc32 only; write 2 failed: inflate put back; write 3 (ok) marked it
    assert seen[:4] == [0, 1, 1, 2]
