"""The callers table in arrays (hotsymbols/callers.py) counts exactly as a dict of sets would, and
holds no object per key (issue 13: such objects pinned pymalloc arenas after every flush).

The reference below is the table as it was before (a dict of 60-bit hashes to the first
caller's hash or a set of them): same hashes, same caps, same bound, so every ``add`` answer
and every ``count`` must be the same, through the arrays' growth and the bound's start-overs.
"""

from __future__ import annotations

import random
import tracemalloc

from stellaops_runtime.hotsymbols.callers import CallerTable

_MASK = (1 << 60) - 1


class _DictOfSets:
    """What the table counted before it moved into arrays."""

    def __init__(self, *, max_callers: int, max_keys: int) -> None:
        self.by_key: dict[int, set[int]] = {}
        self.max_callers = max_callers
        self.max_keys = max_keys
        self.resets = 0

    def add(self, image: str, module: str, function: str, cm: str, cf: str) -> bool:
        key = hash((image, module, function)) & _MASK
        caller = hash((cm, cf)) & _MASK
        known = self.by_key.get(key)
        if known is None:
            started_over = len(self.by_key) >= self.max_keys
            if started_over:
                self.by_key.clear()
                self.resets += 1
            self.by_key[key] = {caller}
            return started_over
        if caller not in known and len(known) < self.max_callers:
            known.add(caller)
        return False

    def count(self, image: str, module: str, function: str) -> int:
        return len(self.by_key.get(hash((image, module, function)) & _MASK, ()))


def test_counts_as_a_dict_of_sets_through_growth_and_start_overs() -> None:
    rnd = random.Random(13)
    for max_callers, max_keys, n_keys, n_callers in (
        (1, 50, 80, 5),
        (3, 5000, 6000, 8),
        (256, 3000, 2000, 900),
    ):
        t = CallerTable(max_callers=max_callers, max_keys=max_keys)
        ref = _DictOfSets(max_callers=max_callers, max_keys=max_keys)
        for _ in range(40_000):
            k = rnd.randrange(n_keys)
            c = rnd.randrange(n_callers)
            args = (f"img{k % 7}", f"/lib{k % 11}.so", f"fn{k}", f"/lib{c % 5}.so", f"caller{c}")
            assert t.add(*args) == ref.add(*args)
            assert len(t) == len(ref.by_key)
        assert t.resets == ref.resets
        for k in range(n_keys):
            key = (f"img{k % 7}", f"/lib{k % 11}.so", f"fn{k}")
            assert t.count(*key) == ref.count(*key)
        assert t.count("nobody", "/x", "y") == 0


def test_keys_and_callers_are_no_objects() -> None:
    t = CallerTable(max_callers=256, max_keys=200_000)
    for k in range(200):  # buffers past their first sizes, then measured
        t.add("i", "/m", f"warm{k}", "/app", "main")
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for k in range(20_000):
            t.add("i", "/m", f"f{k}", "/app", "main")
            if k % 4 == 0:
                t.add("i", "/m", f"f{k}", "/app", "other")
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = [d for d in after.compare_to(before, "filename") if d.count_diff > 0]
    # A dict of ints held two int objects per key (40,000 here); the arrays are a few buffers.
    assert sum(d.count_diff for d in grown) < 50, grown
    assert len(t) == 20_200 and t.count("i", "/m", "f0") == 2 and t.count("i", "/m", "f1") == 1
