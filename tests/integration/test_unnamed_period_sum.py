"""Unnamed code in a period is summed by the database, with the answer the row-by-row reading gave.

``query observed --since`` over an image with a stripped binary read every ``0x<offset>`` row twice
into Python and asked for their windows 1,000 keys at a time (21 s at 100,000 rows on SQLite).
store/unnamed.py now sums per file in one statement; these tests hold it to the answer of the
reading it replaced (``rows_where`` with the period, then ``history_incomplete`` on the rest), on
rows that meet the period in their windows, rows whose history retention removed wholly or in
part, rows before and after the period, zero-count windows, other images, packages and builds,
on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store import queries
from stellaops_runtime.store.engine import create_store_engine, open_store
from stellaops_runtime.store.function_refs import function_query
from stellaops_runtime.store.refs import PurlQuery
from stellaops_runtime.store.schema import hot_symbol_windows, hot_symbols
from stellaops_runtime.store.unnamed import UnnamedCode, history_incomplete, unnamed_code

S = 1_000_000_000
DAY = 86_400 * S
T0 = 1_740_787_200 * S  # 2025-03-01T00:00:00Z
IMG = "sha256:" + "e" * 64
OTHER_IMG = "sha256:" + "f" * 64
APP, LIB, TOOL = "/opt/app/server", "/usr/lib/libx.so.1", "/usr/bin/tool"
PURL = "pkg:deb/debian/libx@1.0?arch=amd64"
BUILD, OTHER_BUILD = "ab" * 20, "cd" * 20


def _at(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC)


def _delta(image: str, module: str, fn: str, day: int, count: int, purl: str, build: str) -> HotSymbolDelta:
    start = T0 + day * DAY
    key = HotSymbolKey(image, module, fn, EvidenceKind.ON_STACK)
    return HotSymbolDelta(key, start, count, start + S, start + 2 * S, purl=purl, build_id=build)


@pytest.fixture
def url(url: str) -> str:  # tests/integration/conftest.py's store (SQLite, PostgreSQL), seeded here
    u = url
    deltas = []
    for i in range(60):
        module, purl, build = [(APP, "", BUILD), (LIB, PURL, OTHER_BUILD), (TOOL, "", OTHER_BUILD)][i % 3]
        for day in range(i % 5, 10, 1 + i % 4):  # each offset on its own days, some on one day only
            deltas.append(_delta(IMG, module, f"0x{4096 + 16 * i:x}", day, 1 + (i * day) % 7, purl, build))
    deltas += [
        _delta(OTHER_IMG, APP, "0x1000", 5, 9, "", BUILD),  # another image
        _delta(IMG, APP, "main", 5, 9, "", BUILD),  # a named frame
        _delta(IMG, "[anon]", "0x7f00", 5, 9, "", ""),  # no file
    ]
    with open_store(u) as store:
        store.write(deltas, [])
    engine = create_store_engine(u)
    w = hot_symbol_windows.c
    try:
        with engine.begin() as conn:
            # retention took every window of some rows, the oldest windows of others (their cumulative
            # row keeps first..last), and a zero-count window is kept for one
            old = sa.delete(hot_symbol_windows).where(w.window_start < _at(T0 + 3 * DAY))
            conn.execute(old.where(sa.func.substr(w.function_name, 1, 5).in_(["0x100", "0x101", "0x104"])))
            conn.execute(
                sa.delete(hot_symbol_windows).where(w.function_name.in_(["0x1020", "0x1050", "0x1080"]))
            )
            zero = sa.update(hot_symbol_windows).where(
                w.function_name == "0x1090", w.window_start == _at(T0 + 6 * DAY)
            )
            conn.execute(zero.values(invocation_count=0))
            # a row whose count is 0 is no call at all
            conn.execute(
                sa.update(hot_symbols)
                .where(hot_symbols.c.function_name == "0x10a0")
                .values(invocation_count=0)
            )
    finally:
        engine.dispose()
    return u


def _row_by_row(
    conn: sa.Connection, *, purl: PurlQuery | None, build: str, since, until
) -> list[UnnamedCode]:  # type: ignore[no-untyped-def]
    """The answer as store/unnamed.py read it before (rows into Python, their windows by key)."""
    c = hot_symbols.c
    where = [
        c.image_digest == IMG,
        c.evidence_kind == EvidenceKind.ON_STACK.value,
        sa.func.substr(c.function_name, 1, 2) == "0x",
        sa.func.substr(c.module, 1, 1) == "/",
        c.invocation_count > 0,
    ]
    if purl is not None:
        where.append(c.purl.in_([*queries.matching_purls(conn, image=IMG, purl=purl), ""]))
    if build:
        where.append(c.build_id == build)
    rows = queries.rows_where(conn, *where, since=since, until=until)
    found = {(r.module, r.function_name) for r in rows}
    rest = [r for r in queries.rows_where(conn, *where) if (r.module, r.function_name) not in found]
    rows += history_incomplete(conn, rest, since=since, until=until)
    by: dict[str, list[int]] = {}
    for r in rows:
        got = by.setdefault(r.module, [0, 0])
        got[0] += 1
        got[1] += r.invocation_count
    return sorted((UnnamedCode(m, n, k) for m, (n, k) in by.items()), key=lambda u: (-u.calls, u.module))


PERIODS = [
    (2, None),  # since the third day: before it, history removed for some
    (None, 4),
    (3, 6),
    (0, 0),
    (2.5, 2.6),  # between two windows: no window meets it
    (12, None),  # after every call
    (-5, -1),  # before every call
    (6, 6),  # the one day whose only window of 0x1090 holds no call: that row is not found in it
]


@pytest.mark.parametrize(("since", "until"), PERIODS)
def test_unnamed_code_in_a_period_is_what_the_rows_said(
    url: str, since: float | None, until: float | None
) -> None:
    s = _at(T0 + int(since * DAY)) if since is not None else None
    u = _at(T0 + int(until * DAY) + 3 * S) if until is not None else None
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            wants = []
            for purl, fn in [
                (None, None),
                (PurlQuery.parse("pkg:deb/debian/libx"), None),
                (None, function_query(f"{OTHER_BUILD}:+0x1010")),
            ]:
                got = unnamed_code(conn, image=IMG, function=fn, purl=purl, since=s, until=u)
                want = _row_by_row(conn, purl=purl, build=fn.build_id if fn else "", since=s, until=u)
                assert got == want, (purl, fn)
                wants.append(want)
            if since == 2 and until is None:  # the data has every case in it
                assert [{x.module for x in want} for want in wants] == [
                    {APP, LIB, TOOL},
                    {APP, LIB, TOOL},
                    {LIB, TOOL},
                ]
    finally:
        engine.dispose()
