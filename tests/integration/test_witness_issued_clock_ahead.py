"""A witness signed on a node whose clock runs ahead is not issued in the future.

The agent's witness bridge signs on its node, and took ``issued_at`` from the node's clock. A
node three days ahead issued a witness of crc32 "PotentiallyReachable" dated three days from now;
once crc32 ran, the witness another node signed of the same claim ("DynamicReachable") was older
by that date: ``witness list`` gave the stale one first as the newest (docs/witnesses.md: a newer
witness supersedes the older ones), and ``verify --not-before`` could refuse no time before it
for three days. The question's day was already the earlier of the node's and the store's
(test_evidence_question_clock_ahead.py); the time a witness is issued now is too.
"""

from __future__ import annotations

import datetime as dt
import types
from pathlib import Path

import pytest

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.evidence import document, store_facts
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.refs import parse_rfc3339
from stellaops_runtime.witness import keys
from stellaops_runtime.witness import store as wstore
from stellaops_runtime.witness.bridge import Claim, WitnessBridge
from tests.integration.test_vex import IMG, delta, watched

AHEAD = dt.timedelta(days=3)


class _NodeClockAhead:
    """``datetime`` as the evidence document reads the node's clock: three days ahead."""

    @staticmethod
    def now(tz: dt.tzinfo | None = None) -> dt.datetime:
        return dt.datetime.now(tz) + AHEAD


async def test_a_node_clock_ahead_issues_no_witness_after_the_store_s_time(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys.generate(tmp_path / "k", tmp_path / "k.pub")
    claim = Claim(IMG, "pkg:deb/debian/zlib1g", "crc32", "CVE-1")
    store = open_store(url)
    try:
        store.write([delta("", 1, 1, EvidenceKind.LOADED)], watched(range(1, 30)))
        ahead = WitnessBridge([claim], key_file=str(tmp_path / "k"))
        with monkeypatch.context() as m:
            m.setattr(document, "dt", types.SimpleNamespace(datetime=_NodeClockAhead, UTC=dt.UTC))
            m.setattr(store_facts, "_today", lambda: (dt.datetime.now(dt.UTC) + AHEAD).date())
            ahead.observe([delta("crc32", 1, 1)])  # a claim touched: due a witness
            ahead.stored()
            assert await ahead.flush(store.engine) == 1, ahead.last_error
        store.write([delta("crc32", 29, 5)], [])
        on_time = WitnessBridge([claim], key_file=str(tmp_path / "k"))
        on_time.observe([delta("crc32", 29, 5)])
        on_time.stored()
        assert await on_time.flush(store.engine) == 1, on_time.last_error
        with store.engine.connect() as conn:
            found = wstore.find(conn, image=IMG, claim=claim.id)
    finally:
        store.engine.dispose()
    assert [w.state for w in found] == ["DynamicReachable", "PotentiallyReachable"], found
    latest = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)  # the store's clock is this machine's
    for w in found:
        assert w.issued_at <= latest, w
        assert parse_rfc3339(w.to_json()["issued_at"]) <= latest
