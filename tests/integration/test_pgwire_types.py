"""pgwire's values against psycopg's, on the real test cluster (a differential test).

The same statements run through both drivers; every parameter type of the API contract must come
back as the same value of the same Python type, or both must refuse it with a DataError. The
session's TimeZone is Asia/Kathmandu (+05:45, and +05:41:16 local mean time before 1920), so a
time zone offset that is not whole hours, or not whole minutes, is exercised.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.adapt import PyFormat, Transformer
from psycopg.types.json import Jsonb as PsycopgJsonb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from pgwire_support import keywords

from stellaops_runtime import pgwire
from stellaops_runtime.pgwire.values import param

TZ = "Asia/Kathmandu"
KTM = dt.timezone(dt.timedelta(hours=5, minutes=45))
VALUES: list[Any] = [
    "",
    "héllo ✓ 𝄞",
    "quote ' backslash \\ percent %",
    0,
    1,
    -1,
    2**15 - 1,
    2**15,
    -(2**15) - 1,
    2**31,
    -(2**31) - 1,
    2**63 - 1,
    -(2**63),
    2**63,
    -(10**40),
    1.5,
    -0.0,
    1e300,
    5e-324,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    b"",
    b"\x00\xff\\x",
    dt.datetime(1901, 12, 13, 20, 45, 52, 123456),
    dt.datetime(1, 1, 1),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
    dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
    dt.datetime(2024, 2, 29, 12, 0, tzinfo=KTM),
    dt.datetime(1900, 6, 1, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30))),
    dt.datetime(2024, 6, 1, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=41, seconds=16))),
    dt.date(1, 1, 1),
    dt.date(1969, 7, 20),
    dt.date(9999, 12, 31),
    dt.time(0, 0),
    dt.time(23, 59, 59, 999999),
    dt.timedelta(0),
    dt.timedelta(days=-3, seconds=5, microseconds=7),
    dt.timedelta(days=40000, microseconds=1),
    Decimal("1.10"),
    Decimal("-0.000001"),
    Decimal("12345678901234567890.0987654321"),
    Decimal("1E+30"),
    Decimal("NaN"),
    Decimal("-Infinity"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
]
JSON_VALUES: list[Any] = [{"a": [1, "é", None, 2.5]}, "just a string", 17, None, [], {"n": 10**20}]


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, Decimal):
        return (a.is_nan() and b.is_nan()) or (a == b and str(a) == str(b))
    if isinstance(a, dt.datetime):
        return a == b and a.utcoffset() == b.utcoffset()
    return bool(a == b)


@pytest.fixture
def both(pg_url: str):
    ours = pgwire.connect(**keywords(pg_url, options=f"-c TimeZone={TZ}"))
    theirs = psycopg.connect(**keywords(pg_url, options=f"-c TimeZone={TZ}"))
    yield ours, theirs
    ours.close()
    theirs.close()


def test_parameter_type_oids_are_psycopgs() -> None:
    t = Transformer()
    for v in [*VALUES, PsycopgJsonb({})]:
        dumper = t.get_dumper(v, PyFormat.AUTO)
        with contextlib.suppress(NotImplementedError):
            dumper = dumper.upgrade(v, PyFormat.AUTO)
        mine = param(pgwire.Jsonb(v.obj) if isinstance(v, PsycopgJsonb) else v)[0]
        assert mine == dumper.oid, (v, type(dumper).__name__)


def _select(conn: Any, sql: str, params: Any = None) -> Any:
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        return ("ok", cur.fetchall())
    except (pgwire.DataError, psycopg.DataError) as e:
        return ("DataError", type(e).__name__)
    finally:
        conn.rollback()


def test_select_each_parameter_comes_back_as_psycopgs(both) -> None:
    ours, theirs = both
    for v in VALUES:
        a = _select(ours, "SELECT %s", (v,))
        b = _select(theirs, "SELECT %s", (v,))
        assert a[0] == b[0] == "ok", (v, a, b)
        assert _same(a[1][0][0], b[1][0][0]), (v, a, b)
        # str goes as 'unknown' and comes back as text; an int beyond int8 as numeric (Decimal)
        back = a[1][0][0]
        assert _same(back, v) or isinstance(v, dt.datetime) or back == v, (v, a)
    for j in JSON_VALUES:
        a = _select(ours, "SELECT %s", (pgwire.Jsonb(j),))
        b = _select(theirs, "SELECT %s", (PsycopgJsonb(j),))
        assert a == b == ("ok", [(j,)])
    assert (
        _select(ours, "SELECT %s::int", (None,))
        == _select(theirs, "SELECT %s::int", (None,))
        == ("ok", [(None,)])
    )


SERVER_VALUES = [
    "'infinity'::date",
    "'-infinity'::timestamp",
    "'infinity'::timestamptz",
    "'4714-11-24 BC'::date",
    "'0044-03-15 BC'::timestamp",
    "'1900-01-01 00:00:00'::timestamptz",
    "'2024-03-31 02:30:00+00'::timestamptz",
    "'24:00:00'::time",
    "'Infinity'::numeric",
    "'-0'::float8",
    "'NaN'::float4",
    "1.25::float4",
    "'1 year 2 mons -3 days 04:05:06.789'::interval",
    "'-1 day +02:03:00'::interval",
    "'-00:00:00.000001'::interval",
    "'{1,NULL,3}'::int[]",
    "'{{1,2},{3,4}}'::int8[]",
    "ARRAY['a b', 'c\"d', NULL, 'e\\f', '', 'NULL']",
    "'{}'::text[]",
    "'[2:3]={7,8}'::int[]",
    "ARRAY[1.5, NULL]::numeric[]",
    "ARRAY[true, false]",
    "ARRAY['2024-01-01'::date]",
    "ARRAY['2024-01-01 10:00+01'::timestamptz]",
    "ARRAY['12345678-1234-5678-1234-567812345678'::uuid]",
    "'{\"k\": [1, 2]}'::json",
    "ARRAY['{\"a\":1}'::jsonb, NULL]",
    "'abc'::bpchar(5)",
    "'nm'::name",
    "42::oid",
    "'\\x00ff'::bytea",
    "'10:00:00+01'::timetz",
    "'(1,2)'::point",
    "'a'::\"char\"",
    "NULL::text",
]


def test_server_values_convert_as_psycopg_converts_them(both) -> None:
    ours, theirs = both
    for expr in SERVER_VALUES:
        a = _select(ours, f"SELECT {expr}")
        b = _select(theirs, f"SELECT {expr}")
        assert a[0] == b[0], (expr, a, b)
        if a[0] == "ok":
            x, y = a[1][0][0], b[1][0][0]
            assert _same(x, y) or (isinstance(x, list) and x == y), (expr, x, y)


def test_an_interval_beyond_timedelta_is_refused(both) -> None:
    """psycopg 3.3's C loader returns 545,490,560 days for this one (an overflow): pgwire refuses it."""
    ours, _ = both
    assert _select(ours, "SELECT '178000000 years'::interval") == ("DataError", "DataError")


def test_bytea_escape_output(both) -> None:
    ours, theirs = both
    for c in (ours, theirs):
        c.cursor().execute("SET bytea_output = escape")
    assert _select(ours, "SELECT '\\x00ff5c41'::bytea") == _select(theirs, "SELECT '\\x00ff5c41'::bytea")


COLUMNS = [
    ("i2", "int2", 7),
    ("i4", "int4", -(2**31)),
    ("i8", "int8", 2**63 - 1),
    ("n", "numeric", Decimal("-98765432109876543210.5")),
    ("f4", "float4", 0.5),
    ("f8", "float8", -0.0),
    ("b", "bool", True),
    ("t", "text", "ünïcode"),
    ("v", "varchar(10)", "vc"),
    ("by", "bytea", b"\x00\x01"),
    ("ts", "timestamp", dt.datetime(1950, 1, 2, 3, 4, 5, 6)),
    ("tz", "timestamptz", dt.datetime(1955, 5, 5, 5, 5, 5, tzinfo=KTM)),
    ("d", "date", dt.date(1960, 2, 29)),
    ("tm", "time", dt.time(12, 34, 56, 789)),
    ("iv", "interval", dt.timedelta(days=1, seconds=2)),
    ("u", "uuid", uuid.UUID(int=1)),
    ("j", "jsonb", {"x": ["y", 1]}),
]


def test_insert_then_select_on_a_table_is_psycopgs(both) -> None:
    ours, theirs = both
    ddl = ", ".join(f"{n} {t}" for n, t, _ in COLUMNS)
    theirs.execute(f"CREATE TABLE typed (who text, {ddl})")
    theirs.commit()
    names = ", ".join(n for n, _, _ in COLUMNS)
    marks = ", ".join(["%s"] * (len(COLUMNS) + 1))
    row = [v for _, _, v in COLUMNS]
    ours.cursor().execute(
        f"INSERT INTO typed (who, {names}) VALUES ({marks})", ["pgwire", *row[:-1], pgwire.Jsonb(row[-1])]
    )
    ours.commit()
    theirs.execute(
        f"INSERT INTO typed (who, {names}) VALUES ({marks})", ["psycopg", *row[:-1], PsycopgJsonb(row[-1])]
    )
    theirs.execute("INSERT INTO typed (who) VALUES ('nulls')")
    theirs.commit()
    cur = ours.cursor()
    cur.execute(f"SELECT who, {names} FROM typed ORDER BY who")
    mine = cur.fetchall()
    their_rows = theirs.execute(f"SELECT who, {names} FROM typed ORDER BY who").fetchall()
    assert [r[0] for r in mine] == ["nulls", "pgwire", "psycopg"]
    for a, b in zip(mine, their_rows, strict=True):
        assert all(_same(x, y) or x == y for x, y in zip(a, b, strict=True)), (a, b)
    assert mine[0][1:] == (None,) * len(COLUMNS)
    assert all(_same(x, y) or x == y for x, y in zip(mine[1][1:], mine[2][1:], strict=True))


def test_an_interval_in_another_style_is_refused_not_misread(both) -> None:
    """pgwire parses IntervalStyle postgres only (as psycopg, which raises NotImplementedError for the
    others): a session set to another style gets a DataError or, where that style's text reads the
    same ('0:00:01'), the same value; never a wrong timedelta."""
    ours, _ = both
    exprs = ("'1 year 2 mons -3 days 04:05:06.5'", "'-1 day +02:00'", "'00:00:01'", "'3 days'", "'-7 mons'")
    right = {e: _select(ours, f"SELECT {e}::interval") for e in exprs}
    assert all(r[0] == "ok" for r in right.values())
    refused = 0
    for style in ("sql_standard", "iso_8601", "postgres_verbose"):
        ours.cursor().execute(f"SET IntervalStyle = {style}")
        ours.commit()
        for expr in exprs:
            got = _select(ours, f"SELECT {expr}::interval")
            assert got in (("DataError", "DataError"), right[expr]), (style, expr, got)
            refused += got[0] == "DataError"
    assert refused >= 12
