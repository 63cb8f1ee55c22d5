"""Prometheus families of the gap tracker: Tetragon's throttles, rate-limit reports, gap windows, and
the events of pods that ran unwatched (opted out, outside the allowlist, selected by no native policy).

Split from agent/metrics.py (past ~400 lines) by what it reads: the pipeline's
gap tracker (hotsymbols/gaps.py), per node and pod, rather than the agent's
own counters.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from stellaops_runtime.agent.metric_families import P
from stellaops_runtime.agent.metric_families import labelled as _labelled
from stellaops_runtime.agent.prometheus_core import CounterMetricFamily, GaugeMetricFamily, Metric
from stellaops_runtime.hotsymbols.unwatched_windows import (
    NOT_ALLOWED_SOURCE,
    NOT_SELECTED_SOURCE,
    OPTED_OUT_SOURCE,
)

if TYPE_CHECKING:
    from stellaops_runtime.hotsymbols.gaps import GapTracker


def tetragon_drop_metrics(gaps: GapTracker) -> Iterator[Metric]:
    """Tetragon's throttle and rate-limit signals, per node and pod, and the gaps they made."""
    st = gaps.stats
    throttles = CounterMetricFamily(
        P + "tetragon_throttle_events",
        "Tetragon process_throttle signals (it stopped or resumed reporting a cgroup), by node and pod.",
        labels=["node", "namespace", "pod", "type"],
    )
    for (node, namespace, pod, kind), n in sorted(st.throttles.items()):
        throttles.add_metric([node, namespace, pod, kind], n)
    yield throttles
    g = GaugeMetricFamily(
        P + "tetragon_throttled_cgroups", "Tetragon throttles started and not stopped.", labels=["node"]
    )
    for node, n in sorted(gaps.open_throttles.items()):
        g.add_metric([node], n)
    yield g
    reports = CounterMetricFamily(
        P + "tetragon_rate_limit_reports", "Tetragon rate_limit_info events, by node.", labels=["node"]
    )
    dropped = CounterMetricFamily(
        P + "tetragon_rate_limit_dropped_events",
        "Events Tetragon's export rate limiter reported dropped, by node.",
        labels=["node"],
    )
    for node, n in sorted(st.rate_limit_reports.items()):
        reports.add_metric([node], n)
        dropped.add_metric([node], st.rate_limit_dropped[node])
    yield reports
    yield dropped
    yield _labelled(
        "observation_gap_windows",
        "Observation-window rows marked as gaps (Tetragon dropped events), by scope.",
        "scope",
        dict(st.gap_windows),
    )
    unwatched = CounterMetricFamily(
        P + "unwatched_pod_gap_events",
        "Dropped events of pods that ran unwatched whose image's window was marked a gap, by the gap's "
        "source (opted_out, not_allowed, not_selected) and node.",
        labels=["source", "node"],
    )
    for source, counts in (
        (OPTED_OUT_SOURCE, st.opted_out),
        (NOT_ALLOWED_SOURCE, st.not_allowed),
        (NOT_SELECTED_SOURCE, st.not_selected),
    ):
        for node, n in sorted(counts.items()):
            unwatched.add_metric([source, node], n)
    yield unwatched
