"""A batch whose agent id or sequence the database cannot take, on SQLite and the real PostgreSQL.

A spool file's batch (or an agent's own, on a node whose name holds a byte
that is not UTF-8) may carry an agent id with a NUL (PostgreSQL's text takes
none) or a lone surrogate (no driver encodes one), or a sequence beyond
bigint, or a JSON ``true``. Its ledger row was refused on every attempt:
the batch was retried for ever and every later flush waited behind it, and a
surrogate escaped the store as a bare UnicodeEncodeError, no StoreError.
Now such a batch is written under an identity derived from its own (the same
in every process), so each count is stored once, a retry (a second reading
of the same spool file) adds nothing, and another batch of the same agent is
still new data.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pgproxy import PgProxy

from stellaops_runtime.contracts.hotsymbols import HotSymbolDelta
from stellaops_runtime.store.batches import Batch, BatchResult
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.errors import StoreUnavailable
from stellaops_runtime.store.pending import PendingWrites
from stellaops_runtime.store.spool import read_spool, write_spool
from stellaops_runtime.store.writer import HotSymbolStore
from tests.integration.test_flush_ledger import counts, delta, quarantined, refuse_evil
from tests.integration.test_store_retention import units

CASES = {
    "nul": ("node\x00a/1", 1),
    "surrogate": ("node-\udcff/1", 1),
    "seq_past_bigint": ("node-a/1", 2**63),
    "seq_true": ("node-a/1", True),
}


def spooled(tmp_path: Path, agent: str, seq: int, days: list[int]) -> Batch:
    """The batch as a new agent reads it back from a spool file."""
    path = tmp_path / f"spool-{len(list(tmp_path.iterdir()))}"
    write_spool(path, [Batch(agent, seq, units(days))])  # type: ignore[arg-type]
    got = read_spool(path)
    assert got is not None
    [batch] = got
    return batch


@pytest.mark.parametrize("case", list(CASES))
def test_a_batch_the_ledger_cannot_name_is_stored_once(url: str, tmp_path: Path, case: str) -> None:
    agent, seq = CASES[case]
    store = open_store(url)
    try:
        first = store.write_batch(spooled(tmp_path, agent, seq, [0, 1]))
        assert (first.written, first.duplicate, first.quarantined) == (4, 0, 0)
        assert store.read_hot_symbols()[0]["invocation_count"] == 10 + 11
        again = store.write_batch(spooled(tmp_path, agent, seq, [0, 1]))  # the spool read again
        assert (again.written, again.duplicate) == (0, 4)
        other = store.write_batch(spooled(tmp_path, agent, 7, [2]))  # another batch of that agent
        assert other.written == 2
        assert store.read_hot_symbols()[0]["invocation_count"] == 10 + 11 + 12
    finally:
        store.close()


def test_a_storable_identity_is_left_as_it_is(url: str) -> None:
    store = open_store(url)
    try:
        b = Batch("node-a/\u00e9\u4e2d", 5, units([0]))  # type: ignore[arg-type]
        store.write_batch(b)
        assert (b.agent_id, b.seq) == ("node-a/\u00e9\u4e2d", 5)
    finally:
        store.close()


def test_the_agents_ledger_floor_never_removes_a_derived_identitys_rows(url: str) -> None:
    """The floor is of the agent's own sequences; a derived identity's rows are not below it."""
    store = open_store(url)
    try:
        b = Batch("node-\udcff/1", 3, units([0, 1]))  # type: ignore[arg-type]
        b.ledger_floor = 3  # the agent's oldest pending batch is this one
        assert store.write_batch(b).written == 4  # committed; say its acknowledgement was lost
        retry = Batch("node-\udcff/1", 3, units([0, 1]))  # type: ignore[arg-type]
        retry.ledger_floor = 3
        assert (store.write_batch(retry).written, retry.ledger_floor) == (0, 0)
        assert store.read_hot_symbols()[0]["invocation_count"] == 10 + 11
    finally:
        store.close()


class LosesFirstAcknowledgement:
    """The real store, whose first write commits and then fails (a lost acknowledgement)."""

    def __init__(self, store: HotSymbolStore) -> None:
        self.store = store
        self.lost = False

    def write_batch(self, batch: Batch) -> BatchResult:
        result = self.store.write_batch(batch)
        if not self.lost:
            self.lost = True
            raise StoreUnavailable("the acknowledgement was lost")
        return result

    def abort(self) -> None:
        self.store.abort()


def test_an_agent_whose_node_name_is_not_utf8_stores_each_count_once_after_a_lost_acknowledgement(
    url: str,
) -> None:
    store = open_store(url)
    try:
        pending = PendingWrites(agent_id="node-\udcff/1", max_batch_rows=1)  # two own batches
        deltas = [u for u in units([0, 1]) if isinstance(u, HotSymbolDelta)]
        pending.add(deltas, [])
        writer = LosesFirstAcknowledgement(store)
        assert asyncio.run(pending.flush(writer)) is False  # the first batch committed, not confirmed
        assert asyncio.run(pending.flush(writer)) is True
        assert (pending.rows_flushed, pending.duplicate_rows) == (1, 1)
        assert store.read_hot_symbols()[0]["invocation_count"] == 10 + 11
    finally:
        store.close()


def test_a_derived_identitys_bisected_batch_keeps_its_parts_when_retried(url: str) -> None:
    """The floor of the agent's own sequences is not applied to a derived identity's parts."""
    store = open_store(url)
    try:
        refuse_evil(store)
        pending = PendingWrites(agent_id="node-\udcff/1", max_batch_rows=3)  # two own batches
        rows = [delta(f"fn_{i}", i + 1) for i in range(5)] + [delta("evil_0", 100)]
        pending.add(rows, [])
        writer = LosesFirstAcknowledgement(store)
        assert asyncio.run(pending.flush(writer)) is False  # bisected, parts committed, not confirmed
        assert asyncio.run(pending.flush(writer)) is True
        assert counts(store) == {f"fn_{i}": i + 1 for i in range(5)}
        assert len(quarantined(store)) == 1
    finally:
        store.close()


@pytest.mark.postgres
def test_a_derived_identitys_part_stays_in_the_ledger_while_the_agents_own_batches_wait(pg_url: str) -> None:
    """A retry of a derived identity's batch is not given the floor of the agent's own sequences.

    The first row's sample holds a NUL (jsonb takes none): refused, bisected down to it, stored
    cleaned, and that part's acknowledgement lost. The retry claims the whole batch again (the
    row is storable now); with the agent's floor it deleted that part's ledger row first and
    stored the row twice.
    """
    target = urlsplit(pg_url.replace("postgresql+psycopg", "postgresql"))
    proxy = PgProxy(target.hostname or "127.0.0.1", target.port or 5432)
    store = open_store(proxy.url(pg_url))
    try:
        pending = PendingWrites(agent_id="node-\udcff/1", max_batch_rows=4)  # two own batches
        rows = [dataclasses.replace(delta("fn_0", 1), sample={"arg": "a\x00b"})]
        rows += [delta(f"fn_{i}", i + 1) for i in range(1, 6)]
        pending.add(rows, [])
        proxy.drop_commit_acks = 1  # the first part committed: row 0, its sample cleaned
        assert asyncio.run(pending.flush(store)) is False
        assert proxy.commit_acks_dropped == 1
        assert asyncio.run(pending.flush(store)) is True
        assert counts(store) == {f"fn_{i}": i + 1 for i in range(6)}
    finally:
        store.close()
        proxy.close()
