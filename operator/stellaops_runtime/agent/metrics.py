"""Prometheus metrics of the agent, read at scrape time from plain counters.

The per-event path only bumps ints (prometheus-client's Counter.inc takes a
lock and costs about a microsecond, several per event); this collector turns
those ints into metric families when Prometheus scrapes.

Two sets of names, with agreeing values:

The seed design's five (runtime-agents-architecture.md, "Monitoring"), under
exactly those names, for the dashboards built on them. Prometheus text format
puts ``_total`` after every counter's samples, so the three whose seed names do
not end in ``_total`` are exposed as ``untyped`` (Prometheus: unknown) families:
their samples then carry the exact name, and they are still monotonic, so
``rate()``/``increase()`` work on them. A gauge would claim they can go down.

tetragon_events_total       counter   payloads received (= sum of stellaops_runtime_events_received_total)
tetragon_events_filtered    untyped   events the privacy filter dropped (= sum of
                                      stellaops_runtime_events_filtered_total)
tetragon_hotsymbols_flushed untyped   hot-symbol rows written to the store
                                      (= stellaops_runtime_hot_symbols_flushed_total)
tetragon_witness_generated  untyped   runtime witnesses the witness bridge signed (witness.enabled)
                                      (= stellaops_runtime_witnesses_generated_total)
tetragon_latency_seconds    histogram event processing latency, the same buckets as
                                      stellaops_runtime_event_processing_latency_seconds

Tetragon's own metrics endpoint also has a ``tetragon_events_total`` (with
labels); it is a different scrape target, so select by job/pod in queries.

The richer set, all prefixed ``stellaops_runtime_``:

events_received_total{source}        payloads the sources handed to the queue
events_total{kind}                   events adapted, by RuntimeCallEvent kind
events_filtered_total{reason}        events dropped on purpose (privacy allowlist)
events_opted_out_total{reason}       events of pods opted out (annotation, label, or operator: the
                                     operator's list in the probe ConfigMap), dropped first
optout_operator_pods                 pods named by the operator's opted-out list the agent holds
optout_list_errors_total             reads of that list that failed (the last list read is kept)
events_malformed_total{reason}       undecodable or invalid events, skipped
events_repaired_total{reason}        events kept after a repair: nul_replaced, time_clamped, time_invalid,
                                     stack_truncated, text_truncated (adapter/validate.py)
events_unhandled_total{kind}         event kinds we do not use (e.g. process_throttle; process_exec_procfs)
events_dropped_total{reason}         events lost: queue_full and queue_bytes (ours: the receive queue's
                                     count and large-payload byte bounds; queue_bytes also counts an
                                     event the source could not take: a gRPC message over the channel's
                                     limit, an export line over the line limit), tetragon_* (Tetragon's)
attribution_drain_failures_total     drains whose attribution step raised (rows kept without purls)
export_drains_held_total             drains of the export source held: their checkpoint could not be
                                     recorded (agent/export_resume.py; the counts wait, unstored)
fields_redacted_total                argument fields in which a secret was redacted
arguments_truncated_total            arguments cut to privacy.maxArgumentBytes
hot_symbols_flushed_total            hot-symbol rows written to the store
hot_symbols_in_memory                keys aggregated and not flushed yet
hot_symbols_early_drains_total       drains forced by hotSymbols.maxKeys (counts moved to the store
                                     buffer early, none dropped)
hot_symbols_pending                  rows waiting for the store (the outage buffer, and rows drained
                                     on their way to it)
node_other_agent                     1 while another agent of this node runs (agent/node_presence.py), or
                                     follows its export file (sources/export_lock.py)
export_unguarded                     1 while the export file is followed with no lock on its directory
                                     (flock refused): a second agent following it would go unnoticed
store_flush_failures_total           failed store writes (retried)
store_rows_dropped_total             rows dropped because the outage buffer was full
store_gap_rows_from_drops_total      gaps marked for those dropped rows (their windows answer unknown)
store_flush_timeouts_total           writes abandoned after store.flushTimeout (connections closed, retried):
                                     the rows', the start row's, proofs of life and image pairings
store_statement_timeout_splits_total ranges of a flush written in halves: their write passed
                                     store.statementTimeout (each part stored once, via the ledger)
store_rows_duplicate_total           rows a retry found already stored (lost acknowledgement; not re-added)
store_rows_quarantined_total         rows the database refused, kept in signals.quarantined_rows
store_rows_expired_total             observation windows not stored: their day store.retentionDays
                                     removed (a late spool, a clock behind; store/late_rows.py)
store_rows_outlived_ledger_total     rows of a batch held unacknowledged past the flush ledger's 30
                                     days, stored as gaps, never counted twice (store/spool_age.py)
store_spool_rows_total{event}        spool file rows: spooled (at shutdown), loaded (at start), replayed
                                     (stored from the spool), recounted and unverified (stored as
                                     gaps, store/export_spans.py), corrupt (spool files moved aside)
witnesses_generated_total            signed runtime witnesses the agent generated (agent/witness bridge)
event_processing_latency_seconds     receive -> in-memory hot-symbol record
queue_depth / queue_capacity         the receive queue
tetragon_connected                   1 while a GetEvents stream is open
agent_source{source}                 1 for the source in use now (tetragon | bcc), with native.enabled
source_switches_total{to}            switches to bcc / to tetragon (agent/source_switch.py)
native_connected                     1 while the agent's own BCC probes are attached
native_probe_config_errors_total     native.probeConfigFile reads that failed (the probes ran without it)
native_kernel_events_total{probe,counter} the BCC probes' in-kernel counters (seen, filtered, lost, ...)
native_drop_gaps_total               gaps recorded for events the BCC probes dropped in the kernel
native_probes{state}                 the latest load's BCC probes: attached, failed (source_switch_stats.py)
                                     (rate limit, sampling, full buffer, recursion misses)
source_switch_overlap_skipped_total  Tetragon events after a switch back that the BCC probes had
                                     counted (agent/source_switch_overlap.py)
tetragon_reconnects_total            streams opened after the first
tetragon_stream_errors_total         streams that broke
tetragon_overflowed_events_total     Tetragon's own per-client drops (from its metrics endpoint)
tetragon_metrics_scrape_errors_total scrapes of Tetragon's metrics endpoint (tetragon.metricsUrl) that failed
tetragon_metrics_unreadable          1 while those scrapes have failed for over an interval: the time is a gap
frames_resolved_total{stack,source}  stack frames the canonicalizer resolved (symtab, dynsym, dwarf,
                                     gopclntab, kallsyms)
frames_unresolved_total{stack,reason} frames left with module + offset (hint or none), by reason
frames_inlined_total                 functions found inlined at resolved user frames (each a frame)
inline_lookups_unanswered_total{reason} inline lookups without an answer (parse_pending, internal_error)
function_ids_total{outcome}          IDs of probed functions (uprobe/USDT/kprobe): resolved_<source>,
                                     cached, unverified_<reason>, or why none was given
symbol_cache_entries{cache}          frames, processes and parsed binaries held by the canonicalizer
symbolizer_operations_total{op}      the symbolizer's own counters (binaries parsed, cache hits, ...)
demangled_total{language}            names demangled (cache misses), by language
demangle_failures_total              names that looked mangled but did not demangle
fastpath_hits_total                  events counted as repeats (agent/fastpath.py);
                                     fastpath_misses_total: events processed in full;
                                     fastpath_evictions_total, fastpath_stale_total,
                                     fastpath_not_kept_total{reason}, fastpath_skipped_total
metrics_stale_seconds                age of the /metrics text (0: fresh; else the pipeline thread was
                                     busy and the last rendering was served; agent/http.py)
hot_symbols_attributed_total{outcome} drained keys: attributed, unattributed, no_root, skipped ([kernel])
attribution_answers_total{scope,source} cold attribution answers (file / function) by source; none =
                                     unattributed, file = a function fell back to its file's package
attribution_errors_total{kind}       bad input met while attributing (outside_root, dpkg_corrupt, ...)
attribution_ambiguous_total          files, digests or crates several packages claim (answered: no purl)
attribution_sbom_version_mismatches_total  packages whose SBOM version differs from the package database
attribution_cache_entries{cache}     cached file and function answers, images indexed
observation_node_writes_total{reason}  ObservationNode writes: created, changed, heartbeat, owner
tetragon_throttle_events_total{node,namespace,pod,type}  Tetragon's process_throttle signals (type start|stop;
                                     pod "" for host cgroups and containers not seen yet)
tetragon_throttled_cgroups{node}     throttles started and not stopped
tetragon_rate_limit_reports_total{node}  Tetragon's rate_limit_info events
tetragon_rate_limit_dropped_events_total{node}  events those reports say Tetragon dropped
observation_gap_windows_total{scope} observation-window rows marked as gaps (scope image | node)
unwatched_pod_gap_events_total{source,node}  dropped events of pods that ran unwatched whose image's
                                     window became a gap: source opted_out, not_allowed, not_selected
source_outage_marks_total            source outage spans marked as node-wide gaps (agent/outages.py);
                                     source_outage_seconds_total: their length on the wall clock
policy_load_gap_open_seconds         age of the open gap of our policies not (known) loaded, 0: none
                                     (agent/policy_load_gaps.py); policy_load_gaps_total: spans recorded
restart_gaps_total                   holes since the node's last agent, from its watch record
                                     (<store.spoolPath>.alive, agent/watch_record.py), marked as outages
watch_record_ignored_total{reason}   watch records not used: not_json, too_large, bad_shape, bad_time,
                                     other_node, unreadable, error; watch_record_write_errors_total
node_liveness_write_failures_total   proofs of life (signals.node_liveness, store/node_liveness.py) not
                                     written after a flush: the node may read as down until the next
node_history_unknown                 1 while no usable watch record and the store has not said whether an
                                     agent ran on the node before (agent/node_history.py)
observation_node_errors_total{kind}    ObservationNode writer failures: kubernetes, tetragon, node, internal
lifecycle_state{state}               1 for what the agent knows of the node's containers: in_sync,
                                     not_in_sync, no_runtime_socket, off (agent/lifecycle_part.py)
lifecycle_*                          with the lifecycle part (docs/lifecycle.md, "Metrics", says what
                                     each counts): the agent's own lifecycle_enriched_total{field},
                                     lifecycle_window_rows_total, lifecycle_unwatched_gap_rows_total,
                                     lifecycle_watch_breaks_total, lifecycle_watching, lifecycle_image_pairs,
                                     lifecycle_image_pairs_dropped_total,
                                     lifecycle_image_pairs_refused_total; the observer's
                                     (lifecycle/metrics.py) lifecycle_envelopes_total,
                                     lifecycle_events_total{type}, lifecycle_decode_failures_total{reason},
                                     lifecycle_events_ignored_total{payload}, lifecycle_reconnects_total,
                                     lifecycle_stream_errors_total, lifecycle_resyncs_total,
                                     lifecycle_resync_removed_total, lifecycle_spec_problems_total,
                                     lifecycle_cgroup_unresolved_total, lifecycle_oom_from_cgroup_total,
                                     lifecycle_oom_notifications_total, lifecycle_oom_unwatched_total,
                                     lifecycle_oom_births_overflows_total, lifecycle_oom_early_evicted_total,
                                     lifecycle_oom_parents_unwatched_total, lifecycle_oom_unread_total,
                                     lifecycle_unwatched_starts_total, lifecycle_missed_events_total,
                                     lifecycle_connected, lifecycle_containers, lifecycle_cgroups
native_selection_*, native_pod_view_*  native events dropped or kept by pod selection and the pod view's
                                     state (agent/native_selection_metrics.py lists them)
http_rejected_total{reason}          requests to /metrics, /healthz, /readyz refused or cut off (timeout,
                                     head_too_large, bad_request_line, connections, ...; agent/http.py)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from stellaops_runtime.agent.event_metrics import event_metrics
from stellaops_runtime.agent.lifecycle_part import state_metric
from stellaops_runtime.agent.metric_families import (
    attribution_metrics,
    canonicalizer_metrics,
    fastpath_metrics,
)
from stellaops_runtime.agent.metric_families import counter as _counter
from stellaops_runtime.agent.metric_families import gauge as _gauge
from stellaops_runtime.agent.metric_families import labelled as _labelled
from stellaops_runtime.agent.prometheus_core import Collector, Metric
from stellaops_runtime.agent.seed_metrics import latency_metric, seed_metrics
from stellaops_runtime.agent.store_metrics import outage_metrics, store_metrics
from stellaops_runtime.agent.tetragon_drop_metrics import tetragon_drop_metrics

if TYPE_CHECKING:
    from stellaops_runtime.agent.runner import Agent

__all__ = ["AgentCollector", "outage_metrics", "seed_metrics", "store_metrics"]


class AgentCollector(Collector):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        a = self.agent
        p = a.pipeline
        yield from event_metrics(a)
        yield from store_metrics(a)
        yield _counter(
            "attribution_drain_failures",
            "Drains whose package attribution raised (their rows were kept without purls).",
            p.attribution_failures,
        )
        yield _counter("witnesses_generated", "Signed runtime witnesses generated.", a.witnesses_generated)
        yield from outage_metrics(a)
        if p.canonicalizer is not None:
            yield from canonicalizer_metrics(p.canonicalizer.stats)
        if p.fast_path is not None:
            yield from fastpath_metrics(p.fast_path.stats)
        if p.attribution is not None:
            yield from attribution_metrics(dict(p.attribution.outcomes), p.attribution.stats)
        yield latency_metric(p.latency)
        yield from seed_metrics(
            received=a.received,
            filtered=p.privacy.events_filtered,
            flushed=a.pending.rows_flushed,
            witnesses=a.witnesses_generated,
            latency=p.latency,
        )
        yield _gauge(
            "node_other_agent",
            "1 while another agent of this node holds its lock (both count its events).",
            1 if a.presence.other_agent or getattr(a.source_stats, "other_agent", False) else 0,
        )
        yield _gauge(
            "export_unguarded",
            "1 while the export file is followed without a lock on its directory (flock refused).",
            1 if getattr(a.source_stats, "unguarded", False) is True else 0,
        )
        yield _gauge("queue_depth", "Events waiting in the receive queue.", len(a.queue))
        yield _gauge("queue_capacity", "Capacity of the receive queue.", a.queue.capacity)
        s, drops = a.source_stats, a.tetragon_drops
        yield _gauge(
            "tetragon_connected",
            "1 while a Tetragon event stream is open.",
            1 if getattr(s, "tetragon_connected", s.connected) else 0,
        )
        yield _counter("tetragon_reconnects", "Tetragon event streams opened after the first.", s.reconnects)
        yield _counter("tetragon_stream_errors", "Tetragon event streams that broke.", s.stream_errors)
        yield _counter(
            "tetragon_overflowed_events",
            "Tetragon's own per-client drops (tetragon_notify_overflowed_events_total).",
            drops.overflowed if drops else 0,
        )
        yield _counter(
            "tetragon_metrics_scrape_errors",
            "Scrapes of Tetragon's metrics endpoint (tetragon.metricsUrl) that failed.",
            drops.scrape_errors if drops else 0,
        )
        yield _gauge(
            "tetragon_metrics_unreadable",
            "1 while Tetragon's metrics have not been read for over an interval (that time is a gap).",
            1 if a.tetragon_unreadable else 0,
        )
        yield from tetragon_drop_metrics(p.gaps)  # Tetragon's own drop signals (hotsymbols/gaps.py)
        ns = a.node_status
        if ns is not None:
            writes, errors = dict(ns.stats.writes), dict(ns.stats.errors)
            yield _labelled("observation_node_writes", "ObservationNode writes, by reason.", "reason", writes)
            yield _labelled("observation_node_errors", "ObservationNode writer failures.", "kind", errors)
        if (source_metrics := getattr(a.source, "metrics", None)) is not None:  # agent/source_switch.py
            yield from source_metrics()
        if (lifecycle := getattr(a, "lifecycle", None)) is not None:  # agent/lifecycle_part.py
            yield from lifecycle.metrics()
        yield state_metric(lifecycle, p)  # what the agent knows of the node's containers
        if (sel := p.native_selection) is not None:  # agent/native_selection.py
            from stellaops_runtime.agent.native_selection_metrics import selection_metrics

            view = getattr(a, "pod_view", None)
            yield from selection_metrics(sel, view.stats if view is not None else None)
