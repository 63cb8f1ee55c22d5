"""pgwire's cursor: psycopg-style ``%s`` statements over the extended query protocol.

``execute`` sends Parse/Bind/Describe/Execute/Sync for the unnamed statement in one write (with
the BEGIN that opens a transaction, when one must), then reads to ReadyForQuery; rows are kept as
the server's text and converted when fetched (values.py), so a value Python cannot hold fails the
fetch, as in psycopg, and never the protocol. ``executemany`` sends one Parse (another only when a
row's parameter types differ), a Bind/Execute per row and one Sync, in chunks that each end with a
Flush whose replies are read before the next, so a long batch cannot fill both sockets' buffers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from stellaops_runtime.pgwire import messages as m
from stellaops_runtime.pgwire.connection import Connection
from stellaops_runtime.pgwire.errors import DatabaseError, InterfaceError, ProgrammingError
from stellaops_runtime.pgwire.values import Loader, loader, param

_PLACEHOLDER = re.compile(r"%(.?)", re.S)
_CACHE: dict[str, tuple[str, int]] = {}
_FLUSH = b"H\0\0\0\x04"
CHUNK_ROWS = 500


def convert(sql: str) -> tuple[str, int]:
    """``%s`` -> ``$n`` and ``%%`` -> ``%``; (the new text, the number of placeholders)."""
    hit = _CACHE.get(sql)
    if hit is not None:
        return hit
    n = 0

    def sub(match: re.Match[str]) -> str:
        nonlocal n
        c = match.group(1)
        if c == "%":
            return "%"
        if c == "s":
            n += 1
            return f"${n}"
        raise ProgrammingError(f"only '%s' and '%%' placeholders are allowed, got '%{c}'")

    out = (_PLACEHOLDER.sub(sub, sql), n)
    if len(_CACHE) > 256:
        _CACHE.clear()
    _CACHE[sql] = out
    return out


def bind_values(sql: str, params: Sequence[Any]) -> tuple[str, list[int], list[bytes | None]]:
    if isinstance(params, (str, bytes)) or not isinstance(params, Sequence):
        raise ProgrammingError("query parameters must be a sequence (pgwire supports only '%s')")
    if len(params) > m.MAX_PARAMETERS:
        raise ProgrammingError(f"{len(params)} parameters: a statement takes at most {m.MAX_PARAMETERS}")
    text, n = convert(sql)
    if n != len(params):
        raise ProgrammingError(f"the query has {n} placeholders but {len(params)} parameters were passed")
    oids: list[int] = []
    values: list[bytes | None] = []
    for p in params:
        oid, value = param(p)
        oids.append(oid)
        values.append(value)
    return text, oids, values


class Cursor:
    """Results of the last statement run through it."""

    arraysize = 1

    def __init__(self, conn: Connection) -> None:
        self.connection = conn
        self.description: list[tuple[Any, ...]] | None = None
        self.rowcount = -1
        self._loaders: list[Loader] = []
        self._rows: list[list[bytes | None]] = []
        self._pos = 0
        self.closed = False

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.closed = True
        self._rows = []

    def copy(self, sql: str) -> Any:
        from stellaops_runtime.pgwire.copy import Copy

        self._check()
        self._reset()
        return Copy(self.connection, sql, self)

    def _check(self) -> Connection:
        if self.closed:
            raise InterfaceError("the cursor is closed")
        self.connection._check()
        return self.connection

    def _reset(self) -> None:
        self.description = None
        self.rowcount = -1
        self._loaders = []
        self._rows = []
        self._pos = 0

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Cursor:
        conn = self._check()
        self._reset()
        if params is not None:
            text, oids, values = bind_values(sql, params)
        else:
            text, oids, values = sql, [], []
        try:
            body = m.parse(text, oids) + m.bind(values)
        except ValueError:
            raise ProgrammingError("a NUL character in the statement text") from None
        prefix = conn._begin_prefix()
        conn._send(prefix + body + m.DESCRIBE_PORTAL + m.EXECUTE + m.SYNC)
        error = self._read_until_ready(prefix != b"", None)
        if error is not None:
            self._reset()
            raise error
        return self

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> None:
        conn = self._check()
        self._reset()
        rows = [bind_values(sql, row) for row in seq]  # all refused or none sent
        if not rows:
            return
        prefix = conn._begin_prefix()
        total = 0
        last_oids: list[int] | None = None
        error: DatabaseError | None = None
        for start in range(0, len(rows), CHUNK_ROWS):
            parts = [prefix] if start == 0 else []
            expect = 0
            for text, oids, values in rows[start : start + CHUNK_ROWS]:
                if oids != last_oids:
                    parts.append(m.parse(text, oids))
                    expect += 1
                    last_oids = oids
                parts.append(m.bind(values))
                parts.append(m.EXECUTE)
                expect += 2
            conn._send(b"".join(parts) + _FLUSH)
            if start == 0 and prefix:
                error = self._read_until_ready(False, None, stop_after_ready=True)
            counted, error = self._read_replies(expect, error)
            total += counted
            if error is not None:
                break
        conn._send(m.SYNC)
        error = self._read_until_ready(False, error)
        if error is not None:
            raise error
        self.rowcount = total

    def _read_replies(self, expect: int, error: DatabaseError | None) -> tuple[int, DatabaseError | None]:
        """Read ``expect`` ParseComplete/BindComplete/CommandComplete replies (or an error)."""
        conn = self.connection
        counted = 0
        while expect and error is None:
            kind, body = conn._read()
            if kind in (b"1", b"2"):
                expect -= 1
            elif kind == b"C":
                expect -= 1
                counted += max(m.command_tag(body)[1], 0)
            elif kind == b"I":  # EmptyQueryResponse: an Execute's reply in place of CommandComplete
                expect -= 1
            elif kind == b"D":
                continue
            else:
                error = conn._finish(kind, body, error)
        return counted, error

    def _read_until_ready(
        self, begin: bool, error: DatabaseError | None, *, stop_after_ready: bool = False
    ) -> DatabaseError | None:
        """Read to ReadyForQuery (two of them when a BEGIN went first); the first error, if any."""
        conn = self.connection
        readies = 2 if begin else 1
        while True:
            kind, body = conn._read()
            if kind == b"D":
                try:
                    row = m.data_row(body)
                except m.ProtocolViolation as e:
                    raise conn._violation(str(e)) from None
                if self.description is None or len(row) != len(self._loaders):
                    raise conn._violation(f"a DataRow of {len(row)} fields for {len(self._loaders)} columns")
                self._rows.append(row)
            elif kind == b"T":
                try:
                    cols = m.row_description(body)
                except m.ProtocolViolation as e:
                    raise conn._violation(str(e)) from None
                self.description = [(name, oid, None, None, None, None, None) for name, oid in cols]
                self._loaders = [loader(oid) for _, oid in cols]
            elif kind == b"C":
                self.rowcount = m.command_tag(body)[1]
            elif kind == b"Z":
                conn._status = body[:1]
                readies -= 1
                if readies == 0 or stop_after_ready:
                    return error
            elif kind in (b"1", b"2", b"n", b"I", b"t"):
                continue
            elif kind == b"G":  # COPY FROM STDIN through execute: refuse it, end the copy
                # The server ignored our Sync in copy-in mode: after the CopyFail it waits for
                # another, then answers with the one ReadyForQuery still expected.
                conn._send(m.copy_fail("COPY FROM STDIN needs cursor.copy()") + m.SYNC)
                error = error or ProgrammingError("COPY FROM STDIN must be run with cursor.copy()")
            elif kind == b"H":
                error = error or ProgrammingError("COPY TO STDOUT is not supported by pgwire")
            elif kind in (b"d", b"c"):
                continue
            else:
                error = conn._finish(kind, body, error)

    # -- fetching --------------------------------------------------------------------------------

    def _convert(self, raw: list[bytes | None]) -> tuple[Any, ...]:
        return tuple(None if v is None else f(v) for f, v in zip(self._loaders, raw, strict=True))

    def fetchone(self) -> tuple[Any, ...] | None:
        self._need_result()
        if self._pos >= len(self._rows):
            return None
        row = self._convert(self._rows[self._pos])
        self._pos += 1
        return row

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        self._need_result()
        n = self.arraysize if size is None else size
        out = [self._convert(r) for r in self._rows[self._pos : self._pos + n]]
        self._pos += len(out)
        return out

    def fetchall(self) -> list[tuple[Any, ...]]:
        self._need_result()
        out = [self._convert(r) for r in self._rows[self._pos :]]
        self._pos = len(self._rows)
        return out

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while (row := self.fetchone()) is not None:
            yield row

    def _need_result(self) -> None:
        if self.closed:
            raise InterfaceError("the cursor is closed")
        if self.description is None:
            raise ProgrammingError("the last operation didn't produce a result")
