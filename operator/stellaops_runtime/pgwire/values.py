"""Python values to PostgreSQL parameters and text-format results back to Python, as psycopg 3 does.

Parameters are sent in text format, each with the type OID psycopg 3 (3.3) gives a ``%s``
placeholder for the value's Python type (tests/integration/test_pgwire_types.py pins them against
the installed psycopg): str -> unknown (0), int -> the smallest of int2/int4/int8/numeric that
holds it, float -> float8, bool, bytes -> bytea, aware datetime -> timestamptz, naive ->
timestamp, date, time, timedelta -> interval, Decimal -> numeric, UUID, :class:`Jsonb` -> jsonb.
Results arrive in text format and are converted by their column's type OID; an OID not listed
here stays a str.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stellaops_runtime.pgwire.errors import DataError, ProgrammingError

if TYPE_CHECKING:  # decimal and uuid are imported only when a value of theirs is met
    import uuid
    from decimal import Decimal

BOOL, BYTEA, NAME, INT8, INT2, INT4, TEXT, OID = 16, 17, 19, 20, 21, 23, 25, 26
JSON, FLOAT4, FLOAT8, UNKNOWN, BPCHAR, VARCHAR = 114, 700, 701, 705, 1042, 1043
TIMETZ = 1266
DATE, TIME, TIMESTAMP, TIMESTAMPTZ, INTERVAL, NUMERIC, UUID, JSONB = (
    1082,
    1083,
    1114,
    1184,
    1186,
    1700,
    2950,
    3802,
)


class Jsonb:
    """A parameter sent as ``jsonb`` (``json.dumps`` of ``obj``), like psycopg's Jsonb."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __repr__(self) -> str:
        return f"Jsonb({self.obj!r})"


def _text(s: str) -> bytes:
    if "\0" in s:
        raise DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    return s.encode()


def _float(v: float) -> bytes:
    if v != v:
        return b"NaN"
    if v in (float("inf"), float("-inf")):
        return b"Infinity" if v > 0 else b"-Infinity"
    return repr(v).encode()


def _datetime(v: dt.datetime) -> bytes:
    return v.isoformat(sep=" ").encode()


def _decimal(v: Decimal) -> bytes:
    if v.is_snan():
        raise DataError("sNaN cannot be sent to PostgreSQL")
    if v.is_nan():
        return b"NaN"
    return str(v).encode()


def _interval(v: dt.timedelta) -> bytes:
    return f"{v.days} days {v.seconds} seconds {v.microseconds} microseconds".encode()


def param(value: Any) -> tuple[int, bytes | None]:
    """(type OID, text bytes) for one parameter; None bytes for NULL."""
    if value is None:
        return 0, None
    t = type(value)
    if t is str:
        return 0, _text(value)
    if t is bool:
        return BOOL, b"t" if value else b"f"
    if t is int:
        if -(2**15) <= value < 2**15:
            oid = INT2
        elif -(2**31) <= value < 2**31:
            oid = INT4
        elif -(2**63) <= value < 2**63:
            oid = INT8
        else:
            oid = NUMERIC
        return oid, str(value).encode()
    if t is float:
        return FLOAT8, _float(value)
    if t is dt.datetime:
        return (TIMESTAMP if value.utcoffset() is None else TIMESTAMPTZ), _datetime(value)
    if t is dt.date:
        return DATE, value.isoformat().encode()
    if t is dt.time:
        if value.tzinfo is not None:
            raise ProgrammingError("a time with a time zone is not supported by pgwire")
        return TIME, value.isoformat().encode()
    if t is dt.timedelta:
        return INTERVAL, _interval(value)
    name = (t.__module__, t.__qualname__)
    if name == ("decimal", "Decimal"):
        return NUMERIC, _decimal(value)
    if name == ("uuid", "UUID"):
        return UUID, str(value).encode()
    if t is Jsonb:
        return JSONB, _text(json.dumps(value.obj))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return BYTEA, b"\\x" + bytes(value).hex().encode()
    for base, fn in ((str, param), (int, param), (float, param)):
        if isinstance(value, base) and t is not base:
            return fn(base(value))  # enums and other subclasses: as their base
    if isinstance(value, dt.datetime):
        return param(dt.datetime.fromisoformat(value.isoformat()))
    raise ProgrammingError(f"cannot adapt type {t.__name__!r} (pgwire)")


# -- results -------------------------------------------------------------------------------------


def _bool(b: bytes) -> bool:
    return b == b"t"


def _bytea(b: bytes) -> bytes:
    if b.startswith(b"\\x"):
        return bytes.fromhex(b[2:].decode())
    out = bytearray()  # escape format (bytea_output = escape)
    i = 0
    while i < len(b):
        c = b[i]
        if c == 0x5C:
            if b[i + 1 : i + 2] == b"\\":
                out.append(0x5C)
                i += 2
            else:
                out.append(int(b[i + 1 : i + 4], 8))
                i += 4
        else:
            out.append(c)
            i += 1
    return bytes(out)


_TZ = re.compile(r"([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?$")


def _tz(text: str) -> tuple[str, dt.tzinfo]:
    m = _TZ.search(text)
    if m is None:
        raise DataError(f"cannot parse timestamptz {text!r}")
    sign = -1 if m.group(1) == "-" else 1
    off = dt.timedelta(hours=int(m.group(2)), minutes=int(m.group(3) or 0), seconds=int(m.group(4) or 0))
    return text[: m.start()], dt.timezone(sign * off)


def _check_date_text(text: str, what: str) -> None:
    if (
        text.endswith(" BC")
        or text in ("infinity", "-infinity")
        or not text[:4].isdigit()
        or (len(text) > 4 and text[4] != "-")
    ):
        raise DataError(f"{what} not supported by Python: {text!r}")


def _date(b: bytes) -> dt.date:
    text = b.decode()
    _check_date_text(text, "date")
    return dt.date.fromisoformat(text)


def _timestamp(b: bytes) -> dt.datetime:
    text = b.decode()
    _check_date_text(text, "timestamp")
    return dt.datetime.fromisoformat(text)


def _timestamptz(b: bytes) -> dt.datetime:
    text = b.decode()
    _check_date_text(text, "timestamp")
    naive, tz = _tz(text)
    return dt.datetime.fromisoformat(naive).replace(tzinfo=tz)


def _time(b: bytes) -> dt.time:
    text = b.decode()
    if text.startswith("24:"):
        raise DataError(f"time not supported by Python: {text!r}")
    return dt.time.fromisoformat(text)


def _timetz(b: bytes) -> dt.time:
    naive, tz = _tz(b.decode())
    return _time(naive.encode()).replace(tzinfo=tz)


_INTERVAL = re.compile(
    r"(?:(?P<y>-?\d+) years? ?)?(?:(?P<mo>-?\d+) mons? ?)?(?:(?P<d>-?\d+) days? ?)?"
    r"(?:(?P<sign>[+-])?(?P<h>\d+):(?P<mi>\d\d):(?P<s>\d\d)(?:\.(?P<f>\d{1,6}))?)?"
)


def _interval_out(b: bytes) -> dt.timedelta:
    """IntervalStyle postgres only: '1 year 2 mons -3 days 04:05:06.7'; a month is 30 days, a year
    365 (psycopg's conversion). Any other text (another IntervalStyle set in the session) is a
    DataError, never a guess."""
    text = b.decode()
    m = _INTERVAL.fullmatch(text)
    if m is None or not text:
        raise DataError(f"cannot parse interval {text!r} (IntervalStyle postgres only)")
    g = m.groupdict()
    days = int(g["y"] or 0) * 365 + int(g["mo"] or 0) * 30 + int(g["d"] or 0)
    seconds = micro = 0
    if g["h"] is not None:
        sign = -1 if g["sign"] == "-" else 1
        seconds = sign * (int(g["h"]) * 3600 + int(g["mi"]) * 60 + int(g["s"]))
        micro = sign * int(((g["f"] or "") + "000000")[:6])
    try:
        return dt.timedelta(days=days, seconds=seconds, microseconds=micro)
    except OverflowError:
        raise DataError(f"interval out of Python's range: {text!r}") from None


def _numeric(b: bytes) -> Decimal:
    from decimal import Decimal

    return Decimal(b.decode())


def _float_out(b: bytes) -> float:
    return float(b)


def _str(b: bytes) -> str:
    return b.decode()


def _json(b: bytes) -> Any:
    return json.loads(b)


def _uuid(b: bytes) -> uuid.UUID:
    import uuid

    return uuid.UUID(b.decode())


Loader = Callable[[bytes], Any]
LOADERS: dict[int, Loader] = {
    BOOL: _bool,
    BYTEA: _bytea,
    INT2: int,
    INT4: int,
    INT8: int,
    OID: int,
    NUMERIC: _numeric,
    FLOAT4: _float_out,
    FLOAT8: _float_out,
    TEXT: _str,
    VARCHAR: _str,
    BPCHAR: _str,
    NAME: _str,
    UNKNOWN: _str,
    JSON: _json,
    JSONB: _json,
    DATE: _date,
    TIME: _time,
    TIMETZ: _timetz,
    TIMESTAMP: _timestamp,
    TIMESTAMPTZ: _timestamptz,
    INTERVAL: _interval_out,
    UUID: _uuid,
}
# array OID -> element OID
ARRAYS = {
    1000: BOOL,
    1001: BYTEA,
    1003: NAME,
    1005: INT2,
    1007: INT4,
    1009: TEXT,
    1014: BPCHAR,
    1015: VARCHAR,
    1016: INT8,
    1021: FLOAT4,
    1022: FLOAT8,
    1028: OID,
    1182: DATE,
    1183: TIME,
    1270: TIMETZ,
    1115: TIMESTAMP,
    1185: TIMESTAMPTZ,
    1187: INTERVAL,
    1231: NUMERIC,
    2951: UUID,
    199: JSON,
    3807: JSONB,
}


def loader(oid: int) -> Loader:
    """The function turning this type's text into Python (str for a type pgwire does not know)."""
    fn = LOADERS.get(oid)
    if fn is not None:
        return fn
    elem = ARRAYS.get(oid)
    if elem is not None:
        elem_fn = LOADERS[elem]
        return lambda b: _array(b.decode(), elem_fn)
    return _str


def _array(text: str, load: Loader) -> list[Any]:
    """A text-format array ('{1,NULL,"a b"}', nested for more dimensions) as nested lists."""
    if text.startswith("["):  # explicit bounds '[0:1]={...}': psycopg drops them too
        text = text[text.index("=") + 1 :]
    pos = 0

    def parse() -> list[Any]:
        nonlocal pos
        assert text[pos] == "{"
        pos += 1
        out: list[Any] = []
        if text[pos] == "}":
            pos += 1
            return out
        while True:
            c = text[pos]
            if c == "{":
                out.append(parse())
            elif c == '"':
                pos += 1
                buf = []
                while text[pos] != '"':
                    if text[pos] == "\\":
                        pos += 1
                    buf.append(text[pos])
                    pos += 1
                pos += 1
                out.append(load("".join(buf).encode()))
            else:
                end = pos
                while text[end] not in ",}":
                    end += 1
                item = text[pos:end]
                pos = end
                out.append(None if item == "NULL" else load(item.encode()))
            if text[pos] == ",":
                pos += 1
                continue
            pos += 1  # '}'
            return out

    return parse()
