"""A batch's latencies counted at once give the histogram each event's own observation gives.

``LatencyHistogram.observe_batch`` (agent/latency.py) counts a batch of 512 events per
bucket from their sorted arrival times instead of one binary search per event; the
capture-latency metric and the benchmark's P95 read those counts, so they must be the
ones ``observe_ns`` gives event by event: in order or not, equal arrivals, values on a
bucket's bound and either side of it, arrivals after ``now`` (negative values), values
past the last bound, empty batches, batch after batch.
"""

from __future__ import annotations

import random

from stellaops_runtime.agent.latency import LATENCY_BUCKETS, LatencyHistogram


def _one_by_one(batches: list[tuple[list[tuple[bytes, int]], int]]) -> LatencyHistogram:
    h = LatencyHistogram()
    for items, now in batches:
        for _, received in items:
            h.observe_ns(now - received)
    return h


def _batched(batches: list[tuple[list[tuple[bytes, int]], int]]) -> LatencyHistogram:
    h = LatencyHistogram()
    for items, now in batches:
        h.observe_batch(items, now)
    return h


def _same(batches: list[tuple[list[tuple[bytes, int]], int]]) -> None:
    a, b = _one_by_one(batches), _batched(batches)
    assert (b.counts, b.sum_ns, b.count) == (a.counts, a.sum_ns, a.count)
    for q in (0.5, 0.95, 0.99):
        assert b.quantile_ns(q) == a.quantile_ns(q)


def test_values_on_and_around_every_bound() -> None:
    now = 10**13
    bounds = [int(x * 1e9) for x in LATENCY_BUCKETS]
    values = [v + d for v in [0, *bounds] for d in (-1, 0, 1)] + [-(10**9), -1, 10**12, 2**63]
    items = [(b"", now - v) for v in values]
    _same([(items, now)])
    _same([(list(reversed(items)), now)])


def test_random_batches_in_and_out_of_order() -> None:
    rng = random.Random(13)
    batches = []
    now = 5 * 10**12
    for _ in range(200):
        n = rng.choice([0, 1, 2, 7, 512])
        now += rng.randrange(0, 10**8)
        spread = rng.choice([10**4, 10**6, 10**9, 10**11])
        arrivals = sorted(now - rng.randrange(-(10**5), spread) for _ in range(n))
        if rng.random() < 0.3:  # held native records released ahead of new ones: out of order
            rng.shuffle(arrivals)
        if rng.random() < 0.2 and arrivals:  # equal arrivals
            arrivals = [arrivals[0]] * len(arrivals)
        batches.append(([(b"x", r) for r in arrivals], now))
    _same(batches)


def test_the_benchmarks_constant_arrival_and_an_empty_batch() -> None:
    _same([([(b"", 1)] * 512, 7 * 10**12), ([], 8 * 10**12)])
