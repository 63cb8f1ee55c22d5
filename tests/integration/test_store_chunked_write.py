"""A flush written in chunks (store/upsert.py) stores exactly what one statement stored.

Issue 13: one write of 100,000 rows built every row's parameters at once
(+466 MB in the agent). The write now turns at most ``CHUNK_ROWS`` rows into
parameters at a time, inside the same transaction, so the flush ledger's unit
(one transaction per batch range) is unchanged. On SQLite and the real
PostgreSQL, these tests write batches that span many chunks, with keys in
several windows and (key, window) pairs repeated, and compare every stored
count with totals the test computes itself; a refused row in a later chunk is
quarantined alone, and a retried batch adds nothing.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store import upsert
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.writer import HotSymbolStore
from tests.integration.test_flush_ledger import quarantined, refuse_evil

S = 1_000_000_000
T0 = 1_740_787_200 * S
IMAGES = [f"sha256:{i:064x}" for i in range(3)]


def _units(n: int, *, bad: frozenset[int] = frozenset()) -> list[HotSymbolDelta | ObservationWindow | None]:
    """n deltas: keys in one or two windows, every 7th (key, window) repeated; two observation windows."""
    out: list[HotSymbolDelta | ObservationWindow | None] = []
    for i in range(n):
        fn = f"evil_{i}" if i in bad else f"fn_{i % (n * 2 // 3)}"  # a third of the keys twice
        window = (i // 5) % 2 if i >= n * 2 // 3 else 0
        if i % 7 == 3 and i not in bad:
            window = 0  # the same (key, window) as an earlier delta of the key
        start = T0 + window * 60 * S
        out.append(
            HotSymbolDelta(
                key=HotSymbolKey(IMAGES[i % 3], "/lib/libz.so.1", fn, EvidenceKind.INVOKED),
                window_start_ns=start,
                invocation_count=i % 11 + 1,
                first_seen_ns=start + (i % 13) * S,
                last_seen_ns=start + (i % 13 + 2) * S,
                total_latency_ns=i,
                max_latency_ns=i % 101,
                node_name="node-1",
                sample={"binary": f"/bin/b{i % 5}"},
            )
        )
    out.append(ObservationWindow(IMAGES[0], "node-1", T0, n, Posture.EBPF_DEEP, 60, "tetragon"))
    out.append(ObservationWindow(IMAGES[1], "node-1", T0 + 60 * S, 1, Posture.EBPF_DEEP, 60, "tetragon"))
    return out


def _expected(units: list[HotSymbolDelta | ObservationWindow | None]) -> tuple[dict, dict]:
    """Per key and per (key, window): summed counts and latencies, max latency, seen range."""
    keys: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 2**63, 0])
    windows: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    for u in units:
        if not isinstance(u, HotSymbolDelta) or u.key.function_name.startswith("evil"):
            continue
        k = (u.key.image_digest, u.key.function_name)
        e = keys[k]
        e[0] += u.invocation_count
        e[1] += u.total_latency_ns
        e[2] = max(e[2], u.max_latency_ns)
        e[3] = min(e[3], u.first_seen_ns // 1000)
        e[4] = max(e[4], u.last_seen_ns // 1000)
        w = windows[(*k, u.window_start_ns // S)]
        w[0] += u.invocation_count
        w[1] += u.total_latency_ns
        w[2] = max(w[2], u.max_latency_ns)
    return {k: tuple(v) for k, v in keys.items()}, {k: tuple(v) for k, v in windows.items()}


def _us(t: object) -> int:
    return round(t.timestamp() * 1_000_000)  # type: ignore[attr-defined]


def _stored(store: HotSymbolStore) -> tuple[dict, dict]:
    keys = {
        (r["image_digest"], r["function_name"]): (
            r["invocation_count"],
            r["total_latency_ns"],
            r["max_latency_ns"],
            _us(r["first_seen"]),
            _us(r["last_seen"]),
        )
        for r in store.read_hot_symbols()
    }
    windows = {
        (r["image_digest"], r["function_name"], _us(r["window_start"]) // 1_000_000): (
            r["invocation_count"],
            r["total_latency_ns"],
            r["max_latency_ns"],
        )
        for r in store.read_windows()
    }
    return keys, windows


@pytest.mark.parametrize("chunk_rows", [7, upsert.CHUNK_ROWS])
def test_a_batch_over_many_chunks_is_stored_exactly_once(
    url: str, chunk_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upsert, "CHUNK_ROWS", chunk_rows)
    n = 100 if chunk_rows < 100 else chunk_rows * 3 // 2  # more (key, window) rows than one chunk
    units = _units(n)
    with open_store(url) as store:
        statements: list[int] = []  # rows per INSERT into the cumulative table (SQLite)

        def seen(statement: str, params: list[tuple[object, ...]], many: bool) -> None:
            if many and statement.startswith("INSERT INTO main.hot_symbols "):
                statements.append(len(params))

        store.db.hooks.append(seen)  # what the agent's DB-API layer sends, before the driver
        b = Batch("node-1/x", 1, units)
        result = store.write_batch(b)
        exp_keys, exp_windows = _expected(units)
        assert (result.written, result.quarantined, result.duplicate) == (len(exp_windows) + 2, 0, 0)
        if store.db.dialect == "sqlite":  # one executemany per chunk, none larger
            assert sum(statements) == len(exp_keys) and max(statements) == chunk_rows
            assert len(statements) == -(-len(exp_keys) // chunk_rows) > 1
        got_keys, got_windows = _stored(store)
        assert got_keys == exp_keys
        assert got_windows == exp_windows
        assert sorted(r["event_count"] for r in store.read_observation_windows()) == [1, n]
        again = store.write_batch(b)  # a retry after a lost acknowledgement
        assert (again.written, again.duplicate) == (0, n + 2)
        assert _stored(store) == (got_keys, got_windows)


def test_a_refused_row_in_a_later_chunk_is_quarantined_alone(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upsert, "CHUNK_ROWS", 7)
    units = _units(60, bad=frozenset({2, 45}))
    with open_store(url) as store:
        refuse_evil(store)
        result = store.write_batch(Batch("node-1/x", 1, units))
        assert (result.quarantined, result.duplicate) == (2, 0) and result.splits >= 2
        assert sorted(q["row_json"].count("evil_") for q in quarantined(store)) == [1, 1]
        exp_keys, _ = _expected(units)
        assert _stored(store)[0] == exp_keys
