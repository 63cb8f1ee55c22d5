"""The agent's SQL, per backend: generated from the SQLAlchemy schema, DO NOT EDIT.

Regenerate with ``python -m stellaops_runtime.store.agent_sql_gen`` after
changing :mod:`stellaops_runtime.store.schema` or the statements in
:mod:`stellaops_runtime.store.agent_sql_gen`; ``--check`` (``make test``) fails
while this module is out of date. Each :class:`Statement` holds the SQL text
in the driver's positional style, its parameter names in order and their bind
conversions (:mod:`stellaops_runtime.store.dbconn`).
"""

# ruff: noqa: E501

from stellaops_runtime.store.dbconn import Statement

SQLITE_FACT_BUILD = Statement(
    "INSERT INTO main.node_fact_builds (image_digest, module, function_name, build_id) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
    ("image_digest", "module", "function_name", "build_id"),
    ("", "", "", ""),
    (),
)

SQLITE_LEDGER_CLAIM = Statement(
    "INSERT INTO main.flush_ledger (agent_id, flush_seq, part, row_count, committed_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING part",
    ("agent_id", "flush_seq", "part", "row_count", "committed_at"),
    ("", "", "", "", "utc_datetime"),
    (),
)

SQLITE_LEDGER_DELETE_BELOW = Statement(
    "DELETE FROM main.flush_ledger WHERE main.flush_ledger.agent_id = ? AND main.flush_ledger.flush_seq < ?",
    ("agent_id", "floor"),
    ("", ""),
    (),
)

SQLITE_LEDGER_OTHER_PARTS = Statement(
    "SELECT main.flush_ledger.part \nFROM main.flush_ledger \nWHERE main.flush_ledger.agent_id = ? AND main.flush_ledger.flush_seq = ? AND main.flush_ledger.part != ?",
    ("agent_id", "flush_seq", "part"),
    ("", "", ""),
    (),
)

SQLITE_LEDGER_PRUNE = Statement(
    "DELETE FROM main.flush_ledger WHERE main.flush_ledger.committed_at < ?",
    ("before",),
    ("utc_datetime",),
    (),
)

SQLITE_QUARANTINE = Statement(
    "INSERT INTO main.quarantined_rows (agent_id, table_name, row_json, error, quarantined_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
    ("agent_id", "table_name", "row_json", "error", "quarantined_at"),
    ("", "", "", "", "utc_datetime"),
    (),
)

SQLITE_RETENTION_HOT_SYMBOL_WINDOWS = Statement(
    "DELETE FROM main.hot_symbol_windows WHERE main.hot_symbol_windows.window_start < ?",
    ("cutoff",),
    ("utc_datetime",),
    (),
)

SQLITE_RETENTION_OBSERVATION_WINDOWS = Statement(
    "DELETE FROM main.observation_windows WHERE main.observation_windows.window_start < ?",
    ("cutoff",),
    ("utc_datetime",),
    (),
)

SQLITE_UPSERT_HOT = Statement(
    "INSERT INTO main.hot_symbols (image_digest, module, function_name, evidence_kind, build_id, purl, function_id, invocation_count, unique_callers, total_latency_ns, max_latency_ns, confidence, first_seen, last_seen, node_name, sample, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (image_digest, module, function_name, evidence_kind) DO UPDATE SET build_id = CASE WHEN (main.hot_symbols.build_id = ?) THEN excluded.build_id ELSE main.hot_symbols.build_id END, purl = CASE WHEN (main.hot_symbols.purl = ?) THEN excluded.purl ELSE main.hot_symbols.purl END, function_id = CASE WHEN (main.hot_symbols.function_id = ?) THEN excluded.function_id ELSE main.hot_symbols.function_id END, invocation_count = CASE WHEN (excluded.invocation_count > 9223372036854775807 - main.hot_symbols.invocation_count) THEN NULL ELSE main.hot_symbols.invocation_count + excluded.invocation_count END, unique_callers = max(main.hot_symbols.unique_callers, excluded.unique_callers), total_latency_ns = CASE WHEN (excluded.total_latency_ns > 9223372036854775807 - main.hot_symbols.total_latency_ns) THEN NULL ELSE main.hot_symbols.total_latency_ns + excluded.total_latency_ns END, max_latency_ns = max(main.hot_symbols.max_latency_ns, excluded.max_latency_ns), confidence = max(main.hot_symbols.confidence, excluded.confidence), first_seen = min(main.hot_symbols.first_seen, excluded.first_seen), last_seen = max(main.hot_symbols.last_seen, excluded.last_seen), node_name = CASE WHEN (excluded.node_name = ?) THEN main.hot_symbols.node_name ELSE excluded.node_name END, sample = coalesce(main.hot_symbols.sample, excluded.sample), updated_at = excluded.updated_at",
    (
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
        "updated_at",
        "build_id_1",
        "purl_1",
        "function_id_1",
        "node_name_1",
    ),
    (
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "float",
        "utc_datetime",
        "utc_datetime",
        "",
        "json",
        "utc_datetime",
        "",
        "",
        "",
        "",
    ),
    (("build_id_1", ""), ("purl_1", ""), ("function_id_1", ""), ("node_name_1", "")),
)

SQLITE_UPSERT_OBS = Statement(
    "INSERT INTO main.observation_windows (image_digest, node_name, window_start, event_count, posture_level, window_seconds, source, gap_start, gap_end, throttle_count, dropped_events, evidenced_level, marked_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (image_digest, node_name, window_start) DO UPDATE SET event_count = CASE WHEN (excluded.event_count > 9223372036854775807 - main.observation_windows.event_count) THEN NULL ELSE main.observation_windows.event_count + excluded.event_count END, posture_level = coalesce(max(main.observation_windows.posture_level, excluded.posture_level), main.observation_windows.posture_level, excluded.posture_level), window_seconds = coalesce(max(main.observation_windows.window_seconds, excluded.window_seconds), main.observation_windows.window_seconds, excluded.window_seconds), source = CASE WHEN (excluded.source = ? OR instr(? || main.observation_windows.source || ?, ? || excluded.source || ?) > ?) THEN main.observation_windows.source WHEN (main.observation_windows.source = ?) THEN excluded.source WHEN (main.observation_windows.source < excluded.source) THEN main.observation_windows.source || ? || excluded.source ELSE excluded.source || ? || main.observation_windows.source END, gap_start = coalesce(min(main.observation_windows.gap_start, excluded.gap_start), main.observation_windows.gap_start, excluded.gap_start), gap_end = coalesce(max(main.observation_windows.gap_end, excluded.gap_end), main.observation_windows.gap_end, excluded.gap_end), throttle_count = CASE WHEN (excluded.throttle_count > 9223372036854775807 - main.observation_windows.throttle_count) THEN NULL ELSE main.observation_windows.throttle_count + excluded.throttle_count END, dropped_events = CASE WHEN (excluded.dropped_events > 9223372036854775807 - main.observation_windows.dropped_events) THEN NULL ELSE main.observation_windows.dropped_events + excluded.dropped_events END, evidenced_level = CASE WHEN ((main.observation_windows.evidenced_level = ? OR main.observation_windows.marked_by IS NOT NULL) AND (excluded.event_count > ? OR excluded.posture_level IS NOT NULL)) THEN ? WHEN ((main.observation_windows.evidenced_level = ? OR main.observation_windows.marked_by IS NOT NULL) AND main.observation_windows.marked_by IS NOT excluded.marked_by) THEN ? ELSE coalesce(excluded.evidenced_level, main.observation_windows.evidenced_level) END, marked_by = CASE WHEN ((main.observation_windows.evidenced_level = ? OR main.observation_windows.marked_by IS NOT NULL) AND excluded.evidenced_level = ? AND main.observation_windows.marked_by IS NOT excluded.marked_by) THEN ? WHEN ((main.observation_windows.evidenced_level = ? OR main.observation_windows.marked_by IS NOT NULL) AND (excluded.evidenced_level IS NULL OR excluded.evidenced_level = ? OR excluded.event_count > ? OR excluded.posture_level IS NOT NULL OR main.observation_windows.marked_by IS NOT excluded.marked_by)) THEN main.observation_windows.marked_by WHEN (excluded.evidenced_level = ?) THEN excluded.marked_by ELSE NULL END",
    (
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
        "evidenced_level",
        "marked_by",
        "source_1",
        "source_2",
        "param_1",
        "source_3",
        "param_2",
        "instr_1",
        "source_4",
        "source_5",
        "source_6",
        "evidenced_level_1",
        "event_count_1",
        "param_3",
        "evidenced_level_1",
        "param_4",
        "evidenced_level_1",
        "evidenced_level_2",
        "param_5",
        "evidenced_level_1",
        "evidenced_level_3",
        "event_count_2",
        "evidenced_level_4",
    ),
    (
        "",
        "",
        "utc_datetime",
        "",
        "",
        "",
        "",
        "utc_datetime",
        "utc_datetime",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
    ),
    (
        ("source_1", ""),
        ("source_2", ","),
        ("param_1", ","),
        ("source_3", ","),
        ("param_2", ","),
        ("instr_1", 0),
        ("source_4", ""),
        ("source_5", ","),
        ("source_6", ","),
        ("evidenced_level_1", 0),
        ("event_count_1", 0),
        ("param_3", 0),
        ("evidenced_level_1", 0),
        ("param_4", 0),
        ("evidenced_level_1", 0),
        ("evidenced_level_2", 0),
        ("param_5", "*"),
        ("evidenced_level_1", 0),
        ("evidenced_level_3", 0),
        ("event_count_2", 0),
        ("evidenced_level_4", 0),
    ),
)

SQLITE_UPSERT_WIN = Statement(
    "INSERT INTO main.hot_symbol_windows (image_digest, module, function_name, evidence_kind, window_start, invocation_count, unique_callers, total_latency_ns, max_latency_ns, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (image_digest, module, function_name, evidence_kind, window_start) DO UPDATE SET invocation_count = CASE WHEN (excluded.invocation_count > 9223372036854775807 - main.hot_symbol_windows.invocation_count) THEN NULL ELSE main.hot_symbol_windows.invocation_count + excluded.invocation_count END, unique_callers = max(main.hot_symbol_windows.unique_callers, excluded.unique_callers), total_latency_ns = CASE WHEN (excluded.total_latency_ns > 9223372036854775807 - main.hot_symbol_windows.total_latency_ns) THEN NULL ELSE main.hot_symbol_windows.total_latency_ns + excluded.total_latency_ns END, max_latency_ns = max(main.hot_symbol_windows.max_latency_ns, excluded.max_latency_ns), first_seen = min(main.hot_symbol_windows.first_seen, excluded.first_seen), last_seen = max(main.hot_symbol_windows.last_seen, excluded.last_seen)",
    (
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
    ),
    ("", "", "", "", "utc_datetime", "", "", "", "", "utc_datetime", "utc_datetime"),
    (),
)

POSTGRESQL_FACT_BUILD = Statement(
    "INSERT INTO signals.node_fact_builds (image_digest, module, function_name, build_id) VALUES (%s::VARCHAR, %s::VARCHAR, %s::VARCHAR, %s::VARCHAR) ON CONFLICT DO NOTHING",
    ("image_digest", "module", "function_name", "build_id"),
    ("", "", "", ""),
    (),
)

POSTGRESQL_LEDGER_CLAIM = Statement(
    "INSERT INTO signals.flush_ledger (agent_id, flush_seq, part, row_count, committed_at) VALUES (%s::VARCHAR, %s::BIGINT, %s::VARCHAR, %s::INTEGER, %s::TIMESTAMP WITH TIME ZONE) ON CONFLICT DO NOTHING RETURNING signals.flush_ledger.part",
    ("agent_id", "flush_seq", "part", "row_count", "committed_at"),
    ("", "", "", "", "utc_datetime"),
    (),
)

POSTGRESQL_LEDGER_DELETE_BELOW = Statement(
    "DELETE FROM signals.flush_ledger WHERE signals.flush_ledger.agent_id = %s::VARCHAR AND signals.flush_ledger.flush_seq < %s::BIGINT",
    ("agent_id", "floor"),
    ("", ""),
    (),
)

POSTGRESQL_LEDGER_OTHER_PARTS = Statement(
    "SELECT signals.flush_ledger.part \nFROM signals.flush_ledger \nWHERE signals.flush_ledger.agent_id = %s::VARCHAR AND signals.flush_ledger.flush_seq = %s::BIGINT AND signals.flush_ledger.part != %s::VARCHAR",
    ("agent_id", "flush_seq", "part"),
    ("", "", ""),
    (),
)

POSTGRESQL_LEDGER_PRUNE = Statement(
    "DELETE FROM signals.flush_ledger WHERE signals.flush_ledger.committed_at < %s::TIMESTAMP WITH TIME ZONE",
    ("before",),
    ("utc_datetime",),
    (),
)

POSTGRESQL_QUARANTINE = Statement(
    "INSERT INTO signals.quarantined_rows (agent_id, table_name, row_json, error, quarantined_at) VALUES (%s::VARCHAR, %s::VARCHAR, %s::VARCHAR, %s::VARCHAR, %s::TIMESTAMP WITH TIME ZONE) RETURNING signals.quarantined_rows.id",
    ("agent_id", "table_name", "row_json", "error", "quarantined_at"),
    ("", "", "", "", "utc_datetime"),
    (),
)

STATEMENTS: dict[str, dict[str, Statement]] = {
    "sqlite": {
        "fact_build": SQLITE_FACT_BUILD,
        "ledger_claim": SQLITE_LEDGER_CLAIM,
        "ledger_delete_below": SQLITE_LEDGER_DELETE_BELOW,
        "ledger_other_parts": SQLITE_LEDGER_OTHER_PARTS,
        "ledger_prune": SQLITE_LEDGER_PRUNE,
        "quarantine": SQLITE_QUARANTINE,
        "retention_hot_symbol_windows": SQLITE_RETENTION_HOT_SYMBOL_WINDOWS,
        "retention_observation_windows": SQLITE_RETENTION_OBSERVATION_WINDOWS,
        "upsert_hot": SQLITE_UPSERT_HOT,
        "upsert_obs": SQLITE_UPSERT_OBS,
        "upsert_win": SQLITE_UPSERT_WIN,
    },
    "postgresql": {
        "fact_build": POSTGRESQL_FACT_BUILD,
        "ledger_claim": POSTGRESQL_LEDGER_CLAIM,
        "ledger_delete_below": POSTGRESQL_LEDGER_DELETE_BELOW,
        "ledger_other_parts": POSTGRESQL_LEDGER_OTHER_PARTS,
        "ledger_prune": POSTGRESQL_LEDGER_PRUNE,
        "quarantine": POSTGRESQL_QUARANTINE,
    },
}
