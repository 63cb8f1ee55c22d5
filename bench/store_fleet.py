"""A fleet of agents flushing into one PostgreSQL: throughput, flush latency, deadlocks, exact totals.

Each simulated agent is a thread with its own :class:`HotSymbolStore` (its own
engine and connection), writing frozen batches through the real exactly-once
path (``write_batch``: flush ledger, staging COPY, history append, set-based
roll-up). Every agent reports ``keys`` hot keys per flush, drawn from one
shared pool so that most keys are reported by many agents at once (the same
images on many nodes), plus one observation window per image it runs.

A flush's rows belong to the window of its round (``window_seconds`` long,
``flushes_per_window`` flushes each), so successive flushes of one agent
append several history rows to one (key, window), as a real agent does.

At the end the store must hold exactly what was sent: per key, the cumulative
count equals the sum of every count sent; the history holds one row per
(agent, flush, key) and sums to the same; observation windows add up.
Deadlocks and serialization failures are counted from the errors the agents
got and from ``pg_stat_database.deadlocks``; any other error is counted too,
and the batch retried as it is (up to :data:`RETRIES` attempts), as an agent
retries a frozen batch: the flush ledger keeps the retry exactly-once. A
flush's latency includes its retries.
Usage::

    python bench/store_fleet.py --pg-url postgresql://postgres@127.0.0.1:5432/stella \\
        [--agents 50] [--keys 2000] [--interval 10] [--seconds 120]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.writer import HotSymbolStore

S = 1_000_000_000
IMAGES = 40
POOL_PER_AGENT_KEYS = 2.5  # the pool holds 2.5x an agent's keys: each key is on ~40% of the agents
RETRIES = 5
DEADLOCK = "40P01"
SERIALIZATION = "40001"


def key_pool(keys: int) -> list[HotSymbolKey]:
    per_image = -(-int(keys * POOL_PER_AGENT_KEYS) // IMAGES)
    return [
        HotSymbolKey(
            f"sha256:{i:064x}",
            f"/usr/lib/x86_64-linux-gnu/lib{f % 7}.so",
            f"_ZN5fleet{i:02d}{f:04d}15some_function_nameEv",
            EvidenceKind.INVOKED,
        )
        for i in range(IMAGES)
        for f in range(per_image)
    ]


@dataclass
class Sent:
    """What one agent sent: per-key invocations, history rows, observation events."""

    invocations: Counter[HotSymbolKey] = field(default_factory=Counter)
    history_rows: int = 0
    events: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)  # SQLSTATE (or exception type) -> count
    flushes: int = 0


def agent_batches(
    agent: int,
    *,
    pool: list[HotSymbolKey],
    keys: int,
    rounds: int,
    t0: int,
    window_seconds: int,
    per_window: int,
) -> list[Batch]:
    """The frozen batches one agent flushes, one per round, deterministic per agent."""
    rng = random.Random(agent)
    chosen = rng.sample(pool, keys)
    images = sorted({k.image_digest for k in chosen})
    out = []
    for r in range(rounds):
        start = t0 + (r // per_window) * window_seconds * S
        units: list[HotSymbolDelta | ObservationWindow | None] = []
        for k in chosen:
            n = rng.randint(1, 50)
            units.append(
                HotSymbolDelta(
                    key=k,
                    window_start_ns=start,
                    invocation_count=n,
                    first_seen_ns=start + rng.randrange(window_seconds) * S,
                    last_seen_ns=start + window_seconds * S - 1,
                    unique_callers=rng.randint(1, 4),
                    total_latency_ns=n * 1_000,
                    max_latency_ns=2_000,
                    confidence=1.0,
                    purl=f"pkg:deb/debian/{k.module.rsplit('/', 1)[1]}@1.0",
                    node_name=f"node-{agent}",
                )
            )
        units.extend(
            ObservationWindow(
                img, f"node-{agent}", start, keys, Posture.EBPF_DEEP, window_seconds, "tetragon"
            )
            for img in images
        )
        out.append(Batch(f"node-{agent}/fleet", r + 1, units))
    return out


def _sqlstate(e: BaseException) -> str:
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        state = getattr(getattr(cur, "orig", None) or cur, "sqlstate", None)
        if isinstance(state, str) and state:
            return state
        cur = cur.__cause__ or cur.__context__
    return type(e).__name__


def _run_agent(
    store: HotSymbolStore, batches: list[Batch], sent: Sent, *, interval: float, offset: float, go: float
) -> None:
    for i, b in enumerate(batches):
        if interval > 0:
            time.sleep(max(0.0, go + offset + i * interval - time.monotonic()))
        t = time.perf_counter()
        for _attempt in range(RETRIES):  # as an agent does: the same frozen batch until it is stored
            try:
                result = store.write_batch(b)
                break
            except Exception as e:  # counted; the ledger makes the retry exactly-once
                sent.errors[_sqlstate(e)] += 1
        else:
            continue
        sent.latencies.append(time.perf_counter() - t)
        sent.flushes += 1
        if result.written + result.duplicate != b.rows or result.quarantined:
            sent.errors["unexpected_result"] += 1
        for u in b.units:
            if isinstance(u, HotSymbolDelta):
                sent.invocations[u.key] += u.invocation_count
                sent.history_rows += 1
            elif u is not None:
                sent.events += u.event_count


def _deadlocks(store: HotSymbolStore) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
            ).scalar_one()
        )


def run(
    pg_url: str,
    *,
    agents: int = 50,
    keys: int = 2_000,
    interval: float = 10.0,
    seconds: float = 120.0,
    rounds: int | None = None,
    window_seconds: int = 60,
) -> dict[str, Any]:
    """Run the fleet; ``rounds`` defaults to ``seconds / interval`` (interval 0: no sleeps)."""
    if rounds is None and interval <= 0:
        raise ValueError("give rounds when there is no interval between flushes")
    n_rounds = rounds if rounds is not None else max(1, int(seconds / interval))
    per_window = max(1, int(window_seconds / interval)) if interval > 0 else 2
    t0 = int(time.time()) // 86_400 * 86_400 * S  # today, UTC: the rows land in a day partition
    pool = key_pool(keys)
    admin = open_store(pg_url)  # migrates once, as the first agent would
    stores: list[HotSymbolStore] = []
    try:
        with admin.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "TRUNCATE signals.hot_symbols, signals.hot_symbol_windows, signals.observation_windows, "
                    "signals.flush_ledger, signals.quarantined_rows"
                )
            )
        deadlocks_before = _deadlocks(admin)
        plans = [
            agent_batches(
                a,
                pool=pool,
                keys=keys,
                rounds=n_rounds,
                t0=t0,
                window_seconds=window_seconds,
                per_window=per_window,
            )
            for a in range(agents)
        ]
        stores = [open_store(pg_url, migrate=False) for _ in range(agents)]
        sent = [Sent() for _ in range(agents)]
        rng = random.Random(0)
        go = time.monotonic() + 0.5
        threads = [
            threading.Thread(
                target=_run_agent,
                args=(stores[a], plans[a], sent[a]),
                kwargs={"interval": interval, "offset": rng.uniform(0, interval), "go": go},
                name=f"agent-{a}",
            )
            for a in range(agents)
        ]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        for st in stores:  # a backend reports its statistics when it ends
            st.close()
        time.sleep(1.0)
        deadlocks_server = _deadlocks(admin) - deadlocks_before
        return _report(admin, sent, elapsed=elapsed, deadlocks_server=deadlocks_server, rounds=n_rounds,
                       agents=agents, keys=keys, interval=interval)  # fmt: skip
    finally:
        for s in stores:
            s.close()
        admin.close()


def _report(
    store: HotSymbolStore,
    sent: list[Sent],
    *,
    elapsed: float,
    deadlocks_server: int,
    rounds: int,
    agents: int,
    keys: int,
    interval: float,
) -> dict[str, Any]:
    want: Counter[HotSymbolKey] = Counter()
    for s in sent:
        want.update(s.invocations)
    history_rows = sum(s.history_rows for s in sent)
    events = sum(s.events for s in sent)
    with store.engine.connect() as conn:
        stored = {
            HotSymbolKey(r[0], r[1], r[2], EvidenceKind(r[3])): int(r[4])
            for r in conn.execute(
                sa.text(
                    "SELECT image_digest, module, function_name, evidence_kind, invocation_count "
                    "FROM signals.hot_symbols"
                )
            )
        }
        w_rows, w_sum = conn.execute(
            sa.text("SELECT count(*), coalesce(sum(invocation_count), 0) FROM signals.hot_symbol_windows")
        ).one()
        o_sum = conn.execute(
            sa.text("SELECT coalesce(sum(event_count), 0) FROM signals.observation_windows")
        ).scalar()
    errors: Counter[str] = Counter()
    for s in sent:
        errors.update(s.errors)
    lat = sorted(x for s in sent for x in s.latencies)
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else 0.0
    mismatched = sum(1 for k in want.keys() | stored.keys() if want.get(k, 0) != stored.get(k, 0))
    return {
        "agents": agents,
        "keys_per_flush": keys,
        "flush_interval_seconds": interval,
        "rounds": rounds,
        "flushes": sum(s.flushes for s in sent),
        "seconds": round(elapsed, 1),
        "rows_sent": history_rows,
        "rows_per_second": round(history_rows / elapsed) if elapsed else 0,
        "flush_latency_seconds": {
            "p50": round(statistics.median(lat), 3) if lat else 0.0,
            "p95": round(p95, 3),
            "max": round(lat[-1], 3) if lat else 0.0,
        },
        "deadlocks": errors.get(DEADLOCK, 0),
        "deadlocks_server": deadlocks_server,
        "serialization_failures": errors.get(SERIALIZATION, 0),
        "errors": dict(errors),
        "distinct_keys": len(want),
        "keys_mismatched": mismatched,
        "invocations_sent": sum(want.values()),
        "invocations_stored": sum(stored.values()),
        "history_rows_stored": int(w_rows),
        "history_invocations_stored": int(w_sum),
        "events_sent": events,
        "events_stored": int(o_sum or 0),
        "exact": mismatched == 0
        and int(w_rows) == history_rows
        and int(w_sum) == sum(want.values())
        and int(o_sum or 0) == events,
    }


def run_on_private_server() -> dict[str, Any]:
    """The default fleet against a private PostgreSQL (tests/pg.py, fsync off), as ``make bench`` runs it.

    The benchmark pins itself to one core; a fleet is many processes on a
    server, so the server and the agents get every core of the machine here.
    """
    import os

    from tests.pg import make_server

    pinned = os.sched_getaffinity(0)
    os.sched_setaffinity(0, range(os.cpu_count() or 1))
    server = make_server()
    try:
        server.setup()
        return run(server.fresh_database())
    finally:
        server.teardown()
        os.sched_setaffinity(0, pinned)


def format_table(r: dict[str, Any]) -> str:
    lat = r["flush_latency_seconds"]
    return "\n".join(
        [
            f"store fleet: {r['agents']} agents x {r['keys_per_flush']} keys every "
            f"{r['flush_interval_seconds']:g}s, {r['rounds']} rounds, {r['seconds']}s",
            f"rows/s {r['rows_per_second']:,}  flush latency p50 {lat['p50']}s p95 {lat['p95']}s "
            f"max {lat['max']}s",
            f"deadlocks {r['deadlocks']} (server {r['deadlocks_server']}), serialization failures "
            f"{r['serialization_failures']}, errors {r['errors']}",
            f"exact: {r['exact']} (invocations {r['invocations_stored']:,}/{r['invocations_sent']:,}, "
            f"history rows {r['history_rows_stored']:,}/{r['rows_sent']:,}, "
            f"events {r['events_stored']:,}/{r['events_sent']:,}, keys mismatched {r['keys_mismatched']})",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--pg-url", required=True, help="PostgreSQL URL (a scratch database: tables are truncated)"
    )
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--keys", type=int, default=2_000)
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between an agent's flushes")
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--rounds", type=int, default=None, help="flushes per agent (default: seconds/interval)")
    args = ap.parse_args(argv)
    result = run(
        args.pg_url,
        agents=args.agents,
        keys=args.keys,
        interval=args.interval,
        seconds=args.seconds,
        rounds=args.rounds,
    )
    print(format_table(result))
    print(json.dumps(result))
    return 0 if result["exact"] and not result["deadlocks"] and not result["deadlocks_server"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
