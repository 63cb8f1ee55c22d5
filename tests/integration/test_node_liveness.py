"""A node's proof of life on the store's clock (migration 0015, store/node_liveness.py, agent/flusher.py).

The agent writes it after every flush, empty ones included, with the store's clock less the boot
clock's time since the moment the watch record claims (agent/watch_record.py ``claimed``); the
question's side (store/coverage_open.py, store/coverage_live.py) ends the node's watched time there.
Real Flusher, real WatchRecord, real SQLite and PostgreSQL (through tests/pgproxy.py for a COMMIT
whose acknowledgement is lost).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from pgproxy import PgProxy

from stellaops_runtime.agent.draining import Draining
from stellaops_runtime.agent.flusher import Flusher
from stellaops_runtime.agent.watch_record import WatchRecord
from stellaops_runtime.contracts.config import AgentConfig
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.hotsymbols.clock_span import now_pair
from stellaops_runtime.store.coverage_live import liveness, store_now
from stellaops_runtime.store.engine import open_store

IMG = "sha256:" + "c" * 64
NODE = "node-live"
S = 1_000_000_000


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        put: Callable[[Path], str] = request.getfixturevalue("sqlite_at_head")
        return put(tmp_path / "hot.db")
    return str(request.getfixturevalue("pg_url"))


def delta(fn: str, n: int) -> HotSymbolDelta:
    t = int(time.time()) // 60 * 60 * S
    key = HotSymbolKey(IMG, "/lib/libz.so.1", fn, EvidenceKind.INVOKED)
    return HotSymbolDelta(key=key, window_start_ns=t, invocation_count=n, first_seen_ns=t, last_seen_ns=t + 1)


def flusher(url: str, **hot: Any) -> Flusher:
    async def no_drain() -> None:
        return None

    cfg = AgentConfig(store={"url": url, "flushTimeout": "5s"}, hotSymbols=hot)
    return Flusher(cfg, agent_id=f"{NODE}/a1", drain=no_drain, stop=lambda _reason: None)


def read_live(url: str) -> Any:
    with open_store(url) as s, s.engine.connect() as c:
        return liveness(c, [NODE]).get(NODE), store_now(c)


def now_on_store(url: str) -> dt.datetime:
    with open_store(url) as s, s.engine.connect() as c:
        return store_now(c)


async def test_an_empty_flush_writes_the_store_clock_moment_less_the_boot_clock_s_time_since(
    url: str,
) -> None:
    f = flusher(url, flushIntervalSeconds=1.5, aggregationWindowSeconds=1)
    assert await f.flush() is True  # nothing pending: the store is not even opened by the flush
    before = now_on_store(url)
    wall, boot = now_pair()
    claimed = (wall - 5 * S, boot - 5 * S)  # watched and stored up to five seconds ago
    assert await f.prove_alive(NODE, claimed) is True
    live, after = read_live(url)
    assert live is not None and live.agent_id == f"{NODE}/a1"
    five = dt.timedelta(seconds=5)
    # the store's clock less five seconds of the boot clock, whatever the node's wall clock says
    assert before - five - dt.timedelta(milliseconds=2) <= live.alive_through <= after - five
    assert abs(live.alive_node.timestamp() - (wall - 5 * S) / 1e9) < 1e-5
    assert (live.flush_seconds, live.window_seconds) == (1.5, 1)
    assert live.started_at <= live.alive_through + five  # the agent's start, on the store's clock too
    # a later flush moves it on; nothing claimed (nothing watched yet) writes nothing and fails nothing
    assert await f.prove_alive(NODE, now_pair()) is True
    later, _ = read_live(url)
    assert later.alive_through > live.alive_through
    assert await f.prove_alive(NODE, None) is True and f.liveness_failures == 0
    await f.close()


async def test_a_proof_of_life_that_cannot_be_written_is_counted_and_fails_no_flush(url: str) -> None:
    f = flusher(url)
    with open_store(url) as s, s.engine.begin() as c:
        schema = "signals." if c.dialect.name == "postgresql" else ""
        c.execute(sa.text(f"DROP TABLE {schema}node_liveness"))
    assert await f.prove_alive(NODE, now_pair()) is False
    assert f.liveness_failures == 1
    f.pending.add([delta("inflate", 3)], [])
    assert await f.flush() is True, f.pending.last_error  # the counts are stored all the same
    assert f.pending.rows_flushed == 1
    await f.close()


class _Queue:
    """The event queue as the watch record reads it: payloads enqueued, none waiting."""

    enqueued = 0

    def __len__(self) -> int:
        return 0


class _Source:
    def __init__(self) -> None:
        self.at = 0

    def watching_ns(self) -> int:
        return self.at


async def test_a_commit_whose_acknowledgement_is_lost_claims_nothing_past_the_stored_counts(
    pg_url: str,
) -> None:
    target = urlsplit(pg_url.replace("postgresql+psycopg", "postgresql"))
    proxy = PgProxy(target.hostname or "127.0.0.1", target.port or 5432)
    try:
        f = flusher(proxy.url(pg_url))
        queue, source = _Queue(), _Source()
        watch = WatchRecord("", node=NODE, agent_id=f"{NODE}/a1", queue=queue)

        async def one_flush(fn: str) -> bool:
            """The flush loop's steps (agent/draining.py): sample, flush, claim, prove."""
            source.at = time.time_ns()
            queue.enqueued += 1
            watch.tick(source)
            f.pending.add([delta(fn, 1)], [])
            taken = watch.flush_starts()
            ok = await f.flush()
            watch.flushed(taken, ok)
            await f.prove_alive(NODE, watch.claimed)
            return ok

        assert await one_flush("first") is True
        first = source.at
        live, _ = read_live(pg_url)
        assert abs(live.alive_node.timestamp() - first / 1e9) < 1e-5
        proxy.drop_commit_acks = 1  # the next flush's COMMIT is done, its reply lost
        assert await one_flush("second") is False
        live, _ = read_live(pg_url)
        # the second flush's moment is not claimed: its acknowledgement never came
        assert abs(live.alive_node.timestamp() - first / 1e9) < 1e-5, (live, first)
        assert watch.claimed is not None and watch.claimed[0] == first
        assert await one_flush("third") is True  # the retry confirms it (the ledger: counted once)
        live, _ = read_live(pg_url)
        assert abs(live.alive_node.timestamp() - source.at / 1e9) < 1e-5
        await f.close()
    finally:
        proxy.close()


class _Loop(Draining):
    """The agent's flush loop (agent/draining.py) over a real Flusher and WatchRecord, nothing else."""

    def __init__(self, f: Flusher, watch: WatchRecord) -> None:
        self.flusher, self.watch, self.witness = f, watch, None
        self.config = f.config
        self._flush_now, self._flush_stop = asyncio.Event(), asyncio.Event()
        self._rows_at_trim = 0


async def test_a_flush_and_its_proof_of_life_share_one_store_connection(pg_url: str) -> None:
    """Each store connection is a PostgreSQL backend started, at fleet scale many a second: the loop's
    flush gave its connection back and the proof that follows opened another (two a busy flush, seen
    before: 8 for 4 flushes); now the proof writes on the flush's and gives it back."""
    target = urlsplit(pg_url.replace("postgresql+psycopg", "postgresql"))
    proxy = PgProxy(target.hostname or "127.0.0.1", target.port or 5432)
    f = flusher(proxy.url(pg_url), flushIntervalSeconds=3600)
    queue, source = _Queue(), _Source()
    watch = WatchRecord("", node=NODE, agent_id=f"{NODE}/a1", queue=queue)
    loop = _Loop(f, watch)
    task = asyncio.create_task(loop._flush_loop())
    try:

        async def one_flush(n: int) -> None:
            source.at = time.time_ns()
            queue.enqueued += 1
            watch.tick(source)
            f.pending.add([delta(f"fn{n}", 1)], [])
            loop._flush_now.set()
            for _ in range(200):  # the flush stored, then its proof of life claimed its moment
                live, _ = read_live(pg_url)
                proved = live is not None and abs(live.alive_node.timestamp() - source.at / 1e9) < 1e-5
                if f.pending.rows_flushed == n and proved:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"flush {n} not stored and proved: {f.pending.rows_flushed}, {live}, {task}")

        await one_flush(1)  # the store opened (and its maintenance ran) in the first
        before = proxy.accepted
        for n in range(2, 6):
            await one_flush(n)
        assert proxy.accepted - before == 4
        assert f.liveness_failures == 0
    finally:
        loop._flush_stop.set()
        await task
        await f.close()
        proxy.close()
