"""Prometheus metrics of the agent, read at scrape time from plain counters.

The per-event path only bumps ints (prometheus-client's Counter.inc takes a
lock and costs about a microsecond, several per event); this collector turns
those ints into metric families when Prometheus scrapes.

Names (all prefixed ``stellaops_runtime_``):

events_received_total{source}        payloads the sources handed to the queue
events_total{kind}                   events adapted, by RuntimeCallEvent kind
events_filtered_total{reason}        events dropped on purpose (privacy allowlist)
events_malformed_total{reason}       undecodable or invalid events, skipped
events_unhandled_total{kind}         event kinds we do not use (e.g. process_throttle)
events_dropped_total{reason}         events lost: queue_full (ours), tetragon_* (Tetragon's)
fields_redacted_total                argument fields in which a secret was redacted
arguments_truncated_total            arguments cut to privacy.maxArgumentBytes
hot_symbols_flushed_total            hot-symbol rows written to the store
hot_symbols_in_memory                keys aggregated and not flushed yet
hot_symbols_pending                  rows waiting for the store (outage buffer)
store_flush_failures_total           failed store writes (retried)
store_rows_dropped_total             rows dropped because the outage buffer was full
witnesses_generated_total            signed runtime witnesses (witness bridge: not built yet)
event_processing_latency_seconds     receive -> in-memory hot-symbol record
queue_depth / queue_capacity         the receive queue
tetragon_connected                   1 while a GetEvents stream is open
tetragon_reconnects_total            streams opened after the first
tetragon_stream_errors_total         streams that broke
tetragon_overflowed_events_total     Tetragon's own per-client drops (from its metrics endpoint)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from stellaops_runtime.agent.runner import Agent

P = "stellaops_runtime_"


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(P + name, doc, value=value)


def _labelled(name: str, doc: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    m = CounterMetricFamily(P + name, doc, labels=[label])
    for k, v in sorted(values.items()):
        m.add_metric([str(k)], v)
    return m


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(P + name, doc, value=value)


class AgentCollector(Collector):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        a = self.agent
        p = a.pipeline
        ad = p.adapter_stats
        pf = p.privacy
        yield _labelled(
            "events_received",
            "Payloads received from the event source.",
            "source",
            {a.source_name: a.received},
        )
        yield _labelled("events", "Events adapted into RuntimeCallEvents, by kind.", "kind", dict(ad.events))
        yield _labelled(
            "events_filtered", "Events dropped on purpose by the privacy filter.", "reason",
            {"namespace_not_allowed": pf.events_filtered},
        )  # fmt: skip
        yield _labelled(
            "events_malformed", "Malformed events, counted and skipped.", "reason", dict(ad.malformed)
        )
        yield _labelled("events_unhandled", "Event kinds the agent does not use.", "kind", dict(ad.unhandled))
        drops = a.tetragon_drops
        yield _labelled(
            "events_dropped", "Events lost before processing.", "reason",
            {
                "queue_full": a.queue.dropped,
                "tetragon_export_ratelimit": ad.tetragon_export_dropped,
                "tetragon_notify_overflow": int(drops.overflowed) if drops else 0,
            },
        )  # fmt: skip
        yield _counter(
            "fields_redacted", "Argument fields in which a secret was redacted.", pf.fields_redacted
        )
        yield _counter(
            "arguments_truncated", "Arguments truncated to maxArgumentBytes.", pf.arguments_truncated
        )
        pend = a.pending
        yield _counter("hot_symbols_flushed", "Hot-symbol rows written to the store.", pend.rows_flushed)
        yield _gauge(
            "hot_symbols_in_memory", "Hot-symbol keys aggregated, not flushed yet.", p.aggregator.key_count
        )
        yield _gauge("hot_symbols_pending", "Hot-symbol rows waiting for the store.", pend.pending_rows)
        yield _counter("store_flush_failures", "Failed store writes (retried).", pend.failures)
        yield _counter(
            "store_rows_dropped", "Rows dropped because the outage buffer was full.", pend.dropped_rows
        )
        yield _counter("witnesses_generated", "Signed runtime witnesses generated.", a.witnesses_generated)
        h = p.latency
        buckets: list[tuple[str, float]] = []
        acc = 0
        for bound_ns, c in zip(h.bounds_ns, h.counts, strict=False):
            acc += c
            buckets.append((repr(bound_ns / 1e9), acc))
        buckets.append(("+Inf", h.count))
        yield HistogramMetricFamily(
            P + "event_processing_latency_seconds",
            "Time from receiving an event to its in-memory hot-symbol record.",
            buckets=buckets,
            sum_value=h.sum_ns / 1e9,
        )
        yield _gauge("queue_depth", "Events waiting in the receive queue.", len(a.queue))
        yield _gauge("queue_capacity", "Capacity of the receive queue.", a.queue.capacity)
        s = a.source_stats
        yield _gauge(
            "tetragon_connected", "1 while a Tetragon event stream is open.", 1 if s.connected else 0
        )
        yield _counter("tetragon_reconnects", "Tetragon event streams opened after the first.", s.reconnects)
        yield _counter("tetragon_stream_errors", "Tetragon event streams that broke.", s.stream_errors)
        yield _counter(
            "tetragon_overflowed_events",
            "Tetragon's own per-client drops (tetragon_notify_overflowed_events_total).",
            drops.overflowed if drops else 0,
        )
