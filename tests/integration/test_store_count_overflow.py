"""A count whose sum passes int8 is refused, on SQLite as on PostgreSQL, never stored as a float.

The upserts add a batch's counts to the stored ones. PostgreSQL refuses a sum past
2^63 - 1 ("bigint out of range") and the ledger quarantines that row, the stored counts
unchanged. SQLite's ``+`` silently turned such a sum into a REAL: the cumulative count read
back as 9.2233720368548e+18 (a float, its low digits gone) and the window's as an integer
that is no sum of what was written, with no row quarantined. Hostile or corrupt input (a
spool from another version, a count near 2^63), but a count changed silently is what the
store must never give: now both backends quarantine the row and keep the stored counts.
"""

from __future__ import annotations

import datetime as dt

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns

S = 1_000_000_000
IMG = "sha256:" + "e" * 64
START = datetime_to_ns(dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0))
BIG = 2**62 + 12_345  # twice BIG passes 2^63 - 1


def delta(function: str, count: int, latency: int) -> HotSymbolDelta:
    key = HotSymbolKey(IMG, "/lib/libz.so.1", function, EvidenceKind.INVOKED)
    return HotSymbolDelta(
        key, START, count, START + S, START + 2 * S, total_latency_ns=latency, node_name="n1"
    )


def window(events: int, dropped: int = 0) -> ObservationWindow:
    return ObservationWindow(
        IMG, "n1", START, events, Posture.EBPF_DEEP, 60, "tetragon", dropped_events=dropped
    )


def test_a_sum_past_int8_is_quarantined_and_the_stored_counts_stay(url: str) -> None:
    with open_store(url) as s:
        first = [delta("crc32", BIG, 1), delta("inflate", 1, BIG), window(BIG, BIG)]
        assert s.write_batch(Batch("n1/a", 1, first)).written == 3  # type: ignore[arg-type]
        again = s.write_batch(Batch("n1/a", 2, [delta("crc32", BIG, 1)]))  # type: ignore[arg-type]
        assert (again.written, again.quarantined, again.quarantined_invocations) == (0, 1, BIG)
        assert again.errors and again.errors[0] in (
            "bigint out of range",
            "NOT NULL constraint failed: hot_symbols.invocation_count",
        )
        assert s.write_batch(Batch("n1/a", 3, [delta("inflate", 1, BIG)])).quarantined == 1  # type: ignore[arg-type]
        assert s.write_batch(Batch("n1/a", 4, [window(BIG)])).quarantined == 1  # type: ignore[arg-type]
        assert s.write_batch(Batch("n1/a", 5, [window(1, BIG)])).quarantined == 1  # type: ignore[arg-type]
        # two in one batch: the first is stored, the second refused (PostgreSQL: a split batch)
        both = s.write_batch(Batch("n1/a", 7, [delta("adler32", BIG, 0), delta("adler32", BIG, 0)]))  # type: ignore[arg-type]
        assert (both.written, both.quarantined, both.quarantined_invocations) == (1, 1, BIG)
        # a count that fits is still added
        assert s.write_batch(Batch("n1/a", 6, [delta("crc32", 5, 1), window(5)])).written == 2  # type: ignore[arg-type]

        for rows in (s.read_hot_symbols(), s.read_windows()):
            got = {r["function_name"]: (r["invocation_count"], r["total_latency_ns"]) for r in rows}
            assert got == {"crc32": (BIG + 5, 2), "inflate": (1, BIG), "adler32": (BIG, 0)}
            assert all(type(v) is int for pair in got.values() for v in pair)
        (obs,) = s.read_observation_windows()
        assert (obs["event_count"], obs["dropped_events"]) == (BIG + 5, BIG)
        assert type(obs["event_count"]) is int and type(obs["dropped_events"]) is int
