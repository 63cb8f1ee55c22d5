"""The compiled binary COPY row encoder writes exactly what the per-type encoders write."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

import pytest

from stellaops_runtime import pgwire
from stellaops_runtime.pgwire.copy import ENCODERS
from stellaops_runtime.pgwire.rowcode import compile_row
from stellaops_runtime.store.pg_write import STAGE_TYPES
from stellaops_runtime.store.rows import HOT_TYPES, OBS_TYPES

SAMPLES = {
    "int2": [0, -(2**15), 2**15 - 1],
    "int4": [1, -(2**31)],
    "int8": [2**63 - 1, -5],
    "float4": [0.5, float("inf")],
    "float8": [-0.0, 1e300],
    "bool": [True, False],
    "text": ["", "ünï", "x" * 300],
    "varchar": ["v"],
    "bytea": [b"\0\1"],
    "jsonb": [{"a": [1]}, "s"],
    "numeric": [Decimal("-1.5")],
    "date": [dt.date(1999, 12, 31)],
    "timestamp": [dt.datetime(1900, 1, 1, 0, 0, 0, 1)],
    "timestamptz": [dt.datetime(1969, 12, 31, 23, 59, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=45)))],
}
MIXED = (
    "text",
    "int8",
    "int4",
    "bool",
    "timestamptz",
    "timestamp",
    "float8",
    "int2",
    "jsonb",
    "numeric",
    "date",
    "bytea",
    "varchar",
    "float4",
)


def _reference(types, row) -> bytes:
    out = len(types).to_bytes(2, "big")
    for t, v in zip(types, row, strict=True):
        out += b"\xff\xff\xff\xff" if v is None else ENCODERS[t](v)
    return out


@pytest.mark.parametrize("types", [STAGE_TYPES, OBS_TYPES, HOT_TYPES, MIXED])
def test_compiled_rows_equal_the_reference_encoding(types) -> None:
    types = list(types)
    encode = compile_row(types, [ENCODERS[t] for t in types])
    for k in range(12):
        row = [SAMPLES[t][(k + i) % len(SAMPLES[t])] for i, t in enumerate(types)]
        for nulls in itertools.islice(itertools.combinations(range(len(types)), k % 3), 40):
            r = [None if i in nulls else v for i, v in enumerate(row)]  # NULLs inside fixed-width runs too
            buf = bytearray(b"prefix")
            encode(r, buf)
            assert bytes(buf) == b"prefix" + _reference(types, r)


def test_values_the_fast_path_does_not_take_go_the_slow_way_or_are_refused_by_column() -> None:
    types = ["int8", "text", "int4", "int2"]
    encode = compile_row(types, [ENCODERS[t] for t in types])
    buf = bytearray()
    encode([1, 42, 2, 3], buf)  # an int for a text column: its text, as the per-type encoder gives it
    assert bytes(buf) == _reference(types, [1, "42", 2, 3])
    for row, message in (
        ([1, "x", 2**31, 3], "column 3 \\(int4\\): value 2147483648 out of range for int4"),
        ([1, "x", 2, -(2**15) - 1], "column 4 \\(int2\\)"),
        ([2**63, "x", 2, 3], "column 1 \\(int8\\)"),
        ([1, "a\0b", 2, 3], "column 2 \\(text\\): .*NUL"),
        ([1, "x", "2", 3], "column 3 \\(int4\\): cannot encode '2'"),
    ):
        buf = bytearray(b"kept")
        with pytest.raises(pgwire.DataError, match=message):
            encode(row, buf)
        assert buf == b"kept"  # the refused row's bytes were taken back
    with pytest.raises(pgwire.ProgrammingError, match="row of 3 values for 4"):
        encode([1, "x", 2], bytearray())
    ts = compile_row(["timestamptz"], [ENCODERS["timestamptz"]])
    with pytest.raises(pgwire.DataError, match="naive datetime"):
        ts([dt.datetime(2020, 1, 1)], bytearray())


def test_text_fields_kept_for_repeats_stay_exact_past_the_cache_bound() -> None:
    from stellaops_runtime.pgwire.rowcode import TEXT_CACHE

    types = ["text", "int8", "varchar"]
    encode = compile_row(types, [ENCODERS[t] for t in types])
    names = [f"fn_{i}_ü" for i in range(TEXT_CACHE * 2)]
    rows = [(names[i % len(names)], i, names[(i * 7) % len(names)]) for i in range(TEXT_CACHE * 5)]
    rows.append(("nul\0here", 1, "x"))
    buf = bytearray()
    for r in rows[:-1]:
        encode(r, buf)
    assert bytes(buf) == b"".join(_reference(types, r) for r in rows[:-1])
    with pytest.raises(pgwire.DataError, match=r"column 1 \(text\): .*NUL"):
        encode(rows[-1], buf)
