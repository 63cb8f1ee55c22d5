"""PostgreSQL's write path: one binary COPY per flush, history appended, cumulative rows rolled up.

Every (key, window) row of a flush is COPY'd once, in binary, into a
session-local staging table (``pg_temp``, emptied at each commit). From
there, in the caller's transaction:

1. observation windows get an ordered upsert (few rows per flush, all of
   this agent's node, so no other agent waits for them);
2. the per-window history (``hot_symbol_windows``, partitioned by day) is
   appended with one ``INSERT ... SELECT``: no conflict check, no row lock,
   so it costs little more than the COPY itself. Several rows of one
   (key, window) may exist (several agents, several flushes); every reader
   sums them;
3. the cumulative table (``hot_symbols``) is rolled up last, with ONE
   set-based ``INSERT ... SELECT ... GROUP BY key ORDER BY key ON CONFLICT
   DO UPDATE``. Every writer locks keys in that order, so concurrent agents
   flushing overlapping keys wait for each other but never deadlock; being
   last, the locks others wait for are held only until the commit.

The GROUP BY reproduces :func:`stellaops_runtime.store.upsert.merge_by_key`
exactly: counts added, extremes kept, ``build_id``/``purl``/``function_id``/
``sample`` from the oldest window that has them, ``node_name`` from the
newest. Timestamps travel as integer microseconds (cheaper to encode than
datetimes) and become ``timestamptz`` in SQL, exactly; a value outside what a
Python datetime holds raises OverflowError here, as before, so the row is
refused and quarantined by the ledger's bisection
(:mod:`stellaops_runtime.store.ledger`) instead of being stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from stellaops_runtime.contracts.hotsymbols import HotSymbolDelta, ObservationWindow
from stellaops_runtime.store.dbconn import Conn
from stellaops_runtime.store.marks import SEVERAL
from stellaops_runtime.store.rows import OBS_COLS, OBS_TYPES, obs_tuple
from stellaops_runtime.store.timeconv import ns_to_datetime

# What ns_to_datetime (a Python datetime) can hold, in microseconds since the epoch.
MIN_US = -62_135_596_800_000_000  # 0001-01-01
MAX_US = 253_402_300_799_999_999  # 9999-12-31 23:59:59.999999

_KEY = ("image_digest", "module", "function_name", "evidence_kind")
_KEY_SQL = ", ".join(_KEY)

STAGE_COLS = (
    *_KEY,
    "window_us",
    "build_id",
    "purl",
    "function_id",
    "invocation_count",
    "unique_callers",
    "total_latency_ns",
    "max_latency_ns",
    "confidence",
    "first_us",
    "last_us",
    "node_name",
    "sample",
)
STAGE_TYPES = (
    *("text",) * 4,
    "int8",
    *("text",) * 3,
    "int8",
    "int4",
    "int8",
    "int8",
    "float4",
    "int8",
    "int8",
    "text",
    "jsonb",
)


def _ts(us: str) -> str:
    """SQL turning integer microseconds into timestamptz, exactly (no float rounding in range).

    ``s * interval '1 second'`` multiplies 1e6 by a whole number of seconds:
    exact in a float8 for every year a Python datetime holds.
    """
    return (
        f"(timestamptz '1970-01-01 00:00:00+00' + ({us} / 1000000) * interval '1 second'"
        f" + ({us} % 1000000) * interval '1 microsecond')"
    )


def _stage_ddl(name: str, cols: Sequence[str], types: Sequence[str]) -> str:
    body = ", ".join(f"{c} {t}" for c, t in zip(cols, types, strict=True))
    # Created once per session and emptied at every commit: no catalog churn per flush.
    return f"CREATE TEMP TABLE IF NOT EXISTS {name} ({body}) ON COMMIT DELETE ROWS"


STAGE_HOT_DDL = _stage_ddl("_stage_hot", STAGE_COLS, STAGE_TYPES)
STAGE_OBS_DDL = _stage_ddl("_stage_obs", OBS_COLS, OBS_TYPES)

APPEND_WINDOWS = f"""
INSERT INTO signals.hot_symbol_windows ({_KEY_SQL}, window_start, invocation_count, unique_callers,
    total_latency_ns, max_latency_ns, first_seen, last_seen)
SELECT {_KEY_SQL}, {_ts("window_us")}, invocation_count, unique_callers,
    total_latency_ns, max_latency_ns, {_ts("first_us")}, {_ts("last_us")}
FROM pg_temp._stage_hot
"""


def append_windows_from(history_from_us: int) -> str:
    """APPEND_WINDOWS of the windows from ``history_from_us`` on: those before it add to the
    cumulative rows only (store/late_rows.py). An integer in the text: the ``%`` of :func:`_ts`
    leaves no room for a placeholder."""
    return f"{APPEND_WINDOWS}WHERE window_us >= {int(history_from_us)}\n"


def _first(col: str, *, newest: bool = False) -> str:
    order = "window_us DESC" if newest else "window_us"
    return f"COALESCE((array_agg({col} ORDER BY {order}) FILTER (WHERE {col} <> ''))[1], '')"


_INSERT_HOT = f"""
INSERT INTO signals.hot_symbols AS t ({_KEY_SQL}, build_id, purl, function_id, invocation_count,
    unique_callers, total_latency_ns, max_latency_ns, confidence, first_seen, last_seen, node_name,
    sample, updated_at)
"""
_GROUPED = f"""
SELECT {_KEY_SQL}, {_first("build_id")}, {_first("purl")}, {_first("function_id")},
    sum(invocation_count), max(unique_callers), sum(total_latency_ns), max(max_latency_ns),
    max(confidence), {_ts("min(first_us)")}, {_ts("max(last_us)")}, {_first("node_name", newest=True)},
    (array_agg(sample ORDER BY window_us) FILTER (WHERE sample IS NOT NULL))[1], now()
FROM pg_temp._stage_hot
GROUP BY {_KEY_SQL}
ORDER BY {_KEY_SQL}
"""
# Every key once in the flush: the GROUP BY above would be the identity (and its ordered
# aggregates cost about a fifth of the statement), so the rows go in as they are, still in key order.
_UNGROUPED = f"""
SELECT {_KEY_SQL}, build_id, purl, function_id, invocation_count, unique_callers, total_latency_ns,
    max_latency_ns, confidence, {_ts("first_us")}, {_ts("last_us")}, node_name, sample, now()
FROM pg_temp._stage_hot
ORDER BY {_KEY_SQL}
"""
_ON_CONFLICT_HOT = f"""
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
ROLLUP_HOT = _INSERT_HOT + _GROUPED + _ON_CONFLICT_HOT
ROLLUP_HOT_UNIQUE_KEYS = _INSERT_HOT + _UNGROUPED + _ON_CONFLICT_HOT

# A window holds a mark: its level is the mark, or it names a writer beside none, which only an agent
# before 0013 leaves (its restate cleared a newer agent's mark: a rollback; these upserts set the name
# NULL with every clear), and that mark still stands (as agent_sql_gen.py; watched_sql.unwatched_windows).
_MARKED = "(t.evidenced_level = 0 OR t.marked_by IS NOT NULL)"
UPSERT_OBS = f"""
INSERT INTO signals.observation_windows AS t ({", ".join(OBS_COLS)})
SELECT {", ".join(OBS_COLS)} FROM pg_temp._stage_obs ORDER BY image_digest, node_name, window_start
ON CONFLICT (image_digest, node_name, window_start) DO UPDATE SET
    event_count = t.event_count + EXCLUDED.event_count,
    posture_level = GREATEST(t.posture_level, EXCLUDED.posture_level),
    window_seconds = GREATEST(t.window_seconds, EXCLUDED.window_seconds),
    source = CASE
        WHEN EXCLUDED.source = '' THEN t.source
        WHEN strpos(',' || t.source || ',', ',' || EXCLUDED.source || ',') > 0 THEN t.source
        WHEN t.source = '' THEN EXCLUDED.source
        WHEN t.source < EXCLUDED.source THEN t.source || ',' || EXCLUDED.source
        ELSE EXCLUDED.source || ',' || t.source END,
    gap_start = LEAST(t.gap_start, EXCLUDED.gap_start),
    gap_end = GREATEST(t.gap_end, EXCLUDED.gap_end),
    throttle_count = t.throttle_count + EXCLUDED.throttle_count,
    dropped_events = t.dropped_events + EXCLUDED.dropped_events,
    evidenced_level = CASE
        WHEN {_MARKED} AND (EXCLUDED.event_count > 0 OR EXCLUDED.posture_level IS NOT NULL)
            THEN 0
        WHEN {_MARKED} AND t.marked_by IS DISTINCT FROM EXCLUDED.marked_by THEN 0
        ELSE COALESCE(EXCLUDED.evidenced_level, t.evidenced_level) END,
    marked_by = CASE
        WHEN {_MARKED} AND EXCLUDED.evidenced_level = 0
            AND t.marked_by IS DISTINCT FROM EXCLUDED.marked_by THEN '{SEVERAL}'
        WHEN {_MARKED} AND (EXCLUDED.evidenced_level IS NULL OR EXCLUDED.evidenced_level = 0
            OR EXCLUDED.event_count > 0 OR EXCLUDED.posture_level IS NOT NULL
            OR t.marked_by IS DISTINCT FROM EXCLUDED.marked_by) THEN t.marked_by
        WHEN EXCLUDED.evidenced_level = 0 THEN EXCLUDED.marked_by
        ELSE NULL END
"""


def obs_passes(obs: Sequence[ObservationWindow]) -> list[list[ObservationWindow]]:
    """``obs`` in order, cut into passes that each hold a window at most once (one statement's ON
    CONFLICT may touch a row once): a window's restate row (store/marks.py) goes in the pass after
    its row."""
    passes: list[list[ObservationWindow]] = []
    seen: dict[tuple[str, str, int], int] = {}
    for o in obs:
        k = (o.image_digest, o.node_name, o.window_start_ns)
        n = seen[k] = seen.get(k, -1) + 1
        if n == len(passes):
            passes.append([])
        passes[n].append(o)
    return passes


def stage_tuples(deltas: Iterable[HotSymbolDelta]) -> list[tuple[Any, ...]]:
    """One staging row per delta; raises OverflowError for a time no datetime can hold."""
    rows: list[tuple[Any, ...]] = [
        (
            (k := d.key).image_digest,
            k.module,
            k.function_name,
            k.evidence.value,
            d.window_start_ns // 1000,
            d.build_id,
            d.purl,
            d.function_id,
            d.invocation_count,
            d.unique_callers,
            d.total_latency_ns,
            d.max_latency_ns,
            d.confidence,
            d.first_seen_ns // 1000,
            d.last_seen_ns // 1000,
            d.node_name,
            d.sample or None,
        )
        for d in deltas
    ]
    for i in (4, 13, 14):
        col = [r[i] for r in rows]
        if col and (min(col) < MIN_US or max(col) > MAX_US):
            bad = next(v for v in col if not MIN_US <= v <= MAX_US)
            ns_to_datetime(bad * 1000)  # the error the datetime path gives
            raise OverflowError(f"timestamp out of range: {bad} microseconds since the epoch")
    check_small_ints(rows, STAGE_COLS, STAGE_TYPES)
    return rows


_SMALL_INTS = {"int2": 2**15, "int4": 2**31}


def check_small_ints(rows: Sequence[tuple[Any, ...]], cols: Sequence[str], types: Sequence[str]) -> None:
    """Raise OverflowError for a value an int2/int4 column cannot hold.

    psycopg's binary COPY dumpers for int2 and int4 keep only the low bytes of
    a larger int (2**31 would be stored as -2**31), where an INSERT is refused
    by the server (SQLSTATE 22003): the row is refused here instead.
    """
    for i, (col, typ) in enumerate(zip(cols, types, strict=True)):
        limit = _SMALL_INTS.get(typ)
        if limit is None or not rows:
            continue
        values = [v for r in rows if (v := r[i]) is not None]
        if values and (min(values) < -limit or max(values) >= limit):
            bad = next(v for v in values if not -limit <= v < limit)
            raise OverflowError(f"{col} out of range for {typ}: {bad}")


def check_times(deltas: Sequence[HotSymbolDelta]) -> None:
    """Raise OverflowError (as :func:`stage_tuples` would) for a time no datetime can hold."""
    for attr in ("window_start_ns", "first_seen_ns", "last_seen_ns"):
        col = [getattr(d, attr) // 1000 for d in deltas]
        if col and (min(col) < MIN_US or max(col) > MAX_US):
            bad = next(v for v in col if not MIN_US <= v <= MAX_US)
            ns_to_datetime(bad * 1000)  # the error the datetime path gives
            raise OverflowError(f"timestamp out of range: {bad} microseconds since the epoch")


def distinct_deltas(deltas: Sequence[HotSymbolDelta]) -> tuple[int, bool]:
    """:func:`distinct` of the staging rows these deltas make, without making them."""
    keys = len({_key_tuple(d) for d in deltas})
    if keys == len(deltas):
        return keys, True
    return len({(*_key_tuple(d), d.window_start_ns // 1000) for d in deltas}), False


def _key_tuple(d: HotSymbolDelta) -> tuple[str, str, str, str]:
    k = d.key
    return (k.image_digest, k.module, k.function_name, k.evidence.value)


def distinct(rows: list[tuple[Any, ...]]) -> tuple[int, bool]:
    """How many distinct (key, window) the staging rows hold, and whether every key is there once."""
    keys = len({r[:4] for r in rows})
    if keys == len(rows):
        return keys, True
    return len({r[:5] for r in rows}), False


def copy_rows(
    cursor: Any, *, table: str, columns: Sequence[str], types: Sequence[str], rows: Iterable[tuple[Any, ...]]
) -> None:
    """Binary COPY of ``rows`` into ``table`` on a pgwire or psycopg 3 cursor (the same API)."""
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(list(types))
        for r in rows:
            cp.write_row(r)


def write_postgres(
    conn: Conn,
    deltas: Sequence[HotSymbolDelta],
    obs: list[ObservationWindow],
    *,
    unique_keys: bool,
    chunk_rows: int = 5_000,
    history_from: int | None = None,
) -> None:
    """Stage, append and roll up, inside the caller's transaction.

    ``deltas``: at most one per (key, window), so the oldest/newest window of
    a key is well defined; ``unique_keys``: at most one per key (see
    :func:`distinct`). They become staging rows ``chunk_rows`` at a time, all
    streamed into one COPY, so a large flush never holds every row's tuple.
    ``history_from`` (ns): windows before it are not appended to the history.
    """
    rows = (r for i in range(0, len(deltas), chunk_rows) for r in stage_tuples(deltas[i : i + chunk_rows]))
    with conn.raw.cursor() as cur:
        if obs:
            check_small_ints([obs_tuple(w) for w in obs], OBS_COLS, OBS_TYPES)
            cur.execute(STAGE_OBS_DDL)
            for n, part in enumerate(obs_passes(obs)):  # a window's restate row after its row
                if n:
                    cur.execute("DELETE FROM pg_temp._stage_obs")
                copy_rows(
                    cur,
                    table="pg_temp._stage_obs",
                    columns=OBS_COLS,
                    types=OBS_TYPES,
                    rows=map(obs_tuple, part),
                )
                cur.execute(UPSERT_OBS)  # rows of this agent's node: not contended
        if deltas:
            cur.execute(STAGE_HOT_DDL)
            copy_rows(cur, table="pg_temp._stage_hot", columns=STAGE_COLS, types=STAGE_TYPES, rows=rows)
            if history_from is None:
                cur.execute(APPEND_WINDOWS)  # no row lock taken
            else:
                cur.execute(append_windows_from(history_from // 1000))
            # Last, so the cumulative rows other agents wait for are held only until the commit.
            cur.execute(ROLLUP_HOT_UNIQUE_KEYS if unique_keys else ROLLUP_HOT)
