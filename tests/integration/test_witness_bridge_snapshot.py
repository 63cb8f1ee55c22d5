"""The agent's witness bridge signs from one snapshot of the store, like ``witness sign`` does.

Other nodes' agents flush into the same PostgreSQL store while this agent's bridge builds a
witness. On READ COMMITTED each of ``observe``'s reads sees what was committed before it, so a
flush landing between them mixed the calls read before it with the watched days read after it:
a signed statement no state of the store ever held (here 29 "days without calls" where the store
held 28 before the flush and 28 after it). The CLI took one snapshot (test_answer_snapshot.py);
the bridge did not. A hook commits the other node's flush exactly between the two reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.witness import dsse, keys
from stellaops_runtime.witness import store as wstore
from stellaops_runtime.witness.bridge import Claim, WitnessBridge
from stellaops_runtime.witness.statement import check_statement
from tests.integration.test_vex import IMG, delta, watched

pytestmark = pytest.mark.postgres


@pytest.fixture
def other_node_flushes_between_reads(pg_url: str) -> Iterator[list[int]]:
    """Commit day 30 (a window and 5 calls of crc32) from another connection just before the
    first read of the watched days; yields the list the hook appends to when it fired."""
    fired: list[int] = []

    def hook(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        # the watched-days read: store/watched_sql.py window_level(...) >= EbpfDeep
        if fired or "END >=" not in statement or "hot_symbols" in statement:
            return
        fired.append(1)
        with open_store(pg_url, migrate=False) as s:
            s.write([delta("crc32", 30, 5)], watched(range(30, 31)))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", hook)
    try:
        yield fired
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", hook)


def _observation(bridge: WitnessBridge, store: Any, pub: Path) -> tuple[int, ...]:
    with store.engine.connect() as conn:
        newest = wstore.find(conn, image=IMG)[0]
        data = wstore.envelope(conn, ref=newest.envelope_sha256)
    stmt = check_statement(dsse.verify(json.loads(data or b""), keys.load_public(pub)), image=IMG)
    o = stmt["predicate"]["observation"]
    return o["invocation_count"], o["max_calls_in_a_day"], o["watched_days"], o["days_without_calls"]


async def _sign_once(bridge: WitnessBridge, store: Any) -> None:
    bridge.observe([delta("crc32", 1, 3)])
    bridge.stored()
    assert await bridge.flush(store.engine) == 1, bridge.last_error


async def test_a_witness_of_the_bridge_rests_on_one_snapshot(
    pg_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = open_store(pg_url)
    try:
        store.write([delta("", 1, 1, EvidenceKind.LOADED), delta("crc32", 1, 3)], watched(range(1, 30)))
        keys.generate(tmp_path / "k", tmp_path / "k.pub")
        claim = Claim(IMG, "pkg:deb/debian/zlib1g", "crc32", "CVE-1")
        bridge = WitnessBridge([claim], key_file=str(tmp_path / "k"))
        await _sign_once(bridge, store)
        before = _observation(bridge, store, tmp_path / "k.pub")
        assert before == (3, 3, 29, 28)
        fired = request.getfixturevalue("other_node_flushes_between_reads")
        await _sign_once(bridge, store)
        assert fired == [1]  # the other node's flush landed while the bridge was reading
        across = _observation(bridge, store, tmp_path / "k.pub")
        await _sign_once(bridge, store)
        after = _observation(bridge, store, tmp_path / "k.pub")
        assert after == (8, 5, 30, 28)
        assert across in (before, after), (before, across, after)
    finally:
        store.engine.dispose()
