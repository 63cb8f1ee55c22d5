"""An ``unprobed`` fact (agent/unprobed.py) is never dropped by the outage bound, like a gap row.

The agent hands each fact "crc32's tail crc32.part.0 was left unprobed" to the store once, and
the answers read it for any period (evidence/probed_in_part.py). A hot-symbol row the bound drops
leaves a gap over its own window only; a dropped fact would leave the answers about every later
period saying "not observed" of calls nobody watched, and it is never sent again. So a fact is
kept as a gap row is: never dropped, not counted against the bound, in the buffer and in a frozen
batch (a failed flush) alike.
"""

from __future__ import annotations

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.pending import PendingWrites

S = 1_000_000_000
W = 60 * S
IMG = "sha256:" + "a" * 64


def row(fn: str, window: int, kind: EvidenceKind = EvidenceKind.INVOKED, count: int = 1) -> HotSymbolDelta:
    start = window * W
    key = HotSymbolKey(IMG, "/usr/lib/libz.so.1", fn, kind)
    return HotSymbolDelta(key, start, count, start + S, start + S, node_name="n1")


def fact(window: int = 0) -> HotSymbolDelta:
    return row("crc32.part.0", window, EvidenceKind.UNPROBED, 0)


def kept(p: PendingWrites) -> list[str]:
    units = [u for b in p.take_all() for u in b.units if u is not None]
    return sorted(u.key.function_name for u in units if isinstance(u, HotSymbolDelta))


def test_a_fact_in_the_buffer_outlives_the_bound() -> None:
    """Seen failing before the fix: the fact, the oldest window's row, was the first dropped."""
    p = PendingWrites(max_pending_rows=2, window_seconds=60)
    p.add([row("adler32", 0), fact(0)], [])  # a drain's counts, then its facts (agent/pipeline.py)
    for w in range(1, 6):
        p.add([row(f"f{w}", w)], [])
    drops = p.dropped_rows  # adler32 and f1..f3 went, each leaving its gap; the fact stays
    assert (kept(p), drops) == (["crc32.part.0", "f4", "f5"], 4)


def test_a_fact_in_a_frozen_batch_outlives_the_bound() -> None:
    """Seen failing before the fix: tombstoned with a gap over its window only."""
    p = PendingWrites(max_pending_rows=2, window_seconds=60)
    p.add([fact(0), row("adler32", 0)], [])
    p._freeze_buffer()  # as a failed flush leaves it: frozen, to be retried
    for w in range(1, 4):
        p.add([row(f"f{w}", w)], [])
    drops = p.dropped_rows
    assert (kept(p), drops) == (["crc32.part.0", "f2", "f3"], 2)
