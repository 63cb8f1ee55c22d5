"""The agent's store families: rows held, written, refused or spooled, and the gaps it marked.

Split from :mod:`stellaops_runtime.agent.metrics` (the collector, and the list
of every metric with its meaning): the hot-symbol rows between the aggregator
and the store (in memory, pending, flushed, dropped), exactly-once flushes
(duplicates after a lost acknowledgement, statement-timeout splits), hung
writes, quarantined rows and the spool file; and the source outages and
restart holes marked as gaps, with the watch record they come from.
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


def store_metrics(a: Agent) -> Iterator[Metric]:
    """Rows on their way to the store, exactly-once flushes, hung writes, refused rows and the spool file."""
    p = a.pipeline
    pend = a.pending
    yield _counter("hot_symbols_flushed", "Hot-symbol rows written to the store.", pend.rows_flushed)
    yield _gauge(
        "hot_symbols_in_memory", "Hot-symbol keys aggregated, not flushed yet.", p.aggregator.key_count
    )
    yield _counter(
        "hot_symbols_early_drains",
        "Drains forced because hotSymbols.maxKeys rows were held (counts moved to the store buffer).",
        a.early_drains,
    )
    yield _gauge(
        "hot_symbols_pending",
        "Hot-symbol rows waiting for the store.",
        pend.pending_rows + a.rows_in_transit,  # drained rows on their way to the buffer too
    )
    yield _counter("store_flush_failures", "Failed store writes (retried).", pend.failures)
    yield _counter(
        "store_rows_dropped", "Rows dropped because the outage buffer was full.", pend.dropped_rows
    )
    yield _counter(
        "store_gap_rows_from_drops",
        "Gap rows marked because dropped hot-symbol rows left their windows without evidence.",
        pend.gap_rows_from_drops,
    )
    fl = a.flusher
    yield _counter(
        "store_flush_timeouts",
        "Store writes (rows, the start row, proofs of life, image pairings) abandoned after "
        "store.flushTimeout (retried).",
        pend.timeouts,
    )
    yield _counter(
        "store_statement_timeout_splits",
        "Ranges of a flush written in halves because their write passed store.statementTimeout.",
        pend.timeout_splits,
    )
    yield _counter(
        "store_rows_duplicate",
        "Rows a retried flush found already stored (a lost acknowledgement); not added again.",
        pend.duplicate_rows,
    )
    yield _counter(
        "store_rows_quarantined",
        "Rows the database refused, kept in signals.quarantined_rows with their error.",
        pend.quarantined_rows,
    )
    yield _counter(
        "store_rows_expired",
        "Observation windows not stored: they start in a day store.retentionDays already removed.",
        pend.expired_rows,
    )
    yield _counter(
        "store_rows_outlived_ledger",
        "Rows of a batch held unacknowledged longer than the flush ledger's 30 days, stored as gaps.",
        pend.outlived_rows,
    )
    yield _labelled(
        "store_spool_rows",
        "Spool file rows: spooled at shutdown, loaded at start, replayed into the store; corrupt files.",
        "event",
        {
            "spooled": fl.spool.spooled_rows,
            "loaded": pend.spool_loaded_rows,
            "replayed": pend.spool_replayed_rows,
            "recounted": pend.spool_recounted_rows,  # stored as gaps: another agent counted their lines
            "unverified": pend.spool_unverified_rows,  # stored as gaps: their lines cannot be checked
            "corrupt": fl.spool.corrupt,
        },
    )


def outage_metrics(a: Agent) -> Iterator[Metric]:
    """Source outages and the hole since the node's last agent, both marked as gaps."""
    yield _counter("source_outage_marks", "Source outage spans marked as node-wide gaps.", a.outages.outages)
    yield _counter(
        "source_outage_seconds", "Seconds of source outages marked as gaps (wall clock).", a.outages.seconds
    )
    policies = a.outages.policies  # agent/policy_load_gaps.py: Tetragon not tracing our policies
    yield _gauge(
        "policy_load_gap_open_seconds",
        "Seconds the node-wide gap of our policies not loaded (or not known loaded) has been open; 0: none.",
        policies.open_seconds() if policies is not None else 0.0,
    )
    yield _counter(
        "policy_load_gaps",
        "Spans of our policies not loaded marked as gaps.",
        policies.spans if policies else 0,
    )
    w = a.watch
    yield _counter("restart_gaps", "Holes since the node's last agent, marked as outages.", w.restart_gaps)
    yield _labelled(
        "watch_record_ignored", "Watch records (<store.spoolPath>.alive) not used, by reason.", "reason",
        dict(w.ignored),
    )  # fmt: skip
    yield _counter("watch_record_write_errors", "Failed writes of the node's watch record.", w.write_errors)
    yield _counter(
        "node_liveness_write_failures",
        "Proofs of life (signals.node_liveness, written after each flush) not written to the store.",
        a.flusher.liveness_failures,
    )
    yield _gauge(
        "node_history_unknown",
        "1 while, with no usable watch record, the store has not said whether an agent ran on this "
        "node before (the hole since is a gap from a start it tells; exportFromStart is not replayed).",
        1 if w.awaits_store else 0,
    )
    yield _counter(
        "export_drains_held",
        "Drains held because the export file's position could not be recorded first.",
        w.export.holds,
    )
