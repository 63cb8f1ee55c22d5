"""The agent's DB-API write path stores exactly what SQLAlchemy stored, byte for byte (issue 13).

The agent no longer loads SQLAlchemy: its SQL is generated from the schema
(store/agent_sql.py) and its values converted as the schema's column types
would (store/dbconn.py). Each test writes the same rows twice, into two fresh
databases: once through the agent's path, once with a plain SQLAlchemy
``insert`` of the same values (what the writer did before). Then both
databases are read back with the bare driver (sqlite3 with ``typeof()``;
psycopg with every column cast to text) and compared column by column.

Values chosen to catch a conversion that is almost right: a whole-number
confidence (SQLAlchemy stores REAL on SQLite), datetimes with no microseconds,
in another time zone, at the ends of what a datetime holds; JSON with
non-ASCII text, nesting and floats; NULL samples, postures and gaps; int8
extremes; empty strings.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from pg import PgServer, libpq_dsn

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.agent_sql import STATEMENTS
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import create_store_engine, open_store
from stellaops_runtime.store.rows import HOT_COLS, OBS_COLS, WIN_COLS, hot_tuple, obs_tuple, win_tuple
from stellaops_runtime.store.schema import (
    flush_ledger,
    hot_symbol_windows,
    hot_symbols,
    observation_windows,
    quarantined_rows,
)
from stellaops_runtime.store.writer import HotSymbolStore

S = 1_000_000_000
T0 = 1_740_787_200 * S
IMG = "sha256:" + "a" * 64
PLUS_5 = dt.timezone(dt.timedelta(hours=5, minutes=30))
I8 = 2**63 - 1

# (table, key columns to order by, columns the database fills itself and no writer sets)
TABLES = {
    "hot_symbols": ("image_digest, module, function_name, evidence_kind", ("id",)),
    "hot_symbol_windows": ("image_digest, module, function_name, evidence_kind, window_start", ("id",)),
    "observation_windows": ("image_digest, node_name, window_start", ("id",)),
    "flush_ledger": ("agent_id, flush_seq, part", ()),
    "quarantined_rows": ("agent_id, row_json", ("id",)),
}


def deltas() -> list[HotSymbolDelta]:
    def d(i: int, **kw: Any) -> HotSymbolDelta:
        start = T0 + i * 60 * S
        base: dict[str, Any] = {
            "key": HotSymbolKey(IMG, "/lib/libz.so.1", f"fn_{i}", EvidenceKind.INVOKED),
            "window_start_ns": start,
            "invocation_count": i + 1,
            "first_seen_ns": start + S + 123_456_789,
            "last_seen_ns": start + 2 * S,
            "node_name": "node-1",
        }
        base.update(kw)
        return HotSymbolDelta(**base)

    return [
        d(0),  # defaults: empty strings, no sample, confidence 1.0 default
        d(1, confidence=1, unique_callers=7, total_latency_ns=I8, max_latency_ns=I8),  # int confidence
        d(2, confidence=0.3, sample={"binary": "/app/ünï", "stack": ["a", {"x": 1.5}], "n": None}),
        d(3, build_id="b" * 40, purl="pkg:deb/debian/zlib@1.2", function_id="b" * 40 + ":inflate+0x0"),
        d(4, first_seen_ns=T0, last_seen_ns=T0 + 1000),  # no microseconds, then 1 µs
        d(5, key=HotSymbolKey(IMG, "", "", EvidenceKind.ON_STACK), node_name=""),
        d(
            6, window_start_ns=-62_135_596_800 * S, first_seen_ns=-62_135_596_800 * S, last_seen_ns=0
        ),  # year 1
        d(7, last_seen_ns=253_402_300_799_999_999_000),  # 9999-12-31 23:59:59.999999
    ]


def windows() -> list[ObservationWindow]:
    return [
        ObservationWindow(IMG, "node-1", T0, 40, Posture.EBPF_DEEP, 60, "tetragon"),
        ObservationWindow(IMG, "node-2", T0, 0, None, 0, ""),  # unknown posture and length: NULL
        ObservationWindow(
            "",
            "node-1",
            T0 + 60 * S,
            0,
            Posture.EBPF_DEEP,
            60,
            "tetragon",
            gap_start_ns=T0 + 61 * S,
            gap_end_ns=T0 + 70 * S + 5000,
            throttles=2,
            dropped_events=I8,
        ),
    ]


UPDATED = dt.datetime(2026, 12, 3, 20, 0, 0, 0, tzinfo=PLUS_5)  # written as 14:30 UTC
LEDGER = [
    {"agent_id": "node-1/x", "flush_seq": I8, "part": "0-3", "row_count": 3, "committed_at": UPDATED},
    {
        "agent_id": "nöde/ü",
        "flush_seq": 0,
        "part": "",
        "row_count": 0,
        "committed_at": dt.datetime(1, 1, 1, tzinfo=dt.UTC),
    },
]
QUARANTINE = [
    {
        "agent_id": "node-1/x",
        "table_name": "hot_symbols",
        "row_json": '{"a": "\\u00fc"}',
        "error": "value too long",
        "quarantined_at": dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
    }
]


def hot_rows() -> list[dict[str, Any]]:
    return [dict(zip(HOT_COLS, hot_tuple(d), strict=True), updated_at=UPDATED) for d in deltas()]


def win_rows() -> list[dict[str, Any]]:
    return [dict(zip(WIN_COLS, win_tuple(d), strict=True)) for d in deltas()]


def obs_rows() -> list[dict[str, Any]]:
    return [dict(zip(OBS_COLS, obs_tuple(w), strict=True)) for w in windows()]


def with_sqlalchemy(url: str, tables: dict[sa.Table, list[dict[str, Any]]]) -> None:
    """What the writer did before: SQLAlchemy Core inserts of the values, types converting them."""
    engine = create_store_engine(url)
    try:
        with engine.begin() as conn:
            for table, rows in tables.items():
                conn.execute(table.insert(), rows)
    finally:
        engine.dispose()


def dump_sqlite(path: Path, *, skip: tuple[str, ...] = ()) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    with sqlite3.connect(path) as c:
        for table, (order, auto) in TABLES.items():
            cols = [r[1] for r in c.execute(f"PRAGMA table_info({table})") if r[1] not in (*auto, *skip)]
            sel = ", ".join(f"{col}, typeof({col})" for col in cols)
            out[table] = c.execute(f"SELECT {sel} FROM {table} ORDER BY {order}").fetchall()
    return out


def dump_postgres(url: str, *, skip: tuple[str, ...] = ()) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    with psycopg.connect(libpq_dsn(url)) as c:
        c.execute("SET TIME ZONE 'UTC'")  # timestamptz as text in one zone, whatever the server's
        for table, (order, auto) in TABLES.items():
            cols = [
                r[0]
                for r in c.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = 'signals' "
                    "AND table_name = %s ORDER BY ordinal_position",
                    (table,),
                )
                if r[0] not in auto and r[0] not in skip
            ]
            sel = ", ".join(f"{col}::text, pg_typeof({col})::text" for col in cols)
            out[table] = c.execute(f"SELECT {sel} FROM signals.{table} ORDER BY {order}").fetchall()
    return out


@pytest.fixture
def two_sqlite(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    a, b = tmp_path / "agent.db", tmp_path / "sqlalchemy.db"
    for p in (a, b):
        open_store(f"sqlite:///{p}").close()
    yield a, b


def test_sqlite_statements_store_what_sqlalchemy_stores(two_sqlite: tuple[Path, Path]) -> None:
    a, b = two_sqlite
    store = open_store(f"sqlite:///{a}")
    sql = STATEMENTS["sqlite"]
    try:
        with store.db.begin() as conn:
            conn.executemany(sql["upsert_hot"], hot_rows())  # fresh keys: the INSERT half of the upsert
            conn.executemany(sql["upsert_win"], win_rows())
            conn.executemany(sql["upsert_obs"], obs_rows())
            for row in LEDGER:
                assert conn.execute(sql["ledger_claim"], row).first() == (row["part"],)
            for row in QUARANTINE:
                conn.execute(sql["quarantine"], row)
    finally:
        store.close()
    with_sqlalchemy(
        f"sqlite:///{b}",
        {
            hot_symbols: hot_rows(),
            hot_symbol_windows: win_rows(),
            observation_windows: obs_rows(),
            flush_ledger: LEDGER,
            quarantined_rows: QUARANTINE,
        },
    )
    mine, theirs = dump_sqlite(a), dump_sqlite(b)
    assert all(mine.values()) and mine.keys() == theirs.keys()
    for table in TABLES:
        assert len(mine[table]) == len(theirs[table]), table
        for got, want in zip(mine[table], theirs[table], strict=True):
            assert got == want, table  # every column: value and storage class
    # and the text form is SQLAlchemy's: always six fraction digits, UTC, no zone suffix
    with sqlite3.connect(a) as c:
        assert c.execute("SELECT DISTINCT updated_at, typeof(updated_at) FROM hot_symbols").fetchall() == [
            ("2026-12-03 14:30:00.000000", "text")
        ]


def test_sqlite_batch_through_the_writer_matches_sqlalchemy(two_sqlite: tuple[Path, Path]) -> None:
    """The whole agent path (ledger, merge, upsert) against SQLAlchemy inserts of the merged rows."""
    a, b = two_sqlite
    units: list[HotSymbolDelta | ObservationWindow | None] = [*deltas(), *windows()]
    with open_store(f"sqlite:///{a}") as store:
        result = store.write_batch(Batch("node-1/x", 1, units))
        assert (result.written, result.quarantined) == (len(units), 0)
    hot = hot_rows()
    with_sqlalchemy(
        f"sqlite:///{b}", {hot_symbols: hot, hot_symbol_windows: win_rows(), observation_windows: obs_rows()}
    )
    # updated_at is the write's own clock: compared apart, by form
    mine, theirs = dump_sqlite(a, skip=("updated_at",)), dump_sqlite(b, skip=("updated_at",))
    for table in ("hot_symbols", "hot_symbol_windows", "observation_windows"):
        assert mine[table] and mine[table] == theirs[table], table
    with sqlite3.connect(a) as c:
        stamps = c.execute("SELECT updated_at, typeof(updated_at) FROM hot_symbols").fetchall()
    form = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")
    assert stamps and all(kind == "text" and form.fullmatch(v) for v, kind in stamps)


@pytest.mark.postgres
def test_postgres_writes_store_what_sqlalchemy_stores(pg: PgServer, pg_url: str) -> None:
    a = pg_url
    b = pg.fresh_database()
    open_store(b).close()
    units: list[HotSymbolDelta | ObservationWindow | None] = [*deltas(), *windows()]
    store: HotSymbolStore
    with open_store(a) as store:
        result = store.write_batch(Batch("node-1/x", 1, units))  # COPY, append, roll-up (pg_write.py)
        assert (result.written, result.quarantined) == (len(units), 0)
        sql = STATEMENTS["postgresql"]
        with store.db.begin() as conn:
            conn.execute("DELETE FROM signals.flush_ledger")  # the batch's own row: its clock
            for row in LEDGER:
                assert conn.execute(sql["ledger_claim"], row).first() == (row["part"],)
            for row in QUARANTINE:
                conn.execute(sql["quarantine"], row)
    with_sqlalchemy(
        b,
        {
            hot_symbols: hot_rows(),
            hot_symbol_windows: win_rows(),
            observation_windows: obs_rows(),
            flush_ledger: LEDGER,
            quarantined_rows: QUARANTINE,
        },
    )
    mine, theirs = dump_postgres(a, skip=("updated_at",)), dump_postgres(b, skip=("updated_at",))
    assert all(mine.values())
    for table in TABLES:
        assert mine[table] == theirs[table], table
