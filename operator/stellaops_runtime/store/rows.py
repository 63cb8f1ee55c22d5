"""Store rows as parameter tuples, in one column order per table, for both backends.

The SQLite path binds them by name (``dict(zip(COLS, tuple))``); the
PostgreSQL path COPYs observation windows in this order, and the store
benchmark COPYs cumulative rows with :data:`HOT_COLS` as its raw ceiling.
Timestamps become aware UTC datetimes (:func:`ns_to_datetime`), which raises
OverflowError for a time a datetime cannot hold: the row is then refused.
"""

from __future__ import annotations

from typing import Any

from stellaops_runtime.contracts.hotsymbols import HotSymbolDelta, ObservationWindow
from stellaops_runtime.store.timeconv import ns_to_datetime

HOT_COLS = (
    "image_digest",
    "module",
    "function_name",
    "evidence_kind",
    "build_id",
    "purl",
    "function_id",
    "invocation_count",
    "unique_callers",
    "total_latency_ns",
    "max_latency_ns",
    "confidence",
    "first_seen",
    "last_seen",
    "node_name",
    "sample",
)
HOT_TYPES = (
    *("text",) * 7,
    "int8",
    "int4",
    "int8",
    "int8",
    "float4",
    "timestamptz",
    "timestamptz",
    "text",
    "jsonb",
)
WIN_COLS = (
    "image_digest",
    "module",
    "function_name",
    "evidence_kind",
    "window_start",
    "invocation_count",
    "unique_callers",
    "total_latency_ns",
    "max_latency_ns",
    "first_seen",
    "last_seen",
)
OBS_COLS = (
    "image_digest",
    "node_name",
    "window_start",
    "event_count",
    "posture_level",
    "window_seconds",
    "source",
    "gap_start",
    "gap_end",
    "throttle_count",
    "dropped_events",
    "marked_by",  # before evidenced_level, which stays the last (tests read it as [-1])
    "evidenced_level",
)
OBS_TYPES = (
    "text",
    "text",
    "timestamptz",
    "int8",
    "int2",
    "int4",
    "text",
    "timestamptz",
    "timestamptz",
    "int8",
    "int8",
    "text",
    "int2",
)


def hot_tuple(d: HotSymbolDelta) -> tuple[Any, ...]:
    k = d.key
    return (
        k.image_digest,
        k.module,
        k.function_name,
        str(k.evidence),
        d.build_id,
        d.purl,
        d.function_id,
        d.invocation_count,
        d.unique_callers,
        d.total_latency_ns,
        d.max_latency_ns,
        d.confidence,
        ns_to_datetime(d.first_seen_ns),
        ns_to_datetime(d.last_seen_ns),
        d.node_name,
        d.sample or None,
    )


def win_tuple(d: HotSymbolDelta) -> tuple[Any, ...]:
    k = d.key
    return (
        k.image_digest,
        k.module,
        k.function_name,
        str(k.evidence),
        ns_to_datetime(d.window_start_ns),
        d.invocation_count,
        d.unique_callers,
        d.total_latency_ns,
        d.max_latency_ns,
        ns_to_datetime(d.first_seen_ns),
        ns_to_datetime(d.last_seen_ns),
    )


def obs_tuple(w: ObservationWindow) -> tuple[Any, ...]:
    return (
        w.image_digest,
        w.node_name,
        ns_to_datetime(w.window_start_ns),
        w.event_count,
        w.posture.rank if w.posture is not None else None,
        w.window_seconds or None,
        w.source,
        ns_to_datetime(w.gap_start_ns) if w.has_gap else None,
        ns_to_datetime(w.gap_end_ns) if w.has_gap else None,
        w.throttles,
        w.dropped_events,
        w.marked_by or None,  # marked_by (0013): the mark's writer, NULL when unknown
        ev.rank if (ev := w.evidenced_posture) is not None else None,  # evidenced_level (0009)
    )
