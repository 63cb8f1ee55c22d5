"""An image's pairing is stored before the rows it pairs, never after them.

A lifecycle agent files an image with no repo digest under its manifest digest; an agent without
the lifecycle part files the same image's calls under its config digest (store/image_pairs.py).
Until the pairing is in the store, a question by the manifest digest reads the manifest's rows
alone: its windows say "watched", and the calls under the config digest are not read. Rows stored
before their pairing (a crash between the two writes, or a pairing write that fails while row
writes succeed) therefore answered "not observed" about an image whose code had been called. The
flush now writes the pairing first, and a flush whose pairing is not stored stores no rows (they
stay pending for the next flush).

Real Flusher, store (SQLite and PostgreSQL) and CLI (in-process). The pairing write fails because
its table is gone (the nearest a test gets to a crash between the two writes).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
import sqlalchemy as sa

from stellaops_runtime.agent.flusher import Flusher
from stellaops_runtime.cli.main import main
from stellaops_runtime.contracts.config import AgentConfig
from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import create_store_engine, open_store
from stellaops_runtime.store.schema import datetime_to_ns, image_pairs

MANIFEST = "sha256:" + "1" * 64  # the lifecycle agent's key (node-2)
CONFIG = "sha256:" + "c" * 64  # the key of node-1's agent, which has no lifecycle part
DAY = dt.datetime.now(dt.UTC).replace(hour=10, minute=0, second=0, microsecond=0)


def at(days_ago: int) -> int:
    return datetime_to_ns(DAY - dt.timedelta(days=days_ago))


def windows(image: str, node: str) -> list[ObservationWindow]:
    """EbpfDeep windows 3, 2 and 1 days ago (the last: the node's latest, open after it)."""
    return [ObservationWindow(image, node, at(d), 9, Posture.EBPF_DEEP, 60, "tetragon") for d in (3, 2, 1)]


def observed(capsys: pytest.CaptureFixture[str], url: str) -> tuple[int, str]:
    since, until = DAY - dt.timedelta(days=3, hours=10), DAY - dt.timedelta(days=2, hours=-13)
    code = main(["query", "observed", "--store", url, "--image", MANIFEST, "--function", "inflate", "--json",
                 "--since", since.isoformat(), "--until", until.isoformat()])  # fmt: skip
    return code, json.loads(capsys.readouterr().out)["answer"]


def pairs_table(url: str, *, drop: bool) -> None:
    engine = create_store_engine(url)
    try:
        with engine.begin() as conn:
            if drop:
                conn.execute(sa.text(f"DROP TABLE {'signals.' if 'postgresql' in url else ''}image_pairs"))
            else:
                image_pairs.create(conn)
    finally:
        engine.dispose()


async def flush(url: str, f: Flusher) -> bool:
    f.pairs.note(CONFIG, MANIFEST)
    f.pending.add([], windows(MANIFEST, "node-2"))
    return await f.flush()


def test_rows_are_never_stored_before_their_pairing(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """node-1 (no lifecycle part) stored calls of inflate under the config digest; node-2 watched the
    image under the manifest digest, and its pairing cannot be stored. Before: the flush stored
    node-2's windows alone, and asked by the manifest digest the answer was not_observed (exit 1)
    though the image called inflate. Now node-2's rows wait for their pairing: unknown until then,
    observed once both are in."""
    key = HotSymbolKey(CONFIG, "/lib/libz.so.1", "inflate", EvidenceKind.INVOKED)
    call = HotSymbolDelta(key=key, window_start_ns=at(3), invocation_count=4, first_seen_ns=at(3),
                          last_seen_ns=at(3) + 1)  # fmt: skip
    with open_store(url) as s:
        s.write([call], windows(CONFIG, "node-1"))
    pairs_table(url, drop=True)

    async def no_drain() -> None:
        return None

    async def run() -> None:
        f = Flusher(AgentConfig(store={"url": url, "migrate": False}), agent_id="node-2/a", drain=no_drain,
                    stop=lambda _r: None)  # fmt: skip
        try:
            assert await flush(url, f) is False  # the pairing was not stored: neither are the rows
            assert f.pending.pending_rows > 0 and "pairing" in (f.pending.last_error or "")
            assert observed(capsys, url)[1] == "unknown"  # node-2's watch is not in the store yet
            pairs_table(url, drop=False)
            assert await f.flush() is True, f.pending.last_error
            assert f.pairs.unstored() == [] and f.pending.pending_rows == 0
        finally:
            await f.close()

    asyncio.run(run())
    assert observed(capsys, url) == (0, "observed")
