"""A slow history maintenance after a flush never makes a stored batch look lost.

Probe (s29/h3), on the real PostgreSQL test cluster: the store creates the
coming days' history partitions (and applies the retention) after a write,
and that ran inside the agent's timed write. With a long report query
holding its lock on ``hot_symbol_windows``, the maintenance waited for the
table lock (up to ``LOCK_TIMEOUT_MS``, 5 s; a retention DELETE can take
longer) past ``store.flushTimeout``: the committed batch was abandoned,
counted as a failed flush (``/readyz`` 503), retried and counted as a
duplicate instead of as flushed (``hot_symbols_flushed_total`` too low), and
the maintenance itself was cut. Now the agent runs it after the flush,
outside the write's timeout.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import psycopg
import pytest
from pg import libpq_dsn

from stellaops_runtime.agent.flusher import Flusher
from stellaops_runtime.contracts.config import AgentConfig
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.partitions import partition_name

pytestmark = pytest.mark.postgres

S = 1_000_000_000
IMG = "sha256:" + "d" * 64


def delta(fn: str, n: int) -> HotSymbolDelta:
    t = int(time.time()) // 60 * 60 * S
    key = HotSymbolKey(IMG, "/lib/libz.so.1", fn, EvidenceKind.INVOKED)
    return HotSymbolDelta(key=key, window_start_ns=t, invocation_count=n, first_seen_ns=t, last_seen_ns=t + 1)


async def _run(pg_url: str) -> None:
    async def no_drain() -> None:
        return None

    cfg = AgentConfig(store={"url": pg_url, "flushTimeout": "2s", "statementTimeout": "20s"})
    f = Flusher(cfg, agent_id="node-1/maint", drain=no_drain, stop=lambda _reason: None)
    assert await f.open()
    assert f.store is not None
    due = partition_name(dt.datetime.now(dt.UTC).date() + dt.timedelta(days=2))
    with psycopg.connect(libpq_dsn(pg_url), autocommit=True) as admin:
        admin.execute(f"DROP TABLE signals.{due}")  # a new day's partition is due
    reader = psycopg.connect(libpq_dsn(pg_url))
    try:
        reader.execute("LOCK TABLE signals.hot_symbol_windows IN ACCESS SHARE MODE")  # a long report
        f.pending.add([delta("f", 5), delta("g", 7)], [])
        assert await f.flush() is True, f.pending.last_error
        p = f.pending
        assert (p.rows_flushed, p.duplicate_rows, p.failures, p.timeouts) == (2, 0, 0, 0)
    finally:
        reader.close()
    rows = {r["function_name"]: r["invocation_count"] for r in f.store.read_hot_symbols()}
    assert rows == {"f": 5, "g": 7}
    # The maintenance gave up on the lock (logged) and runs again within the hour; nothing was lost.
    f.pending.add([delta("f", 1)], [])
    assert await f.flush() is True
    assert (f.pending.rows_flushed, f.pending.duplicate_rows) == (3, 0)
    await f.close()


def test_a_flush_followed_by_a_slow_maintenance_counts_as_flushed_once(pg_url: str) -> None:
    asyncio.run(_run(pg_url))
