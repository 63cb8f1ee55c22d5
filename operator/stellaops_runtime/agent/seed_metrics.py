"""The agent's latency histogram and the seed design's five metrics, under their exact names.

Split from :mod:`stellaops_runtime.agent.metrics` (the collector, and the list
of every metric with its meaning, including why three seed names are
``untyped`` families). Both histograms render the same
:class:`~stellaops_runtime.agent.latency.LatencyHistogram` with the same
buckets, so the two names always agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from stellaops_runtime.agent.metric_families import P
from stellaops_runtime.agent.metric_families import untyped as _untyped
from stellaops_runtime.agent.prometheus_core import CounterMetricFamily, HistogramMetricFamily, Metric

if TYPE_CHECKING:
    from stellaops_runtime.agent.latency import LatencyHistogram


def _latency_buckets(h: LatencyHistogram) -> list[tuple[str, float]]:
    buckets: list[tuple[str, float]] = []
    acc = 0
    for bound_ns, c in zip(h.bounds_ns, h.counts, strict=False):
        acc += c
        buckets.append((repr(bound_ns / 1e9), acc))
    buckets.append(("+Inf", h.count))
    return buckets


def latency_metric(h: LatencyHistogram) -> Metric:
    """stellaops_runtime_event_processing_latency_seconds."""
    return HistogramMetricFamily(
        P + "event_processing_latency_seconds",
        "Time from receiving an event to its in-memory hot-symbol record.",
        buckets=_latency_buckets(h),
        sum_value=h.sum_ns / 1e9,
    )


def seed_metrics(
    *, received: int, filtered: int, flushed: int, witnesses: int, latency: LatencyHistogram
) -> Iterator[Metric]:
    """The seed design's five metrics ("Monitoring"), named exactly as it names them."""
    yield CounterMetricFamily("tetragon_events_total", "Total events received.", value=received)
    yield _untyped("tetragon_events_filtered", "Events dropped by the privacy filter.", filtered)
    yield _untyped("tetragon_hotsymbols_flushed", "Hot symbols written to the store.", flushed)
    yield _untyped("tetragon_witness_generated", "Runtime witnesses generated.", witnesses)
    yield HistogramMetricFamily(
        "tetragon_latency_seconds",
        "Event processing latency (receive to in-memory hot-symbol record).",
        buckets=_latency_buckets(latency),
        sum_value=latency.sum_ns / 1e9,
    )
