"""pgwire's binary COPY against psycopg's: the agent's staging tables, the same rows, read back equal."""

from __future__ import annotations

import datetime as dt
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pgwire_support import keywords

from stellaops_runtime import pgwire
from stellaops_runtime.store.pg_write import STAGE_COLS, STAGE_TYPES
from stellaops_runtime.store.rows import OBS_COLS, OBS_TYPES

KTM = dt.timezone(dt.timedelta(hours=5, minutes=45))


def _value(kind: str, i: int) -> Any:
    if i % 7 == 3:
        return None
    if kind == "text":
        return ["sha256:ab", "libc.so.6", "fünction✓", "", "a'b\\c\tx\ny"][i % 5] + str(i)
    if kind == "int8":
        return [0, -(2**63), 2**63 - 1, i * 1_000_003, -i][i % 5]
    if kind == "int4":
        return [0, -(2**31), 2**31 - 1, i][i % 4]
    if kind == "int2":
        return [0, -(2**15), 2**15 - 1, i % 100][i % 4]
    if kind == "float4":
        return [0.1, -0.0, 1e-3 * i, 3.4e38, float("inf")][i % 5]
    if kind == "timestamptz":
        base = dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)
        return (base + dt.timedelta(seconds=i * 86_401, microseconds=i)).astimezone(KTM if i % 2 else dt.UTC)
    if kind == "jsonb":
        return {"args": ["x", i], "é": None, "nested": {"n": 1.5}}
    raise AssertionError(kind)


def _rows(types: tuple[str, ...], n: int) -> list[tuple[Any, ...]]:
    return [tuple(_value(t, i + c) for c, t in enumerate(types)) for i in range(n)]


def _copy_both(
    pg_url: str, cols: tuple[str, ...], types: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> Any:
    ddl = ", ".join(f"{c} {t}" for c, t in zip(cols, types, strict=True))
    collist = ", ".join(cols)
    with psycopg.connect(**keywords(pg_url)) as pc:
        pc.execute(f"CREATE TABLE a ({ddl})")
        pc.execute(f"CREATE TABLE b ({ddl})")
        with pc.cursor() as cur, cur.copy(f"COPY a ({collist}) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(list(types))
            for r in rows:
                cp.write_row(r)
        pc.commit()
    conn = pgwire.connect(**keywords(pg_url))
    try:
        with conn.cursor() as cur, cur.copy(f"COPY b ({collist}) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(list(types))
            for r in rows:
                cp.write_row(r)
        conn.commit()
    finally:
        conn.close()
    with psycopg.connect(**keywords(pg_url)) as pc:
        order = ", ".join(str(i + 1) for i in range(len(cols)))
        got_a = pc.execute(f"SELECT * FROM a ORDER BY {order}").fetchall()
        got_b = pc.execute(f"SELECT * FROM b ORDER BY {order}").fetchall()
        text_b = pc.execute("SELECT b::text FROM b ORDER BY 1").fetchall()
        text_a = pc.execute("SELECT a::text FROM a ORDER BY 1").fetchall()
    return got_a, got_b, text_a, text_b


@pytest.mark.parametrize(("cols", "types"), [(STAGE_COLS, STAGE_TYPES), (OBS_COLS, OBS_TYPES)])
def test_staging_rows_read_back_as_psycopgs_copy_wrote_them(pg_url: str, cols: Any, types: Any) -> None:
    rows = _rows(tuple(types), 3000)  # ~0.5 MB: many CopyData chunks
    got_a, got_b, text_a, text_b = _copy_both(pg_url, tuple(cols), tuple(types), rows)
    assert len(got_b) == len(rows)
    assert got_b == got_a
    assert text_b == text_a  # the stored values, not only their Python images


OTHER = ("bool", "float8", "numeric", "bytea", "date", "timestamp", "varchar", "int8")
OTHER_ROWS = [
    (
        True,
        1.0000000000000002,
        Decimal("0.0001"),
        b"\x00\xff",
        dt.date(1, 1, 1),
        dt.datetime(1900, 1, 1),
        "v",
        1,
    ),
    (
        False,
        -0.0,
        Decimal("-12345678901234567890.123456789"),
        b"",
        dt.date(9999, 12, 31),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
        "",
        2,
    ),
    (None, float("nan"), Decimal("NaN"), None, None, None, None, 3),
    (True, float("-inf"), Decimal("1E+21"), b"x" * 100, dt.date(2000, 1, 1), dt.datetime(2000, 1, 1), "ü", 4),
    (
        True,
        5e-324,
        Decimal("100000000"),
        b"y",
        dt.date(1999, 12, 31),
        dt.datetime(1999, 12, 31, 23, 59, 59),
        "z",
        5,
    ),
    (True, 1.5, Decimal("0"), b"y", dt.date(1999, 12, 31), dt.datetime(1999, 12, 31), "z", 6),
    (True, 1.5, Decimal("-0.00"), b"y", dt.date(1999, 12, 31), dt.datetime(1999, 12, 31), "z", 7),
    (True, 1.5, Decimal("123.4500"), b"y", dt.date(1999, 12, 31), dt.datetime(1999, 12, 31), "z", 8),
    (True, 1.5, Decimal("Infinity"), b"y", dt.date(1999, 12, 31), dt.datetime(1999, 12, 31), "z", 9),
]


def test_the_other_copy_types_match_psycopg(pg_url: str) -> None:
    cols = tuple(f"c{i}" for i in range(len(OTHER)))
    _, got_b, text_a, text_b = _copy_both(pg_url, cols, OTHER, OTHER_ROWS)  # NaN != NaN: the text
    assert text_b == text_a
    assert len(got_b) == len(OTHER_ROWS)


@pytest.mark.parametrize(
    ("types", "row", "message"),
    [
        (("int2",), (2**15,), "out of range for int2"),
        (("int4",), (-(2**31) - 1,), "out of range for int4"),
        (("int8",), (2**63,), "out of range for int8"),
        (("text",), ("a\0b",), "NUL"),
    ],
)
def test_a_value_the_column_cannot_hold_is_refused_not_truncated(
    pg_url: str, types: tuple[str, ...], row: tuple[Any, ...], message: str
) -> None:
    conn = pgwire.connect(**keywords(pg_url))
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE TABLE t (x {types[0]})")
        conn.commit()
        with (
            pytest.raises(pgwire.DataError, match=message),
            cur.copy("COPY t (x) FROM STDIN (FORMAT BINARY)") as cp,
        ):
            cp.set_types(list(types))
            cp.write_row((1,) if types[0] != "text" else ("ok",))
            cp.write_row(row)
        assert conn.status == b"E"  # the COPY failed (CopyFail): nothing of it stays
        conn.rollback()
        cur.execute("SELECT count(*) FROM t")
        assert cur.fetchone() == (0,)
    finally:
        conn.close()


def test_a_copy_the_server_refuses_raises_its_error(pg_url: str) -> None:
    conn = pgwire.connect(**keywords(pg_url))
    try:
        cur = conn.cursor()
        cur.execute("CREATE TABLE t (x int8 PRIMARY KEY)")
        conn.commit()
        with pytest.raises(pgwire.IntegrityError), cur.copy("COPY t (x) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["int8"])
            cp.write_row((1,))
            cp.write_row((1,))
        conn.rollback()
        with pytest.raises(pgwire.ProgrammingError), cur.copy("COPY missing (x) FROM STDIN (FORMAT BINARY)"):
            pass
        conn.rollback()
        with cur.copy("COPY t (x) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["int8"])
            cp.write_row((2,))
        assert cur.rowcount == 1
        conn.commit()
        cur.execute("SELECT x FROM t")
        assert cur.fetchall() == [(2,)]
    finally:
        conn.close()
