"""An agent with ``store.migrate: false`` never writes to a store its schema is ahead of.

docs/operations.md ("Upgrading") has the DaemonSet run with ``store.migrate:
false`` and one agent or Job apply the migrations first. When that step was
missed, the new agents wrote to a store at an older revision: at 0005/0006
the per-window history still has its unique (key, window) key, which the
append-only PostgreSQL path (0007) does not expect, so every second flush of a
(key, window) was refused with a unique violation and its rows quarantined,
counts taken out of every answer for good. Now an agent that finds the store
at an older revision of its own chain does not open it: it says which
revision it found and which it needs, keeps counting, and writes everything
exactly once when the migrations have run. A revision the agent does not know
(a newer agent migrated the store during a rolling upgrade) is written to as
before: counts are additive and the schema stays compatible.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import (
    StoreError,
    create_store_engine,
    head_revision,
    migrate,
    open_store,
)
from tests.e2e import harness as h
from tests.e2e.test_store_failures import GOOD, config, expected, processed, readyz, stored

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

S = 1_000_000_000
T0 = 1_764_000_000 * S


def migrate_to(url: str, revision: str) -> None:
    engine = create_store_engine(url)
    try:
        migrate(engine, revision=revision)
    finally:
        engine.dispose()


def quarantined(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            return int(c.execute(sa.text("SELECT count(*) FROM signals.quarantined_rows")).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.parametrize("revision", ["0005", "0006", "0007"])
def test_a_store_at_an_older_revision_is_not_opened_without_migrations(
    pg_empty_url: str, revision: str
) -> None:
    migrate_to(pg_empty_url, revision)
    with pytest.raises(StoreError) as e:
        open_store(pg_empty_url, migrate=False)
    msg = str(e.value)
    assert f"revision {revision}" in msg and f"needs {head_revision()}" in msg and "migrat" in msg, msg


def test_a_store_at_a_revision_the_agent_does_not_know_is_written_to(pg_empty_url: str) -> None:
    """A newer agent migrated the store (a rolling upgrade): the older agent keeps writing."""
    migrate_to(pg_empty_url, "head")
    engine = sa.create_engine(pg_empty_url)
    with engine.begin() as c:
        c.execute(sa.text("UPDATE signals.alembic_version SET version_num = '0099'"))
    engine.dispose()
    key = HotSymbolKey("sha256:" + "a" * 64, "/lib/x.so", "fn", EvidenceKind.INVOKED)
    with open_store(pg_empty_url, migrate=False) as store:
        for seq in (1, 2):
            d = HotSymbolDelta(key=key, window_start_ns=T0, invocation_count=seq, first_seen_ns=T0,
                               last_seen_ns=T0 + S)  # fmt: skip
            assert store.write_batch(Batch("n/a", seq, [d])).written == 1
        assert [r["invocation_count"] for r in store.read_hot_symbols()] == [3]


async def test_the_agent_waits_for_the_migrations_then_stores_every_count_once(
    tmp_path: Path, pg_empty_url: str
) -> None:
    migrate_to(pg_empty_url, "0006")
    export = tmp_path / "tetragon.log"
    export.write_bytes(b"\n".join(GOOD) + b"\n")
    cfg, port = config(tmp_path, pg_empty_url, export, migrate=False)
    proc = h.start_agent(cfg)
    try:
        await h.wait_for(lambda: processed(port) == len(GOOD), what="every event processed", timeout=60)
        await h.wait_for(
            lambda: "revision 0006" in (readyz(port)[1].get("store_last_error") or ""),
            what="/readyz names the old revision",
            timeout=30,
        )
        assert readyz(port)[1].get("store_open") is False
        await asyncio.to_thread(migrate_to, pg_empty_url, "head")  # the missed step, done late
        await h.wait_for(
            lambda: (
                h.metric(h.scrape(port), "stellaops_runtime_hot_symbols_pending") == 0
                and readyz(port)[0] == 200
            ),
            what="stored after the migrations",
            timeout=60,
        )
        proc.terminate()
        code, out = await asyncio.to_thread(h.finish, proc, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, out
    assert quarantined(pg_empty_url) == 0
    assert stored(pg_empty_url) == expected()
