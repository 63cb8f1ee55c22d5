"""The agent's event families: what came in, and what was dropped, skipped or repaired on the way.

Split from :mod:`stellaops_runtime.agent.metrics` (the collector, and the list
of every metric with its meaning): payloads received by source, events adapted
by kind, and every way an event is filtered, opted out, refused, repaired or
lost before it reaches the hot-symbol aggregator, with the privacy filter's
redactions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from stellaops_runtime.agent.metric_families import counter as _counter
from stellaops_runtime.agent.metric_families import gauge as _gauge
from stellaops_runtime.agent.metric_families import labelled as _labelled
from stellaops_runtime.agent.prometheus_core import Metric

if TYPE_CHECKING:
    from stellaops_runtime.agent.runner import Agent


def event_metrics(a: Agent) -> Iterator[Metric]:
    """Events received, adapted, filtered, opted out, malformed, repaired, unhandled and dropped."""
    p = a.pipeline
    ad = p.adapter_stats
    pf = p.privacy
    yield _labelled(
        "events_received",
        "Payloads received from the event source.",
        "source",
        getattr(a.source, "received_by_source", None) or {a.source_name: a.received},
    )
    yield _labelled("events", "Events adapted into RuntimeCallEvents, by kind.", "kind", dict(ad.events))
    filtered = {"namespace_not_allowed": pf.events_filtered}
    yield _labelled("events_filtered", "Events dropped on purpose by the privacy filter.", "reason", filtered)
    yield _labelled(
        "events_opted_out",
        "Events of pods opted out by stellaops.io/observe-level: None, dropped before the privacy "
        "filter, by how the pod said so.",
        "reason",
        p.optout.counts(),
    )
    yield _gauge(
        "optout_operator_pods",
        "Pods named by the operator's opted-out list (probe ConfigMap optedOut) the agent holds.",
        p.optout.operator_pods,
    )
    watch = p.optout_watch
    yield _counter(
        "optout_list_errors",
        "Reads of the operator's opted-out list that failed; the last list read is kept.",
        watch.errors if watch is not None else 0,
    )
    yield _labelled(
        "events_malformed", "Malformed events, counted and skipped.", "reason", dict(ad.malformed)
    )
    yield _labelled(
        "events_repaired",
        "Events kept after a repair (NUL replaced, time clamped or invalid, stack or text cut).",
        "reason",
        dict(ad.repaired),
    )
    yield _labelled("events_unhandled", "Event kinds the agent does not use.", "kind", dict(ad.unhandled))
    drops = a.tetragon_drops
    yield _labelled(
        "events_dropped", "Events lost before processing.", "reason",
        {
            "queue_full": a.queue.dropped - a.queue.dropped_oversize,
            "queue_bytes": a.queue.dropped_oversize,
            "tetragon_export_ratelimit": ad.tetragon_export_dropped,
            "tetragon_notify_overflow": int(drops.overflowed) if drops else 0,
            "shutdown_deadline": a.dropped_at_shutdown,
        },
    )  # fmt: skip
    yield _counter("fields_redacted", "Argument fields in which a secret was redacted.", pf.fields_redacted)
    yield _counter("arguments_truncated", "Arguments truncated to maxArgumentBytes.", pf.arguments_truncated)
