"""The flush ledger's clock on PostgreSQL is the server's, never one agent's (real PostgreSQL).

Each ledger row carried its agent's clock (``committed_at``), and every
agent's start (and every 1,000th batch) pruned rows older than 30 days by its
own clock. One node's skew became the fleet's loss: the rows of an agent a
month behind were pruned by the next agent to start, and an agent a month
ahead pruned every agent's fresh rows; either way a batch retried after a
lost acknowledgement found no ledger row and was stored twice. Both sides
now use the server's clock (``now()``, read with the batch's lock), and rows
really past the retention are still pruned.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from stellaops_runtime.store import ledger
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.ledger import LEDGER_RETENTION, prune_ledger
from stellaops_runtime.store.schema import flush_ledger
from stellaops_runtime.store.writer import HotSymbolStore
from tests.integration.test_flush_ledger import batch, counts

pytestmark = pytest.mark.postgres

SKEW = LEDGER_RETENTION + dt.timedelta(days=10)


@pytest.fixture
def store(pg_url: str) -> Iterator[HotSymbolStore]:
    s = open_store(pg_url)
    yield s
    s.close()


def skewed(monkeypatch: pytest.MonkeyPatch, by: dt.timedelta) -> None:
    """This process's clock, as the ledger reads it, ``by`` off."""
    real = ledger._now
    monkeypatch.setattr(ledger, "_now", lambda: real() + by)


def ledger_rows(store: HotSymbolStore) -> list[tuple[str, dt.datetime]]:
    with store.engine.connect() as c:
        return [tuple(r) for r in c.execute(sa.select(flush_ledger.c.agent_id, flush_ledger.c.committed_at))]  # type: ignore[misc]


def test_an_agent_behind_keeps_its_ledger_rows_when_another_agent_prunes(
    store: HotSymbolStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    behind = batch(1, n=3, agent="node-behind/a")
    with monkeypatch.context() as m:
        skewed(m, -SKEW)
        assert store.write_batch(behind).written == 4  # committed; say its acknowledgement was lost
    assert prune_ledger(store.db) == 0  # another agent, its clock right, starts and prunes
    with monkeypatch.context() as m:
        skewed(m, -SKEW)
        again = store.write_batch(behind)  # the retry
    assert (again.written, again.duplicate) == (0, 4)
    assert counts(store) == {"fn_0": 1, "fn_1": 2, "fn_2": 3}


def test_an_agent_ahead_prunes_no_fresh_ledger_row(
    store: HotSymbolStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = batch(1, n=3)
    assert store.write_batch(b).written == 4  # committed; its acknowledgement lost
    with monkeypatch.context() as m:
        skewed(m, SKEW)
        assert prune_ledger(store.db) == 0  # an agent a month ahead starts and prunes
    again = store.write_batch(b)
    assert (again.written, again.duplicate) == (0, 4)
    assert counts(store) == {"fn_0": 1, "fn_1": 2, "fn_2": 3}


def test_committed_at_is_the_servers_clock_and_old_rows_still_go(
    store: HotSymbolStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:
        skewed(m, SKEW)
        store.write_batch(batch(1, n=2))
    with store.engine.connect() as c:
        server_now = c.execute(sa.text("SELECT now()")).scalar_one()
    [(_, committed_at)] = ledger_rows(store)
    assert abs(committed_at - server_now) < dt.timedelta(hours=1)
    with store.engine.begin() as c:
        c.execute(
            flush_ledger.insert().values(
                agent_id="gone/1",
                flush_seq=1,
                part="0-1",
                row_count=1,
                committed_at=server_now - LEDGER_RETENTION - dt.timedelta(hours=1),
            )
        )
    assert prune_ledger(store.db) == 1
    assert [a for a, _ in ledger_rows(store)] == ["node-1/x"]
