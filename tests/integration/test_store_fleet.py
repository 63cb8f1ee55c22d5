"""Many agents flushing overlapping keys into one real PostgreSQL, and the set-based roll-up's exactness.

- 20 agents, each a thread with its own store and connection, flush 500 keys
  x 5 rounds at once (no sleeps) through the exactly-once path; the keys
  overlap (each is on ~40% of the agents). No deadlock, no serialization
  failure, no error; every count summed equals the stored cumulative count,
  the history holds exactly the rows sent, observation events add up
  (bench/store_fleet.py is the same simulation at 50 agents x 2,000 keys
  every 10 s for 2 minutes).
- The PostgreSQL roll-up (staging COPY, GROUP BY, ON CONFLICT) gives the same
  cumulative rows and per-window history as SQLite's row-by-row upserts, on a
  batch where keys repeat across windows and within one window.
- A row the roll-up refuses still ends in quarantine and the rest is stored;
  so do hostile rows (a time no datetime holds, a NUL byte, a count beyond
  bigint), each on its own.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench.store_fleet import run as run_fleet
from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store

S = 1_000_000_000
W = 60 * S
T0 = int(dt.datetime.now(dt.UTC).timestamp()) // 86_400 * 86_400 * S


@pytest.mark.postgres
def test_twenty_agents_with_overlapping_keys_never_deadlock_and_store_exact_totals(pg_url: str) -> None:
    r = run_fleet(pg_url, agents=20, keys=500, interval=0, rounds=5)
    assert r["flushes"] == 100
    assert r["errors"] == {}
    assert r["deadlocks"] == 0 and r["deadlocks_server"] == 0 and r["serialization_failures"] == 0
    assert r["distinct_keys"] < 20 * 500 // 4  # the keys really overlap
    assert r["keys_mismatched"] == 0 and r["invocations_stored"] == r["invocations_sent"] > 0
    assert r["history_rows_stored"] == r["rows_sent"] == 20 * 500 * 5
    assert r["history_invocations_stored"] == r["invocations_sent"]
    assert r["events_stored"] == r["events_sent"] > 0
    assert r["exact"] is True


def _random_deltas(seed: int) -> list[HotSymbolDelta]:
    rng = random.Random(seed)
    keys = [
        HotSymbolKey(f"sha256:{i % 3:064x}", f"/lib/l{i % 2}.so", f"fn_{i}", EvidenceKind.INVOKED)
        for i in range(12)
    ]
    out = []
    for _ in range(80):
        start = T0 + rng.randrange(5) * W
        out.append(
            HotSymbolDelta(
                key=rng.choice(keys),
                window_start_ns=start,
                invocation_count=rng.randint(1, 9),
                first_seen_ns=start + rng.randrange(59) * S + rng.randrange(1000) * 1000,
                last_seen_ns=start + 59 * S + rng.randrange(1000) * 1000,
                unique_callers=rng.randint(0, 5),
                total_latency_ns=rng.randint(0, 10**6),
                max_latency_ns=rng.randint(0, 10**5),
                confidence=rng.choice([0.2, 0.5, 0.8, 1.0]),
                build_id=rng.choice(["", "", "b1", "b2"]),
                purl=rng.choice(["", "pkg:deb/debian/a@1", "pkg:deb/debian/b@2"]),
                function_id=rng.choice(["", "", "b1:fn+0x0"]),
                node_name=rng.choice(["", "node-a", "node-b"]),
                sample=rng.choice([{}, {}, {"binary": f"/bin/{rng.randrange(9)}"}]),
            )
        )
    return out


def _snapshot(url: str, batches: list[list[HotSymbolDelta]]) -> tuple[list[tuple[object, ...]], list[object]]:
    with open_store(url) as store:
        for seq, deltas in enumerate(batches, 1):
            store.write_batch(Batch("node-x/1", seq, list(deltas)))
        hot = [
            tuple(
                round(v, 5) if k == "confidence" else v
                for k, v in sorted(r.items())
                if k not in {"id", "updated_at"}
            )
            for r in store.read_hot_symbols()
        ]
        windows = [tuple(sorted(r.items())) for r in store.read_windows()]
    return hot, windows


@pytest.mark.postgres
def test_the_postgres_roll_up_equals_sqlite_row_by_row(pg_url: str, tmp_path: Path) -> None:
    batches = [_random_deltas(seed) for seed in range(4)]
    # one batch with every key once (the roll-up without GROUP BY)
    batches.append(list({d.key: d for d in _random_deltas(9)}.values()))
    pg = _snapshot(pg_url, batches)
    lite = _snapshot(f"sqlite:///{tmp_path}/hot.db", batches)
    assert pg[0] == lite[0] and len(pg[0]) == 12
    assert pg[1] == lite[1]


@pytest.mark.postgres
def test_a_row_the_roll_up_refuses_is_quarantined_and_the_rest_stored(pg_url: str) -> None:
    with open_store(pg_url) as store:
        with store.engine.begin() as c:
            c.execute(
                sa.text("ALTER TABLE signals.hot_symbols ADD CONSTRAINT few CHECK (invocation_count < 1000)")
            )
        key = HotSymbolKey("sha256:" + "c" * 64, "/lib/x.so", "fn", EvidenceKind.INVOKED)
        units: list[HotSymbolDelta | ObservationWindow | None] = [
            HotSymbolDelta(
                key=key, window_start_ns=T0, invocation_count=5, first_seen_ns=T0, last_seen_ns=T0
            ),
            HotSymbolDelta(
                key=HotSymbolKey(key.image_digest, key.module, "big", key.evidence),
                window_start_ns=T0,
                invocation_count=5_000,
                first_seen_ns=T0,
                last_seen_ns=T0,
            ),
            HotSymbolDelta(
                key=key, window_start_ns=T0 + W, invocation_count=7, first_seen_ns=T0, last_seen_ns=T0
            ),
        ]
        result = store.write_batch(Batch("node-q/1", 1, units))
        assert (result.written, result.quarantined, result.quarantined_invocations) == (2, 1, 5_000)
        assert [(r["function_name"], r["invocation_count"]) for r in store.read_hot_symbols()] == [("fn", 12)]
        assert sum(w["invocation_count"] for w in store.read_windows()) == 12  # the refused row's history too


@pytest.mark.postgres
def test_hostile_rows_in_a_staged_flush_are_quarantined_one_by_one(pg_url: str) -> None:
    img = "sha256:" + "9" * 64

    def d(fn: str, n: int, *, last: int = T0 + S) -> HotSymbolDelta:
        return HotSymbolDelta(HotSymbolKey(img, "/lib/z.so", fn, EvidenceKind.INVOKED), T0, n, T0, last)

    units: list[HotSymbolDelta | ObservationWindow | None] = [
        d("good_a", 1),
        d("year_316000", 2, last=10**22),  # no datetime holds it
        d("good_b", 3),
        d("nul\x00byte", 4),  # PostgreSQL text cannot hold NUL
        d("huge_count", 2**70),  # beyond bigint
        d("good_c", 5),
    ]
    with open_store(pg_url) as store:
        result = store.write_batch(Batch("node-h/1", 1, units))
        assert (result.written, result.quarantined) == (3, 3)
        got = {r["function_name"]: r["invocation_count"] for r in store.read_hot_symbols()}
        assert got == {"good_a": 1, "good_b": 3, "good_c": 5}
        assert sum(w["invocation_count"] for w in store.read_windows()) == 9
        with store.engine.connect() as c:
            errors = c.execute(
                sa.text("SELECT row_json, error FROM signals.quarantined_rows ORDER BY id")
            ).all()
        assert len(errors) == 3 and all(e for _, e in errors)
