"""Rows spooled at shutdown keep their image pairings: the next agent writes them before replaying.

The flush writes an image's pairing (store/image_pairs.py) before the rows it pairs. At shutdown a
flush that cannot store (the store down, or the pairing write failing) spools its rows, but the
spool held batches only. The next agent writes its own registry's pairings; once the container
was gone, the spooled rows were replayed unpaired: the manifest digest's windows said "watched"
while the image's calls sat under its config digest, and asked by the manifest digest the answer
was not_observed (exit 1) about code that was called (PD's left-alone 2). The pairings not stored
are now kept beside the spool file (``<spoolPath>.pairs``), noted by the next agent at its load,
so its first flush writes them before the replayed rows; the file goes with the spool file.

Real Flusher (two agents, one spool path), store and CLI; SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from stellaops_runtime.agent.flusher import Flusher
from stellaops_runtime.contracts.config import AgentConfig
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.engine import open_store
from tests.integration.test_image_pairs_first import CONFIG, MANIFEST, at, observed, pairs_table, windows


def agent(url: str, spool: Path, name: str) -> Flusher:
    async def no_drain() -> None:
        return None

    cfg = AgentConfig(store={"url": url, "migrate": False, "spoolPath": str(spool), "flushTimeout": "2s"})
    return Flusher(cfg, agent_id=f"node-2/{name}", drain=no_drain, stop=lambda _r: None)


def test_spooled_rows_are_replayed_after_their_pairing(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: the replay stored node-2's windows unpaired, and by the manifest digest the answer
    was not_observed (exit 1) though node-1 had stored calls of inflate under the config digest."""
    key = HotSymbolKey(CONFIG, "/lib/libz.so.1", "inflate", EvidenceKind.INVOKED)
    call = HotSymbolDelta(key=key, window_start_ns=at(3), invocation_count=4, first_seen_ns=at(3),
                          last_seen_ns=at(3) + 1)  # fmt: skip
    with open_store(url) as s:
        s.write([call], windows(CONFIG, "node-1"))
    spool = tmp_path / "spool.jsonl"
    pairs_table(url, drop=True)  # the first agent's pairing cannot be stored before it stops

    async def first() -> None:
        f = agent(url, spool, "a1")
        try:
            f.pairs.note(CONFIG, MANIFEST)
            f.pending.add([], windows(MANIFEST, "node-2"))
            assert await f.final_flush(time.monotonic() + 1.0) is True  # spooled
            assert spool.exists() and f.spool.spooled_rows == 3
        finally:
            await f.close()

    async def second() -> None:
        f = agent(url, spool, "a2")  # its registry no longer holds the container
        try:
            f.spool.load()
            assert await f.flush() is True, f.pending.last_error
            assert f.pending.pending_rows == 0 and f.pairs.unstored() == []
        finally:
            await f.close()

    asyncio.run(first())
    pairs_table(url, drop=False)
    asyncio.run(second())
    assert not spool.exists() and not os.path.exists(f"{spool}.pairs")  # both gone once stored
    assert observed(capsys, url) == (0, "observed")
