"""Many agents with overlapping keys and refused rows, while the network loses COMMIT acknowledgements.

Eight agents, each a thread with its own store and connections, write four
frozen batches each into one real PostgreSQL through a TCP proxy
(tests/pgproxy.py) that swallows the server's reply to the first
:data:`LOST` ledger COMMITs it sees (whichever agent sent them) and cuts
those connections: the server committed, the agent saw an error. Every key is
on several agents at once, and one row of every other batch is refused by a
CHECK constraint, so those batches are bisected (their ranges committed, and
their acknowledgements lost, in parts) and those rows quarantined. Each agent
retries its batch as it is until it is confirmed, as the agent does.

The store must hold exactly what was sent: each key's cumulative count and
history, the observation windows' events, and each refused row in
quarantine once, never twice; no deadlock. (The in-process fleet without
losses is test_store_fleet.py; three real agents with losses are
tests/e2e/test_store_fleet_agents.py.)
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from pgproxy import PgProxy

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.batches import Batch, BatchResult
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.errors import StoreError
from stellaops_runtime.store.writer import HotSymbolStore

pytestmark = pytest.mark.postgres

S = 1_000_000_000
AGENTS = 8
ROUNDS = 4
KEYS = 60  # per batch, from a pool of 150: each key on ~40% of the agents
LOST = 16
IMG = "sha256:" + "f" * 64
T0 = int(time.time()) // 86_400 * 86_400 * S


def agent_batches(agent: int) -> list[Batch]:
    rng = random.Random(agent)
    out = []
    for r in range(ROUNDS):
        start = T0 + r * 60 * S
        units: list[HotSymbolDelta | ObservationWindow | None] = []
        picked = sorted(rng.sample(range(150), KEYS))
        for i in picked:
            # every other batch has one row the store refuses: bisected, that row quarantined
            name = f"evil_{agent}_{r}" if r % 2 == 0 and i == picked[KEYS // 3] else f"fn_{i}"
            key = HotSymbolKey(IMG, f"/lib/l{i % 5}.so", name, EvidenceKind.INVOKED)
            units.append(
                HotSymbolDelta(key, start, rng.randint(1, 50), start + S, start + 2 * S, confidence=1.0)
            )
        units.append(
            ObservationWindow(IMG, f"node-{agent}", start, 10 + agent, Posture.EBPF_DEEP, 60, "tetragon")
        )
        out.append(Batch(f"node-{agent}/fleet", r + 1, units))
    return out


def write_until_confirmed(store: HotSymbolStore, batch: Batch, errors: Counter[str]) -> BatchResult:
    deadline = time.monotonic() + 120
    while True:
        try:
            return store.write_batch(batch)
        except StoreError as e:  # a lost acknowledgement, a cut connection: the same batch again
            errors[type(e).__name__] += 1
            assert time.monotonic() < deadline, f"batch {batch.agent_id}/{batch.seq} never confirmed: {e}"


def test_a_fleet_losing_commit_acknowledgements_stores_every_count_and_quarantines_each_row_once(
    pg_url: str,
) -> None:
    admin = open_store(pg_url)
    with admin.engine.begin() as c:
        c.execute(
            sa.text(
                "ALTER TABLE signals.hot_symbol_windows "
                "ADD CONSTRAINT no_evil CHECK (function_name NOT LIKE 'evil%')"
            )
        )
    target = urlsplit(pg_url.replace("postgresql+psycopg", "postgresql"))
    proxy = PgProxy(target.hostname or "127.0.0.1", target.port or 5432)
    proxy.drop_commit_acks = LOST
    plans = [agent_batches(a) for a in range(AGENTS)]
    results: list[list[BatchResult]] = [[] for _ in range(AGENTS)]
    errors: list[Counter[str]] = [Counter() for _ in range(AGENTS)]
    failures: list[BaseException] = []

    def run(a: int) -> None:
        store = open_store(proxy.url(pg_url), migrate=False)
        try:
            for b in plans[a]:
                results[a].append(write_until_confirmed(store, b, errors[a]))
                store.release()
        except BaseException as e:
            failures.append(e)
        finally:
            store.close()

    try:
        threads = [threading.Thread(target=run, args=(a,)) for a in range(AGENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        proxy.close()
    assert failures == []
    assert proxy.commit_acks_dropped == LOST  # the losses really happened
    assert sum(sum(e.values()) for e in errors) >= LOST

    sent: Counter[str] = Counter()
    events = 0
    evil: set[str] = set()
    for plan in plans:
        for b in plan:
            for u in b.units:
                if isinstance(u, HotSymbolDelta):
                    if u.key.function_name.startswith("evil"):
                        evil.add(u.key.function_name)
                    else:
                        sent[u.key.function_name] += u.invocation_count
                elif u is not None:
                    events += u.event_count
    for plan, got in zip(plans, results, strict=True):
        for b, r in zip(plan, got, strict=True):
            assert r.written + r.duplicate + r.quarantined == b.rows
    stored = {r["function_name"]: r["invocation_count"] for r in admin.read_hot_symbols()}
    assert stored == dict(sent)
    history: Counter[str] = Counter()
    for w in admin.read_windows():
        history[w["function_name"]] += w["invocation_count"]
    assert history == sent
    assert sum(w["event_count"] for w in admin.read_observation_windows()) == events
    with admin.engine.connect() as c:
        quarantined = c.execute(sa.text("SELECT row_json FROM signals.quarantined_rows")).scalars().all()
        deadlocks = c.execute(
            sa.text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        ).scalar_one()
    assert len(quarantined) == len(evil) > 0  # each refused row once, never twice
    assert {n for n in evil if any(f'"{n}"' in q for q in quarantined)} == evil
    assert deadlocks == 0
    admin.close()
