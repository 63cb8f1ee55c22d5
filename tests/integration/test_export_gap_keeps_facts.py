"""A spooled batch stored as gaps keeps its facts: a ``listed`` JAR, an ``unprobed`` tail (review RE3).

store/export_spans.py stores a spooled batch of export counts as gaps over its windows when its
lines may be counted already (another agent's stored span overlaps its own) or by an agent not
seen (replayed without the export lock, s42/E3). Every row became a gap, the facts too: a
``listed`` JAR (agent/listed_jars.py, "this package holds Java code") and an ``unprobed`` tail
(agent/unprobed.py, "this function was probed in part") are 0-call rows that each agent sends
once and that the answers read for every period, so a gap over their one window cannot stand for
them (store/batches.py ``never_dropped``, as for the outage bound). A fact holds no count, so
storing it doubles nothing: the facts are stored, the counts are gaps.
"""

from __future__ import annotations

import asyncio

import pytest

from stellaops_runtime.agent.listed_jars import ListedJars
from stellaops_runtime.agent.unprobed import UnprobedTails
from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.pending import PendingWrites
from tests.integration.test_answer_interpreted import row
from tests.integration.test_export_spans_store import _gaps, _position, _stored_live
from tests.integration.test_vex import IMG

NODE = "node-1"
LIB, JAR, PURL = (
    "/usr/lib64/libstella-wrap.so.0",
    "/usr/lib/java/stella-wrap.jar",
    "pkg:rpm/stella-jniwrap@1.0-1",
)


def _a_batch() -> Batch:
    """Agent A's spooled batch (its span: bytes 100-500 of the export file): the JNI library seen
    loaded, the JAR its package lists and a tail left unprobed, the facts made by the real classes."""
    lib = row(LIB, "", EvidenceKind.LOADED, PURL)
    (listed,) = ListedJars().deltas([(lib, JAR)])
    tails = UnprobedTails()
    tails.current = {(IMG, LIB, "wrap_crc.part.0"): ("", PURL)}
    (tail,) = tails.deltas(node_name=NODE, now_ns=lib.first_seen_ns, window_seconds=60)
    position = _position(f"{NODE}/a", 100, 500)
    return Batch(f"{NODE}/a", 1, [lib, listed, tail], from_spool=True, export_position=position)


@pytest.mark.parametrize("how", ["unlocked", "overlapped"])
def test_a_spooled_batch_stored_as_gaps_keeps_its_facts(url: str, how: str) -> None:
    """Replayed without the lock (no trace of anyone), or with the lock over another agent's stored
    span of the same bytes: the library's count is a gap, the two facts are stored (0 calls).
    Seen failing before the fix: no fact stored, 3 rows said not stored."""
    store = open_store(url)
    try:
        if how == "overlapped":
            _stored_live(store, f"{NODE}/x", 0, 900)  # X counted the same bytes (its own row: inflate)
        pending = PendingWrites(agent_id=f"{NODE}/r")
        pending.spool_unlocked = lambda: how == "unlocked"
        pending.load([_a_batch()])
        assert asyncio.run(pending.flush(store))
        rows = {r["evidence_kind"]: r for r in store.read_hot_symbols() if r["module"] in (LIB, JAR)}
        assert set(rows) == {"listed", "unprobed"}, "a fact was lost with the counts, or a count stored"
        assert all(r["invocation_count"] == 0 and r["purl"] == PURL for r in rows.values()), rows
        assert any(g["image_digest"] == IMG for g in _gaps(store)), "the library's window is no gap"
        assert pending.spool_unverified_rows + pending.spool_recounted_rows == 1  # the count alone
    finally:
        store.close()
