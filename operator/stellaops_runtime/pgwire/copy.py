"""``COPY ... FROM STDIN (FORMAT BINARY)`` for pgwire: rows encoded in PostgreSQL's binary format.

The agent's flush stages its rows with a binary COPY (store/pg_write.py ``copy_rows``). Each column
type named by ``set_types`` has a precompiled encoder; rows go into a buffer sent as one CopyData
message per ~64 KiB, CopyDone at the end of the ``with`` block (CopyFail with the error when the
block raises). Unlike psycopg, an int too large for its int2/int4/int8 column is a DataError, not
truncated, and a NUL in text is a DataError, before anything of that row is sent.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import struct
from collections.abc import Callable, Sequence
from typing import Any

from stellaops_runtime.pgwire import messages as m
from stellaops_runtime.pgwire.connection import Connection
from stellaops_runtime.pgwire.errors import DatabaseError, DataError, OperationalError, ProgrammingError
from stellaops_runtime.pgwire.rowcode import RowEncoder, compile_row
from stellaops_runtime.pgwire.values import Jsonb

HEADER = b"PGCOPY\n\xff\r\n\0" + b"\0\0\0\0" + b"\0\0\0\0"
TRAILER = b"\xff\xff"
CHUNK = 64 * 1024
_EPOCH_TZ = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_EPOCH = dt.datetime(2000, 1, 1)
_EPOCH_DAY = dt.date(2000, 1, 1).toordinal()
_NULL = b"\xff\xff\xff\xff"

Encoder = Callable[[Any], bytes]


def _int(fmt: str, bits: int) -> Encoder:
    pack = struct.Struct("!i" + fmt).pack
    lo, hi = -(1 << (bits - 1)), 1 << (bits - 1)

    def enc(v: Any) -> bytes:
        if not lo <= v < hi:
            raise DataError(f"value {v} out of range for int{bits // 8}")
        return pack(bits // 8, v)

    return enc


def _text(v: Any) -> bytes:
    b = v.encode() if isinstance(v, str) else str(v).encode()
    if b"\0" in b:
        raise DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    return struct.pack("!i", len(b)) + b


def _bytea(v: Any) -> bytes:
    b = bytes(v)
    return struct.pack("!i", len(b)) + b


# json.dumps writes a NUL as the escape \u0000; the six characters \u0000 in a string come out as
# \\u0000, which jsonb stores: an escape is one preceded by an even number of backslashes.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _jsonb(v: Any) -> bytes:
    text = json.dumps(v.obj if isinstance(v, Jsonb) else v).encode()
    if b"\\u0000" in text and _NUL_ESCAPE.search(text):
        raise DataError("unsupported Unicode escape sequence: \\u0000 cannot be stored in jsonb")
    return struct.pack("!i", len(text) + 1) + b"\x01" + text


_F4 = struct.Struct("!if").pack
_F8 = struct.Struct("!id").pack
_Q = struct.Struct("!iq").pack
_I = struct.Struct("!ii").pack


def _float4(v: Any) -> bytes:
    return _F4(4, v)


def _float8(v: Any) -> bytes:
    return _F8(8, v)


def _bool(v: Any) -> bytes:
    return b"\0\0\0\x01\x01" if v else b"\0\0\0\x01\x00"


def _micros(delta: dt.timedelta) -> int:
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _timestamptz(v: Any) -> bytes:
    if v.tzinfo is None or v.utcoffset() is None:
        raise DataError(f"a naive datetime for a timestamptz column: {v!r}")
    return _Q(8, _micros(v - _EPOCH_TZ))


def _timestamp(v: Any) -> bytes:
    if v.tzinfo is not None:
        v = v.replace(tzinfo=None)  # psycopg: the wall time, its zone dropped
    return _Q(8, _micros(v - _EPOCH))


def _date(v: Any) -> bytes:
    return _I(4, v.toordinal() - _EPOCH_DAY)


def _numeric(v: Any) -> bytes:
    from decimal import Decimal

    d = v if isinstance(v, Decimal) else Decimal(v)
    if d.is_nan():
        return struct.pack("!ihhHh", 8, 0, 0, 0xC000, 0)
    if d.is_infinite():
        return struct.pack("!ihhHh", 8, 0, 0, 0xD000 if d > 0 else 0xF000, 0)
    sign, digits, exp = d.as_tuple()
    assert isinstance(exp, int)
    pad = exp % 4  # value = n * 10000 ** e4, with n an integer
    n = int("".join(map(str, digits)) or "0") * 10**pad
    e4 = (exp - pad) // 4
    groups: list[int] = []
    while n:
        n, r = divmod(n, 10000)
        groups.append(r)
    groups.reverse()
    weight = len(groups) - 1 + e4 if groups else 0
    while groups and groups[-1] == 0:
        groups.pop()
    dscale = max(-exp, 0)
    body = struct.pack(f"!hhHh{len(groups)}h", len(groups), weight, 0x4000 if sign else 0, dscale, *groups)
    return struct.pack("!i", len(body)) + body


ENCODERS: dict[str, Encoder] = {
    "int2": _int("h", 16),
    "int4": _int("i", 32),
    "int8": _int("q", 64),
    "text": _text,
    "varchar": _text,
    "bool": _bool,
    "float4": _float4,
    "float8": _float8,
    "timestamptz": _timestamptz,
    "timestamp": _timestamp,
    "date": _date,
    "bytea": _bytea,
    "jsonb": _jsonb,
    "numeric": _numeric,
}


class Copy:
    """One COPY FROM STDIN (FORMAT BINARY) in progress: ``with cursor.copy(sql) as cp``."""

    def __init__(self, conn: Connection, sql: str, cursor: Any = None) -> None:
        self._conn = conn
        self._cursor = cursor
        self._sql = sql
        self._encoders: list[Encoder] = []
        self._encode: RowEncoder | None = None
        self._buf = bytearray()
        self._active = False

    def set_types(self, types: Sequence[str]) -> None:
        try:
            self._encoders = [ENCODERS[t] for t in types]
        except KeyError as e:
            raise ProgrammingError(f"pgwire's COPY does not encode type {e.args[0]!r}") from None
        self._encode = compile_row(list(types), self._encoders)

    def write_row(self, row: Sequence[Any]) -> None:
        if not self._active:
            raise ProgrammingError("write_row outside the copy's with block")
        if self._encode is None:
            raise ProgrammingError("set_types must come before write_row")
        self._encode(row, self._buf)
        if len(self._buf) >= CHUNK:
            self._conn._send(m.copy_data(bytes(self._buf)))
            self._buf.clear()

    def __enter__(self) -> Copy:
        conn = self._conn
        conn._check()
        prefix = conn._begin_prefix()
        conn._send(prefix + m.query(self._sql))
        readies = 1 if prefix else 0
        error: DatabaseError | None = None
        while True:
            kind, body = conn._read()
            if kind == b"G":
                try:
                    fmt, _ = m.copy_in_response(body)
                except m.ProtocolViolation as e:
                    raise conn._violation(str(e)) from None
                if error is not None or readies:
                    raise conn._violation("CopyInResponse after an error")
                if fmt != 1:
                    conn._send(m.copy_fail("pgwire writes binary COPY only"))
                    self._drain(ProgrammingError("COPY must be FORMAT BINARY for pgwire"))
                self._active = True
                self._buf += HEADER
                return self
            if kind == b"Z":
                conn._status = body[:1]
                if readies:
                    readies -= 1
                    continue
                raise error or ProgrammingError("the statement is not COPY FROM STDIN")
            if kind in (b"C", b"T", b"D", b"n", b"I"):
                continue
            error = conn._finish(kind, body, error)

    def __exit__(self, kind: object, value: object, tb: object) -> None:
        if not self._active:
            return
        self._active = False
        conn = self._conn
        if conn.closed:
            return
        if kind is not None:
            self._buf.clear()
            conn._send(m.copy_fail(f"error in the client: {value}"[:1000]))
            try:
                self._drain(None)
            except DatabaseError as e:
                if e.sqlstate != "57014" and not isinstance(e, OperationalError):
                    raise
            return
        self._buf += TRAILER
        conn._send(m.copy_data(bytes(self._buf)) + m.COPY_DONE)
        self._buf.clear()
        self._drain(None)

    def _drain(self, error: DatabaseError | None) -> None:
        conn = self._conn
        while True:
            kind, body = conn._read()
            if kind == b"Z":
                conn._status = body[:1]
                if error is not None:
                    raise error
                return
            if kind == b"C":
                if self._cursor is not None:
                    self._cursor.rowcount = m.command_tag(body)[1]
                continue
            error = conn._finish(kind, body, error)
