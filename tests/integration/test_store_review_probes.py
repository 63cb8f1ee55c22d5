"""Adversarial review of the agent's DB-API store path (issue 13): values and errors an unlucky night brings.

Each test feeds the real database (a SQLite file, the test PostgreSQL) what
the agent can produce and a hostile peer can send, and checks the promise:
a refused row is quarantined and the rest stored, a transient error leaves
the batch to retry, nothing is counted twice.
"""

from __future__ import annotations

import dataclasses

import pytest

from stellaops_runtime.contracts.hotsymbols import HotSymbolDelta, ObservationWindow
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from tests.integration.test_flush_ledger import batch, counts, quarantined


def _with(b: Batch, i: int, **changes: object) -> Batch:
    units = list(b.units)
    unit = units[i]
    assert isinstance(unit, HotSymbolDelta)
    key = {k: changes.pop(k) for k in ("module", "function_name") if k in changes}
    if key:
        changes["key"] = dataclasses.replace(unit.key, **key)
    units[i] = dataclasses.replace(unit, **changes)
    return Batch(b.agent_id, b.seq, units)


BOTH = frozenset({"sqlite", "postgresql"})
PG = frozenset({"postgresql"})


@pytest.mark.parametrize(
    ("changes", "refused_by"),
    [
        ({"invocation_count": 2**63}, BOTH),  # past int8 / SQLite INTEGER
        ({"total_latency_ns": 2**64}, BOTH),
        ({"max_latency_ns": -(2**63) - 1}, BOTH),
        # int4 on PostgreSQL: the binary COPY kept the low 32 bits (stored -2**31) until the review
        ({"unique_callers": 2**31}, PG),
        ({"unique_callers": -(2**31) - 1}, PG),
        ({"unique_callers": 2**32 + 5}, PG),
        ({"function_name": "nul\x00byte"}, PG),  # SQLite keeps a NUL in TEXT
        # a path decoded with surrogateescape (native/source.py): no driver encodes it; it blocked the batch
        ({"module": "/opt/\udcffbin/libx.so"}, BOTH),
        ({"function_name": "f\udc80"}, BOTH),
    ],
    ids=lambda c: next(iter(c)) if isinstance(c, dict) else "",
)
def test_a_value_the_database_cannot_hold_is_quarantined_and_the_rest_stored(
    url: str, changes: dict[str, object], refused_by: frozenset[str]
) -> None:
    store = open_store(url)
    try:
        b = _with(batch(1, n=6), 3, **dict(changes))
        result = store.write_batch(b)
        if store.db.dialect not in refused_by:  # the database holds it: stored exactly as given
            assert (result.written, result.quarantined) == (7, 0), result
            row = next(r for r in store.read_hot_symbols() if r["invocation_count"] == 4)
            for k, v in changes.items():
                assert row[k] == v
            return
        assert result.quarantined == 1, result
        assert result.written == 6  # 5 deltas + the observation window
        got = counts(store)
        assert "fn_3" not in got and len(got) == 5
        assert sum(got.values()) == 1 + 2 + 3 + 5 + 6  # nothing else lost, nothing counted twice
        (q,) = quarantined(store)
        assert q["table_name"] == "hot_symbols" and q["error"]
        again = store.write_batch(b)  # the retry after a lost acknowledgement adds nothing
        assert again.written == 0 and again.quarantined == 0
        assert counts(store) == got
    finally:
        store.close()


@pytest.mark.parametrize("seconds", [2**31, 2**32 + 60])
def test_an_observation_window_too_long_for_its_column_is_refused_not_wrapped(url: str, seconds: int) -> None:
    store = open_store(url)
    try:
        b = batch(1, n=3)
        units = list(b.units)
        w = units[-1]
        assert isinstance(w, ObservationWindow)
        units[-1] = dataclasses.replace(w, window_seconds=seconds)
        result = store.write_batch(Batch(b.agent_id, b.seq, units))
        rows = store.read_observation_windows()
        if store.db.dialect == "sqlite":  # 64-bit INTEGER: kept as it is
            assert (result.written, result.quarantined) == (4, 0)
            assert [r["window_seconds"] for r in rows] == [seconds]
        else:  # int4: refused and quarantined, never stored with its high bits cut off
            assert (result.written, result.quarantined) == (3, 1), result
            assert rows == []
            (q,) = quarantined(store)
            assert q["table_name"] == "observation_windows" and "window_seconds" in q["error"]
        assert sorted(counts(store).values()) == [1, 2, 3]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("sample", "on_postgres"),
    [
        ({"binary": "/opt/\udcffx", "arguments": "a b"}, {"binary": "/opt/\ufffdx", "arguments": "a b"}),
        ({"binary": "/bin/x", "arguments": "a\x00b"}, {"binary": "/bin/x", "arguments": "a\ufffdb"}),
        ({"binary": "/bin/x", "stack": ["f\ud800", "g"]}, {"binary": "/bin/x", "stack": ["f\ufffd", "g"]}),
        ({"binary": "/bin/x", "weight": float("inf")}, {"binary": "/bin/x", "weight": None}),
    ],
)
def test_a_sample_jsonb_cannot_hold_never_costs_the_row_its_counts(
    url: str, sample: dict[str, object], on_postgres: dict[str, object]
) -> None:
    """The sample (binary, arguments: what an attacker controls) is an illustration; the counts are evidence.

    PostgreSQL's jsonb refuses a NUL and a lone surrogate; the row used to be
    quarantined whole, its invocations gone from the cumulative table. Now
    it is stored with those characters as U+FFFD (SQLite keeps them as JSON escapes).
    """
    store = open_store(url)
    try:
        b = _with(batch(1, n=6), 3, sample=sample)
        result = store.write_batch(b)
        assert (result.written, result.quarantined) == (7, 0), result
        assert quarantined(store) == []
        got = counts(store)
        assert got["fn_3"] == 4 and sum(got.values()) == 21
        row = next(r for r in store.read_hot_symbols() if r["function_name"] == "fn_3")
        assert row["sample"] == (on_postgres if store.db.dialect == "postgresql" else sample)
        assert store.write_batch(b).duplicate == 7  # and still exactly once
        assert counts(store) == got
    finally:
        store.close()
