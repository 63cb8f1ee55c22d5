"""How hot-symbol rows are added to the store, per backend, inside the caller's transaction.

Split from :mod:`stellaops_runtime.store.writer` so that the exactly-once
batch logic (:mod:`stellaops_runtime.store.ledger`) and the store class can
both use it without importing each other.

- PostgreSQL (:mod:`stellaops_runtime.store.pg_write`): one binary COPY per
  flush into a staging table, the per-window history appended from it, the
  cumulative table rolled up by one ``INSERT ... SELECT ... GROUP BY ... ORDER
  BY key ON CONFLICT DO UPDATE``.
- SQLite: ``executemany`` of ``INSERT ... ON CONFLICT DO UPDATE`` into both
  tables (SQLite >= 3.24): one writer at a time, so the simple path is enough.
  The statements are generated from the SQLAlchemy schema
  (:mod:`stellaops_runtime.store.agent_sql`) and run over plain DB-API
  (:mod:`stellaops_runtime.store.dbconn`): the agent never loads SQLAlchemy.

A flush may hold 100,000 rows or more; turned into statement parameters all at
once they cost several KB each (issue 13: +466 MB for one write of 100,000
rows into SQLite). Both paths therefore turn at most :data:`CHUNK_ROWS` rows
into parameters at a time, inside the caller's one transaction: SQLite runs
one ``executemany`` per chunk, PostgreSQL streams the chunks into its one
COPY. What is written, and what one transaction commits (the flush ledger's
unit, :mod:`stellaops_runtime.store.ledger`), is unchanged.

ON CONFLICT may touch a row only once per statement, so the SQLite path merges
deltas per key (cumulative table) and per (key, window) (history table) first,
in the pure functions :func:`merge_by_key`, :func:`merge_by_window` and
:func:`merge_observations`; PostgreSQL's GROUP BY does the per-key merge
itself, with the same result.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from stellaops_runtime.contracts.hotsymbols import HotSymbolDelta, HotSymbolKey, ObservationWindow
from stellaops_runtime.store import marks, pg_write
from stellaops_runtime.store.agent_sql import STATEMENTS
from stellaops_runtime.store.dbconn import Conn, adopt
from stellaops_runtime.store.fact_builds import record_fact_builds
from stellaops_runtime.store.rows import HOT_COLS, OBS_COLS, WIN_COLS, hot_tuple, obs_tuple, win_tuple
from stellaops_runtime.store.timeconv import datetime_to_ns

T = TypeVar("T")

# -- pure merging -------------------------------------------------------------


CHUNK_ROWS = 5_000  # rows turned into statement parameters at a time


def _copy(d: HotSymbolDelta) -> HotSymbolDelta:
    return dataclasses.replace(d)


def merge_by_window(deltas: Iterable[HotSymbolDelta]) -> list[HotSymbolDelta]:
    """One delta per (key, window_start), merged in the given order; inputs are not modified.

    A delta alone in its (key, window) is returned as it is (no copy: most are alone);
    one that others merge into is copied first.
    """
    out: dict[tuple[HotSymbolKey, int], HotSymbolDelta] = {}
    copied: set[tuple[HotSymbolKey, int]] = set()
    for d in deltas:
        k = (d.key, d.window_start_ns)
        have = out.get(k)
        if have is None:
            out[k] = d
            continue
        if k not in copied:
            have = out[k] = _copy(have)
            copied.add(k)
        have.merge(d)
    return list(out.values())


def merge_by_key(deltas: Iterable[HotSymbolDelta]) -> list[HotSymbolDelta]:
    """One delta per key for the cumulative table; inputs are not modified.

    Deltas are folded oldest window first, so "last reporter" fields
    (node_name) come from the latest window. ``window_start_ns`` of a result
    is its earliest window.
    """
    out: dict[HotSymbolKey, HotSymbolDelta] = {}
    copied: set[HotSymbolKey] = set()
    for d in sorted(deltas, key=lambda d: d.window_start_ns):
        have = out.get(d.key)
        if have is None:
            out[d.key] = d  # copied only if a later window merges into it (inputs stay as they are)
            continue
        if d.key not in copied:
            have = out[d.key] = _copy(have)
            copied.add(d.key)
        have.merge(d)
    return list(out.values())


def merge_observations(windows: Iterable[ObservationWindow]) -> list[ObservationWindow]:
    """One row per (image, node, window_start): event counts added, the higher posture kept, a mark
    kept (store/marks.py); then each window's restate row, if any, to be written after the rows."""
    out: dict[tuple[str, str, int], ObservationWindow] = {}
    restates: dict[tuple[str, str, int], ObservationWindow] = {}
    for w in windows:
        marks.fold(out, restates, (w.image_digest, w.node_name, w.window_start_ns), w)
    return [*out.values(), *restates.values()]


def _sort_key(d: HotSymbolDelta) -> tuple[str, str, str, str, int]:
    k = d.key
    return (k.image_digest, k.module, k.function_name, str(k.evidence), d.window_start_ns)


# -- SQLite: executemany of INSERT ... ON CONFLICT DO UPDATE ------------------
# The statements are built from the schema with SQLAlchemy by store/agent_sql_gen.py
# (upsert_hot, upsert_win, upsert_obs) and run here as plain SQL.


def _write_sqlite(
    conn: Conn, deltas: list[HotSymbolDelta], obs: list[ObservationWindow], history_from: int | None
) -> int:
    sql = STATEMENTS["sqlite"]
    by_window = sorted(merge_by_window(deltas), key=_sort_key)
    by_key = sorted(merge_by_key(by_window), key=_sort_key)
    history = by_window
    if history_from is not None:  # windows the retention removed: the cumulative rows only
        history = [d for d in by_window if d.window_start_ns >= history_from]
    now = dt.datetime.now(dt.UTC)
    for part in chunks(by_key):
        conn.executemany(
            sql["upsert_hot"], [dict(zip(HOT_COLS, hot_tuple(d), strict=True), updated_at=now) for d in part]
        )
    for part in chunks(history):
        conn.executemany(sql["upsert_win"], [dict(zip(WIN_COLS, win_tuple(d), strict=True)) for d in part])
    for windows in chunks(obs):
        conn.executemany(sql["upsert_obs"], [dict(zip(OBS_COLS, obs_tuple(w), strict=True)) for w in windows])
    return len(by_window)


def _write_postgres(
    conn: Conn, deltas: list[HotSymbolDelta], obs: list[ObservationWindow], history_from: int | None
) -> int:
    pg_write.check_times(deltas)  # before the COPY starts: a refused row fails the batch up front
    distinct, unique_keys = pg_write.distinct_deltas(deltas)
    if distinct < len(deltas):  # one (key, window) twice: merge first, so "oldest window" is defined
        deltas = merge_by_window(deltas)
    pg_write.write_postgres(
        conn, deltas, obs, unique_keys=unique_keys, chunk_rows=CHUNK_ROWS, history_from=history_from
    )
    return distinct


# -- both backends -------------------------------------------------------------


def chunks(rows: Sequence[T], size: int | None = None) -> Iterator[Sequence[T]]:
    """``rows`` in consecutive slices of at most ``size`` (default :data:`CHUNK_ROWS`)."""
    size = size or CHUNK_ROWS
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def write_rows(
    conn: Conn | Any,
    deltas: list[HotSymbolDelta],
    windows: list[ObservationWindow],
    *,
    history_from: dt.datetime | None = None,
) -> int:
    """Add deltas and observation windows inside the caller's transaction.

    ``conn``: a :class:`~stellaops_runtime.store.dbconn.Conn` (the agent), or a
    SQLAlchemy connection (tools, benchmarks), whose DB-API connection is used.
    Returns the number of rows written: distinct (key, window) hot-symbol rows
    plus distinct observation-window rows. ``history_from``: deltas of windows
    starting before it add to the cumulative rows only, not to the per-window
    history (the retention removed their days: store/late_rows.py).
    """
    conn = adopt(conn)
    obs = merge_observations(windows)
    if not deltas and not obs:
        return 0
    write = _write_postgres if conn.dialect == "postgresql" else _write_sqlite
    windows_written = len({(o.image_digest, o.node_name, o.window_start_ns) for o in obs})  # restates once
    record_fact_builds(conn, deltas)  # before the rollup, which holds its locks until the commit
    floor = None if history_from is None else datetime_to_ns(history_from)
    return write(conn, deltas, obs, floor) + windows_written
