"""The outage buffer keeps a drain's rows as they are instead of copying them (issue 13: the flush's peak).

A drain hands the buffer 100,000 fresh deltas nobody else keeps; copying each
(as ``add`` does for rows a caller still holds) had the agent hold two copies
of every row at the peak of a 100,000-key flush. With ``owned=True`` the
buffer keeps the drain's objects, and what it would write is unchanged:
these tests compare both ways over several drains that merge into each
other's rows.
"""

from __future__ import annotations

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.store.pending import PendingWrites
from tests.new_objects import live, only_new

S = 1_000_000_000
W = 60 * S


def drain(n: int, window: int, count: int) -> list[HotSymbolDelta]:
    """What one drain of ``n`` keys in ``window`` would hand over (fresh objects)."""
    start = window * W
    return [
        HotSymbolDelta(
            key=HotSymbolKey("sha256:aa", f"/lib{i % 3}.so", f"f{i}", EvidenceKind.ON_STACK),
            window_start_ns=start,
            invocation_count=count + i,
            first_seen_ns=start + count * S,
            last_seen_ns=start + (count + 1) * S,
            unique_callers=i % 4,
            node_name=f"node-{count}",
            sample={"binary": f"/bin/{count}"} if i % 2 else {},
        )
        for i in range(n)
    ]


def rows(p: PendingWrites) -> list[tuple[object, ...]]:
    out = []
    for batch in p.take_all():
        deltas, windows = batch.split(0, len(batch.units))
        out += [
            (
                d.key,
                d.window_start_ns,
                d.invocation_count,
                d.first_seen_ns,
                d.last_seen_ns,
                d.unique_callers,
                d.node_name,
                d.sample,
            )
            for d in deltas
        ]
        out += [(o.image_digest, o.node_name, o.window_start_ns, o.event_count) for o in windows]
    return out


def live_deltas() -> int:
    return live(HotSymbolDelta)


def test_a_drains_rows_are_kept_not_copied() -> None:
    with only_new():  # counts see the rows made here, not the worker's whole heap (tests/new_objects.py)
        p = PendingWrites(max_pending_rows=10_000)
        base = live_deltas()
        first = drain(500, 0, 1)
        p.add(first, [ObservationWindow("sha256:aa", "node-1", 0, 7)], owned=True)
        # Counted while the drain's list still holds its rows: a copy would make 1,000 now (after
        # ``del first`` a copy frees the originals and counts 500 too, so it proves nothing there).
        assert live_deltas() - base == 500  # one object per row (1,000 with a copy each)
        del first
        assert live_deltas() - base == 500  # the buffer keeps them
        copied = PendingWrites(max_pending_rows=10_000)
        kept = drain(500, 0, 1)
        copied.add(kept, [])
        assert live_deltas() - base == 500 + 1000
        del kept, copied


def test_owned_and_copied_rows_write_the_same() -> None:
    owned, copied = PendingWrites(max_pending_rows=10_000), PendingWrites(max_pending_rows=10_000)
    obs = [ObservationWindow("sha256:aa", "node-1", 0, 3)]
    for window, n, count in ((0, 300, 1), (0, 200, 5), (1, 300, 2), (0, 400, 9)):  # later drains merge in
        owned.add(drain(n, window, count), obs, owned=True)
        copied.add(drain(n, window, count), obs)
    assert (
        owned.pending_rows == copied.pending_rows == 400 + 300 + 1
    )  # keys of windows 0 and 1, one observation
    assert rows(owned) == rows(copied)


def test_rows_a_caller_still_holds_are_not_modified_without_owned() -> None:
    p = PendingWrites(max_pending_rows=100)
    mine = drain(2, 0, 1)
    p.add(mine, [])
    p.add(drain(2, 0, 5), [])  # merges into the buffered rows
    assert [d.invocation_count for d in mine] == [1, 2]
