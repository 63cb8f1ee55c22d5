"""Benchmark of the hot-symbol store's PostgreSQL write path against raw binary COPY.

The research notes (research/perf-baselines.md §4) measured binary COPY into a
temp table + one ``INSERT ... SELECT ... ON CONFLICT`` as the fastest upsert;
this checks that :meth:`HotSymbolStore.write` keeps that speed, as a ratio to
a ceiling measured in the same run (these machines are shared and noisy, so
absolute numbers mean little):

- ``raw_copy``: binary COPY of the same rows straight into a scratch copy of
  ``signals.hot_symbols`` (no upsert, no history table): the ceiling;
- ``write_insert``: ``HotSymbolStore.write`` on empty tables (all keys new);
- ``write_update``: ``HotSymbolStore.write`` when every key already has its
  cumulative row (the steady state: counts are added, and the new window's
  history rows are appended).

``write`` also fills ``hot_symbol_windows``: on PostgreSQL one binary COPY
into a staging table, the history appended from it and the cumulative table
rolled up by one set-based upsert (store/pg_write.py), where ``raw_copy``
does one plain COPY. Windows start on the current UTC day, so rows land in a
day partition as an agent's do. Methods run interleaved round-robin;
CHECKPOINT (and VACUUM before updates) run outside the timing; medians are
reported. Usage::

    python bench/store_bench.py --pg-url postgresql://postgres@127.0.0.1:5432/stella [--rows N] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.pg_write import copy_rows
from stellaops_runtime.store.rows import HOT_COLS, HOT_TYPES, hot_tuple
from stellaops_runtime.store.writer import HotSymbolStore

S = 1_000_000_000
# Midnight UTC today: the day partition the writer keeps ready, as for an agent's rows.
T0 = int(time.time()) // 86_400 * 86_400 * S
SCRATCH = "signals.hot_symbols_bench_raw"
METHODS = ("raw_copy", "write_insert", "write_update")


def make_deltas(rows: int, *, window: int) -> list[HotSymbolDelta]:
    """Distinct keys: 200 images, ~100-character symbols, 5 PURLs (as in the research setup)."""
    purls = [f"pkg:deb/debian/lib{p}@1.{p}.0-1?arch=amd64" for p in range(5)]
    out = []
    start = T0 + window * 60 * S
    for i in range(rows):
        sym = f"_ZN7stellaops7runtime5bench{i:08d}17some_long_function_name_for_benchmarkingEv_{i % 97}"
        out.append(
            HotSymbolDelta(
                key=HotSymbolKey(
                    f"sha256:{i % 200:064x}", f"/usr/lib/lib{i % 5}.so", sym, EvidenceKind.INVOKED
                ),
                window_start_ns=start,
                invocation_count=1 + i % 13,
                first_seen_ns=start + S,
                last_seen_ns=start + 2 * S,
                unique_callers=1 + i % 3,
                confidence=1.0,
                purl=purls[i % 5],
                node_name="bench-node",
            )
        )
    return out


def _maintenance(store: HotSymbolStore, *statements: str) -> None:
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for s in statements:
            conn.execute(sa.text(s))


def _raw_copy(store: HotSymbolStore, deltas: list[HotSymbolDelta]) -> None:
    tuples = [hot_tuple(d) for d in deltas]  # updated_at: the scratch table's default
    with store.engine.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            copy_rows(cur, table=SCRATCH, columns=HOT_COLS, types=HOT_TYPES, rows=tuples)


def run(pg_url: str, *, rows: int = 20_000, runs: int = 5) -> dict[str, Any]:
    """Time each method ``runs`` times, interleaved; medians in rows/s and ratios to raw COPY."""
    store = open_store(pg_url)
    try:
        _maintenance(
            store,
            f"DROP TABLE IF EXISTS {SCRATCH}",
            f"CREATE TABLE {SCRATCH} (LIKE signals.hot_symbols INCLUDING ALL)",
            f"ALTER TABLE {SCRATCH} ALTER COLUMN updated_at SET DEFAULT now()",
        )
        first = make_deltas(rows, window=0)
        second = make_deltas(rows, window=1)
        timings: dict[str, list[float]] = {m: [] for m in METHODS}

        def timed(name: str, fn: Callable[[], object]) -> None:
            t = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - t)

        for _ in range(runs):
            _maintenance(store, f"TRUNCATE {SCRATCH}", "CHECKPOINT")
            timed("raw_copy", lambda: _raw_copy(store, first))
            _maintenance(
                store, "TRUNCATE signals.hot_symbols, signals.hot_symbol_windows, signals.observation_windows"
            )
            _maintenance(store, "CHECKPOINT")
            timed("write_insert", lambda: store.write(first, []))
            _maintenance(
                store, "VACUUM signals.hot_symbols", "VACUUM signals.hot_symbol_windows", "CHECKPOINT"
            )
            timed("write_update", lambda: store.write(second, []))
        with store.engine.connect() as conn:
            total = conn.execute(sa.text("SELECT sum(invocation_count) FROM signals.hot_symbols")).scalar()
        expected = sum(d.invocation_count for d in first) + sum(d.invocation_count for d in second)
        if total != expected:
            raise AssertionError(f"benchmark wrote {total} invocations, expected {expected}")
        _maintenance(store, f"DROP TABLE IF EXISTS {SCRATCH}")
    finally:
        store.close()

    medians = {m: statistics.median(ts) for m, ts in timings.items()}
    rates = {m: rows / medians[m] for m in METHODS}
    return {
        "rows": rows,
        "runs": runs,
        "median_seconds": {m: round(v, 4) for m, v in medians.items()},
        "rows_per_second": {m: round(v) for m, v in rates.items()},
        "ratio_to_raw_copy": {m: round(rates[m] / rates["raw_copy"], 3) for m in METHODS},
    }


def format_table(result: dict[str, Any]) -> str:
    lines = [f"store write benchmark: {result['rows']} rows, {result['runs']} interleaved runs, medians"]
    lines.append(f"{'method':<14} {'rows/s':>10} {'seconds':>9} {'vs raw COPY':>12}")
    for m in METHODS:
        rate = result["rows_per_second"][m]
        secs = result["median_seconds"][m]
        ratio = result["ratio_to_raw_copy"][m]
        lines.append(f"{m:<14} {rate:>10,} {secs:>9.3f} {ratio:>12.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pg-url", required=True, help="PostgreSQL URL (a scratch database: tables are truncated)"
    )
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    result = run(args.pg_url, rows=args.rows, runs=args.runs)
    print(format_table(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
