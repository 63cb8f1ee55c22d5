"""The SQL that adds hot-symbol rows to the store, per backend.

Split from :mod:`stellaops_runtime.store.writer` so that the exactly-once
batch logic (:mod:`stellaops_runtime.store.ledger`) and the store class can
both use it without importing each other.

- PostgreSQL: psycopg 3 binary COPY into temporary staging tables
  (ON COMMIT DROP), then one ``INSERT ... SELECT ... ON CONFLICT DO UPDATE``
  per table, the fastest upsert measured here (research/perf-baselines.md §4,
  ~95k rows/s insert, ~56k update).
- SQLite: ``executemany`` of the equivalent ``INSERT ... ON CONFLICT DO
  UPDATE`` (SQLite >= 3.24).

ON CONFLICT may touch a row only once per statement, so deltas are merged per
key (cumulative table) and per (key, window) (history table) first, in the
pure functions :func:`merge_by_key`, :func:`merge_by_window` and
:func:`merge_observations`. :func:`write_rows` runs all of it inside the
caller's transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from stellaops_runtime.contracts.hotsymbols import HotSymbolDelta, HotSymbolKey, ObservationWindow
from stellaops_runtime.store.schema import (
    hot_symbol_windows,
    hot_symbols,
    ns_to_datetime,
    observation_windows,
)

# -- pure merging -------------------------------------------------------------


def _copy(d: HotSymbolDelta) -> HotSymbolDelta:
    return dataclasses.replace(d)


def merge_by_window(deltas: Iterable[HotSymbolDelta]) -> list[HotSymbolDelta]:
    """One delta per (key, window_start), merged in the given order; inputs are not modified."""
    out: dict[tuple[HotSymbolKey, int], HotSymbolDelta] = {}
    for d in deltas:
        k = (d.key, d.window_start_ns)
        have = out.get(k)
        if have is None:
            out[k] = _copy(d)
        else:
            have.merge(d)
    return list(out.values())


def merge_by_key(deltas: Iterable[HotSymbolDelta]) -> list[HotSymbolDelta]:
    """One delta per key for the cumulative table; inputs are not modified.

    Deltas are folded oldest window first, so "last reporter" fields
    (node_name) come from the latest window. ``window_start_ns`` of a result
    is its earliest window.
    """
    out: dict[HotSymbolKey, HotSymbolDelta] = {}
    for d in sorted(deltas, key=lambda d: d.window_start_ns):
        have = out.get(d.key)
        if have is None:
            out[d.key] = _copy(d)
        else:
            have.merge(d)
    return list(out.values())


def merge_observations(windows: Iterable[ObservationWindow]) -> list[ObservationWindow]:
    """One row per (image, node, window_start): event counts added, the higher posture kept."""
    out: dict[tuple[str, str, int], ObservationWindow] = {}
    for w in windows:
        k = (w.image_digest, w.node_name, w.window_start_ns)
        have = out.get(k)
        out[k] = w if have is None else have.merged(w)
    return list(out.values())


def _sort_key(d: HotSymbolDelta) -> tuple[str, str, str, str, int]:
    k = d.key
    return (k.image_digest, k.module, k.function_name, str(k.evidence), d.window_start_ns)


# -- PostgreSQL: binary COPY + INSERT ... SELECT ... ON CONFLICT --------------

_HOT_COLS = (
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
_HOT_TYPES = (
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
_WIN_COLS = (
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
_WIN_TYPES = (*("text",) * 4, "timestamptz", "int8", "int4", "int8", "int8", "timestamptz", "timestamptz")
_OBS_COLS = (
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
)
_OBS_TYPES = (
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
)


def _stage_ddl(name: str, cols: Sequence[str], types: Sequence[str]) -> str:
    body = ", ".join(f"{c} {t}" for c, t in zip(cols, types, strict=True))
    return f"CREATE TEMP TABLE {name} ({body}) ON COMMIT DROP"


_KEY_SQL = "image_digest, module, function_name, evidence_kind"

PG_UPSERT_HOT = f"""
INSERT INTO signals.hot_symbols AS t ({", ".join(_HOT_COLS)}, updated_at)
SELECT {", ".join(_HOT_COLS)}, now() FROM _stage_hot ORDER BY {_KEY_SQL}
ON CONFLICT ({_KEY_SQL}) DO UPDATE SET
    invocation_count = t.invocation_count + EXCLUDED.invocation_count,
    unique_callers = GREATEST(t.unique_callers, EXCLUDED.unique_callers),
    total_latency_ns = t.total_latency_ns + EXCLUDED.total_latency_ns,
    max_latency_ns = GREATEST(t.max_latency_ns, EXCLUDED.max_latency_ns),
    confidence = GREATEST(t.confidence, EXCLUDED.confidence),
    first_seen = LEAST(t.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(t.last_seen, EXCLUDED.last_seen),
    build_id = CASE WHEN t.build_id = '' THEN EXCLUDED.build_id ELSE t.build_id END,
    purl = CASE WHEN t.purl = '' THEN EXCLUDED.purl ELSE t.purl END,
    function_id = CASE WHEN t.function_id = '' THEN EXCLUDED.function_id ELSE t.function_id END,
    sample = COALESCE(t.sample, EXCLUDED.sample),
    node_name = CASE WHEN EXCLUDED.node_name = '' THEN t.node_name ELSE EXCLUDED.node_name END,
    updated_at = EXCLUDED.updated_at
"""

PG_UPSERT_WIN = f"""
INSERT INTO signals.hot_symbol_windows AS t ({", ".join(_WIN_COLS)})
SELECT {", ".join(_WIN_COLS)} FROM _stage_win ORDER BY {_KEY_SQL}, window_start
ON CONFLICT ({_KEY_SQL}, window_start) DO UPDATE SET
    invocation_count = t.invocation_count + EXCLUDED.invocation_count,
    unique_callers = GREATEST(t.unique_callers, EXCLUDED.unique_callers),
    total_latency_ns = t.total_latency_ns + EXCLUDED.total_latency_ns,
    max_latency_ns = GREATEST(t.max_latency_ns, EXCLUDED.max_latency_ns),
    first_seen = LEAST(t.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(t.last_seen, EXCLUDED.last_seen)
"""

PG_UPSERT_OBS = f"""
INSERT INTO signals.observation_windows AS t ({", ".join(_OBS_COLS)})
SELECT {", ".join(_OBS_COLS)} FROM _stage_obs ORDER BY image_digest, node_name, window_start
ON CONFLICT (image_digest, node_name, window_start) DO UPDATE SET
    event_count = t.event_count + EXCLUDED.event_count,
    posture_level = GREATEST(t.posture_level, EXCLUDED.posture_level),
    window_seconds = GREATEST(t.window_seconds, EXCLUDED.window_seconds),
    source = CASE WHEN t.source = '' THEN EXCLUDED.source ELSE t.source END,
    gap_start = LEAST(t.gap_start, EXCLUDED.gap_start),
    gap_end = GREATEST(t.gap_end, EXCLUDED.gap_end),
    throttle_count = t.throttle_count + EXCLUDED.throttle_count,
    dropped_events = t.dropped_events + EXCLUDED.dropped_events
"""


def _hot_tuple(d: HotSymbolDelta) -> tuple[Any, ...]:
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


def _win_tuple(d: HotSymbolDelta) -> tuple[Any, ...]:
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


def _obs_tuple(w: ObservationWindow) -> tuple[Any, ...]:
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
    )


def copy_rows(
    cursor: Any, *, table: str, columns: Sequence[str], types: Sequence[str], rows: Iterable[tuple[Any, ...]]
) -> None:
    """Binary COPY of ``rows`` into ``table`` on a psycopg 3 cursor."""
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(list(types))
        for r in rows:
            cp.write_row(r)


def _write_postgres(
    conn: sa.Connection,
    *,
    by_key: list[HotSymbolDelta],
    by_window: list[HotSymbolDelta],
    obs: list[ObservationWindow],
) -> None:
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur:
        if by_key:
            cur.execute(_stage_ddl("_stage_hot", _HOT_COLS, _HOT_TYPES))
            copy_rows(
                cur, table="_stage_hot", columns=_HOT_COLS, types=_HOT_TYPES, rows=map(_hot_tuple, by_key)
            )
            cur.execute(PG_UPSERT_HOT)
        if by_window:
            cur.execute(_stage_ddl("_stage_win", _WIN_COLS, _WIN_TYPES))
            copy_rows(
                cur, table="_stage_win", columns=_WIN_COLS, types=_WIN_TYPES, rows=map(_win_tuple, by_window)
            )
            cur.execute(PG_UPSERT_WIN)
        if obs:
            cur.execute(_stage_ddl("_stage_obs", _OBS_COLS, _OBS_TYPES))
            copy_rows(cur, table="_stage_obs", columns=_OBS_COLS, types=_OBS_TYPES, rows=map(_obs_tuple, obs))
            cur.execute(PG_UPSERT_OBS)


# -- SQLite: executemany of INSERT ... ON CONFLICT DO UPDATE ------------------


def _sqlite_statements() -> tuple[Any, Any, Any]:
    ins = sqlite_insert(hot_symbols)
    t, x = hot_symbols.c, ins.excluded
    hot = ins.on_conflict_do_update(
        index_elements=[t.image_digest, t.module, t.function_name, t.evidence_kind],
        set_={
            "invocation_count": t.invocation_count + x.invocation_count,
            "unique_callers": sa.func.max(t.unique_callers, x.unique_callers),
            "total_latency_ns": t.total_latency_ns + x.total_latency_ns,
            "max_latency_ns": sa.func.max(t.max_latency_ns, x.max_latency_ns),
            "confidence": sa.func.max(t.confidence, x.confidence),
            "first_seen": sa.func.min(t.first_seen, x.first_seen),
            "last_seen": sa.func.max(t.last_seen, x.last_seen),
            "build_id": sa.case((t.build_id == "", x.build_id), else_=t.build_id),
            "purl": sa.case((t.purl == "", x.purl), else_=t.purl),
            "function_id": sa.case((t.function_id == "", x.function_id), else_=t.function_id),
            "sample": sa.func.coalesce(t.sample, x.sample),
            "node_name": sa.case((x.node_name == "", t.node_name), else_=x.node_name),
            "updated_at": x.updated_at,
        },
    )
    ins = sqlite_insert(hot_symbol_windows)
    t, x = hot_symbol_windows.c, ins.excluded
    win = ins.on_conflict_do_update(
        index_elements=[t.image_digest, t.module, t.function_name, t.evidence_kind, t.window_start],
        set_={
            "invocation_count": t.invocation_count + x.invocation_count,
            "unique_callers": sa.func.max(t.unique_callers, x.unique_callers),
            "total_latency_ns": t.total_latency_ns + x.total_latency_ns,
            "max_latency_ns": sa.func.max(t.max_latency_ns, x.max_latency_ns),
            "first_seen": sa.func.min(t.first_seen, x.first_seen),
            "last_seen": sa.func.max(t.last_seen, x.last_seen),
        },
    )
    ins = sqlite_insert(observation_windows)
    t, x = observation_windows.c, ins.excluded
    obs = ins.on_conflict_do_update(
        index_elements=[t.image_digest, t.node_name, t.window_start],
        set_={
            "event_count": t.event_count + x.event_count,
            # SQLite's max() of a NULL is NULL: unknown (NULL) must lose to any level.
            "posture_level": sa.func.coalesce(
                sa.func.max(t.posture_level, x.posture_level), t.posture_level, x.posture_level
            ),
            "window_seconds": sa.func.coalesce(
                sa.func.max(t.window_seconds, x.window_seconds), t.window_seconds, x.window_seconds
            ),
            "source": sa.case((t.source == "", x.source), else_=t.source),
            # a gap is the union of both reports; NULL (no gap) loses to any time
            "gap_start": sa.func.coalesce(sa.func.min(t.gap_start, x.gap_start), t.gap_start, x.gap_start),
            "gap_end": sa.func.coalesce(sa.func.max(t.gap_end, x.gap_end), t.gap_end, x.gap_end),
            "throttle_count": t.throttle_count + x.throttle_count,
            "dropped_events": t.dropped_events + x.dropped_events,
        },
    )
    return hot, win, obs


_SQLITE_HOT, _SQLITE_WIN, _SQLITE_OBS = _sqlite_statements()


def _write_sqlite(
    conn: sa.Connection,
    *,
    by_key: list[HotSymbolDelta],
    by_window: list[HotSymbolDelta],
    obs: list[ObservationWindow],
) -> None:
    now = dt.datetime.now(dt.UTC)
    if by_key:
        conn.execute(
            _SQLITE_HOT,
            [dict(zip(_HOT_COLS, _hot_tuple(d), strict=True), updated_at=now) for d in by_key],
        )
    if by_window:
        conn.execute(_SQLITE_WIN, [dict(zip(_WIN_COLS, _win_tuple(d), strict=True)) for d in by_window])
    if obs:
        conn.execute(_SQLITE_OBS, [dict(zip(_OBS_COLS, _obs_tuple(w), strict=True)) for w in obs])


# -- both backends -------------------------------------------------------------


def write_rows(conn: sa.Connection, deltas: list[HotSymbolDelta], windows: list[ObservationWindow]) -> int:
    """Add deltas and observation windows inside the caller's transaction.

    Returns the number of rows written: distinct (key, window) hot-symbol rows
    plus distinct observation-window rows.
    """
    by_window = sorted(merge_by_window(deltas), key=_sort_key)
    by_key = sorted(merge_by_key(by_window), key=_sort_key)
    obs = merge_observations(windows)
    if not by_window and not obs:
        return 0
    write = _write_postgres if conn.dialect.name == "postgresql" else _write_sqlite
    write(conn, by_key=by_key, by_window=by_window, obs=obs)
    return len(by_window) + len(obs)
