"""The node's export position is stored with the counts it covers, in one transaction (s37/b).

store/export_position.py: each transaction storing counts of a batch drained from the export
source writes the node's row of ``export_positions`` (migration 0011), so a count in the store
never lacks a position at least as far on, and a resuming agent of the node (another spool
path, another watch record) never reads the file before it (sources/export_store.py). A COMMIT
whose acknowledgement is lost (tests/pgproxy.py) stored the row with the counts; the retry,
a no-op through the ledger, leaves it. Real SQLite and PostgreSQL stores.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import pytest
from pgproxy import PgProxy

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.export_position import mark_final, read_position, write_position
from stellaops_runtime.store.pending import PendingWrites

S = 1_000_000_000
T0 = 1_740_787_200 * S
IMG = "sha256:" + "e" * 64
NODE = "node-1"


def _delta(fn: str, count: int) -> HotSymbolDelta:
    return HotSymbolDelta(
        key=HotSymbolKey(IMG, "/lib/libz.so.1", fn, EvidenceKind.INVOKED),
        window_start_ns=T0,
        invocation_count=count,
        first_seen_ns=T0 + S,
        last_seen_ns=T0 + 2 * S,
        node_name=NODE,
    )


def _position(pos: int) -> dict[str, Any]:
    cp = {"path_sha256": "a" * 64, "dev": 1, "ino": 2, "pos": pos, "head_len": 0, "head_sha256": "b" * 64}
    return {
        "node": NODE,
        "agent_id": f"{NODE}/x",
        "checkpoint": cp,
        "at_ns": T0,
        "at_boot": 5,
        "boot_id": "id",
    }


def _stored(pos: int) -> tuple[str, dict[str, Any]]:
    doc = _position(pos)
    return (doc.pop("agent_id"), {k: doc[k] for k in ("checkpoint", "at_ns", "at_boot", "boot_id")})


def test_the_position_goes_with_each_batchs_counts_and_is_replaced_by_the_next(url: str) -> None:
    store = open_store(url)
    try:
        assert read_position(store.db, NODE) is None  # no row: agents before 0011, or no export source
        pending = PendingWrites(agent_id=f"{NODE}/x")
        pending.add([_delta("f", 1)], [])
        assert asyncio.run(pending.flush(store))
        assert read_position(store.db, NODE) is None  # no position given: none written
        at = [100]
        pending.position_of = lambda: _position(at[0])
        pending.add([_delta("f", 2)], [])
        assert asyncio.run(pending.flush(store))
        assert read_position(store.db, NODE) == _stored(100)
        at[0] = 500
        pending.add([_delta("g", 3)], [])
        assert asyncio.run(pending.flush(store))
        assert read_position(store.db, NODE) == _stored(500)
        assert read_position(store.db, "another-node") is None
    finally:
        store.close()


@pytest.mark.postgres
def test_a_lost_commit_ack_stored_the_position_with_the_counts(pg_url: str) -> None:
    """The agent is SIGKILLed after a COMMIT whose acknowledgement was lost: the store holds the
    counts, and the position with them, so the next agent of the node never reads them again."""
    target = urlsplit(pg_url.replace("postgresql+psycopg", "postgresql"))
    proxy = PgProxy(target.hostname or "127.0.0.1", target.port or 5432)
    store = open_store(proxy.url(pg_url))
    try:
        pending = PendingWrites(agent_id=f"{NODE}/x")
        pending.position_of = lambda: _position(700)
        pending.add([_delta("f", 1)], [])
        proxy.drop_commit_acks = 1
        assert asyncio.run(pending.flush(store)) is False  # not acknowledged: the agent cannot tell
        assert proxy.commit_acks_dropped == 1
        assert read_position(store.db, NODE) == _stored(700)  # what the next agent reads
        assert asyncio.run(pending.flush(store)) is True  # the retry: stored once, the row kept
        assert pending.duplicate_rows == 1
        assert read_position(store.db, NODE) == _stored(700)
    finally:
        store.close()
        proxy.close()


def test_the_row_is_final_only_from_a_shutdown_that_stored_everything_to_the_next_write(url: str) -> None:
    """s38/x: ``mark_final`` says the agent stopped with every count stored; the next batch's
    transaction (another agent's turn) writes a row that is not final again."""
    store = open_store(url)
    try:
        mark_final(store.db, _position(900))
        agent, doc = _stored(900)
        assert read_position(store.db, NODE) == (agent, {**doc, "final": True})
        pending = PendingWrites(agent_id=f"{NODE}/y")
        pending.position_of = lambda: _position(950)
        pending.add([_delta("f", 1)], [])
        assert asyncio.run(pending.flush(store))
        assert read_position(store.db, NODE) == _stored(950)
    finally:
        store.close()


def test_a_late_mark_never_marks_a_later_agents_row_final(url: str) -> None:
    """A mark whose write hung past the shutdown deadline can still commit after the agent
    exited (its COMMIT in the kernel's send buffer, delivered once the network is back), when
    the next agent of the node has stored rows of its own: that later row must stay as it is,
    not become this agent's older position marked final (an agent of another spool path would
    resume there and count the next agent's lines again)."""
    store = open_store(url)
    try:
        later = {**_position(950), "agent_id": f"{NODE}/next", "at_ns": T0 + 10 * S}
        with store.db.begin() as conn:
            write_position(conn, later)  # the next agent's row, after this agent's stop
        mark_final(store.db, _position(900))  # this agent's mark (its moment T0), late
        agent, doc = read_position(store.db, NODE) or ("", None)
        assert agent == f"{NODE}/next" and doc["checkpoint"]["pos"] == 950 and "final" not in doc
        mark_final(store.db, {**_position(960), "at_ns": T0 + 20 * S})  # a mark after it: written
        assert (read_position(store.db, NODE) or ("", {}))[1].get("final") is True
    finally:
        store.close()


def test_a_row_that_is_not_ours_is_read_as_not_well_formed(url: str) -> None:
    store = open_store(url)
    try:
        table = "signals.export_positions" if store.db.dialect == "postgresql" else "main.export_positions"
        mark = "%s" if store.db.dialect == "postgresql" else "?"
        with store.db.begin() as conn:
            conn.execute(f"INSERT INTO {table} VALUES ({mark}, {mark}, {mark})", (NODE, "a", "not json"))
            conn.execute(f"INSERT INTO {table} VALUES ({mark}, {mark}, {mark})", ("big", "a", "x" * 5000))
        assert read_position(store.db, NODE) == ("a", None)
        assert read_position(store.db, "big") == ("a", None)
    finally:
        store.close()
