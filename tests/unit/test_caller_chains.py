"""Caller chains noted once (hotsymbols/callers.py ``NotedChains``) count exactly as noting every pair.

Why it exists: the aggregator notes a stack's callers through NotedChains, which skips a chain it
has noted whole since the callers table last started over (issue 13: the stream whose stacks never
repeat repeats their functions, and noting its pairs again cost ~5k instructions each). Skipping
must change nothing: every ``count``, every start-over and what the aggregator reports (callers,
epoch) are compared here with noting every pair each time, through the table's growth, its
``max_callers`` cap and its ``max_keys`` start-overs, with recursion, long chains and the bounds.
"""

from __future__ import annotations

import random
from itertools import pairwise

from stellaops_runtime.hotsymbols import callers
from stellaops_runtime.hotsymbols.aggregate import HotSymbolAggregator
from stellaops_runtime.hotsymbols.callers import CallerTable, NotedChains
from tests.unit.test_aggregate_stack_model import S, random_event


def _every_pair(table: CallerTable, chain: list[int]) -> int:
    """What the aggregator did before NotedChains: every pair noted, each time."""
    started_over = 0
    for key, caller in pairwise(chain):
        if table.add_hashed(key, caller):
            started_over += 1
    return started_over


def _chains(rng: random.Random, n: int, functions: int) -> list[list[int]]:
    keys = [hash(("img", f"/m{k % 3}", f"f{k}")) for k in range(functions)]
    out = []
    for _ in range(n):
        depth = rng.choice([2, 2, 3, 3, 4, 7, callers.MAX_CHAIN_FRAMES, callers.MAX_CHAIN_FRAMES + 3])
        chain = [rng.choice(keys) for _ in range(depth)]
        if rng.random() < 0.2:  # recursion: one function twice in a row
            chain.insert(1, chain[0])
        out.append(chain)
    return out


def test_noted_chains_count_as_noting_every_pair() -> None:
    rng = random.Random(29)
    for max_callers, max_keys, functions in ((1, 40, 60), (3, 10, 30), (256, 1000, 50), (2, 200, 400)):
        pool = _chains(rng, 60, functions)
        seq = [rng.choice(pool) for _ in range(3000)]
        noted, plain = (
            CallerTable(max_callers=max_callers, max_keys=max_keys),
            CallerTable(max_callers=max_callers, max_keys=max_keys),
        )
        chains = NotedChains()
        for i, chain in enumerate(seq):
            assert chains.note(noted, chain) == _every_pair(plain, chain), i
            if i % 700 == 699:
                chains.clear()  # as at a drain: only forgotten, never wrong
        assert (len(noted), noted.resets) == (len(plain), plain.resets)
        for k in range(functions):
            key = ("img", f"/m{k % 3}", f"f{k}")
            assert noted.count(*key) == plain.count(*key)


def test_a_chain_is_skipped_only_until_the_table_starts_over() -> None:
    t = CallerTable(max_callers=256, max_keys=2)
    chains = NotedChains()
    a, b, c = (hash(("i", "/m", f)) for f in "abc")
    assert chains.note(t, [a, b]) == 0 and t.count("i", "/m", "a") == 1
    assert chains.note(t, [a, b]) == 0 and len(chains._chains) == 1
    assert chains.note(t, [b, c]) == 0  # the table holds a and b: full
    assert chains.note(t, [c, a]) == 1  # a third key: the table started over, every chain forgotten
    assert len(chains._chains) == 0 and t.count("i", "/m", "a") == 0
    assert chains.note(t, [a, b]) == 0 and t.count("i", "/m", "a") == 1  # noted again, not skipped


def test_the_chains_held_are_bounded() -> None:
    t = CallerTable(max_callers=256, max_keys=100_000)
    chains = NotedChains()
    long = [hash(("i", "/m", f"g{k}")) for k in range(callers.MAX_CHAIN_FRAMES + 1)]
    chains.note(t, long)
    assert not chains._chains  # too long to remember: noted every time
    for k in range(callers.MAX_CHAIN_HASHES):
        chains.note(t, [hash(("i", "/m", f"f{k}")), hash(("i", "/m", "main"))])
        assert chains._hashes <= callers.MAX_CHAIN_HASHES
        assert chains._hashes == 2 * len(chains._chains)


def test_the_aggregator_reports_what_noting_every_pair_reports(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(31)
    events = [random_event(rng, S + rng.randrange(200) * S // 2) for _ in range(600)]

    def run(skip: bool) -> tuple[list[object], int]:
        if not skip:
            monkeypatch.setattr(NotedChains, "note", lambda self, table, chain: _every_pair(table, chain))
        a = HotSymbolAggregator(
            window_seconds=60, min_confidence=0.0, max_callers_per_symbol=3, max_tracked_caller_keys=12
        )
        out: list[object] = []
        for i, e in enumerate(events):
            a.observe(e)
            if i % 150 == 149:
                out += a.drain()[0]
        out += a.drain()[0]
        monkeypatch.undo()
        return out, a.epoch

    (skipped, epoch), (every, every_epoch) = run(True), run(False)
    assert skipped == every and epoch == every_epoch
    assert any(getattr(d, "unique_callers", 0) > 1 for d in skipped)
