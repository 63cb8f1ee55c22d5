"""Code that ran in an image under no name: what a "not observed" cannot rest on.

A user stack frame the canonicalizer could not name (a stripped file without a debug file, a
file over its parse budget or unreadable, docs/symbolization.md) and for which the event source
gave no symbol either is counted under its file offset: an ``on_stack`` row whose function is
``0x<offset>`` (hotsymbols/aggregate.py). Such a row says that code of that file ran, and not
which function it was. A function asked about and not found by name may be exactly that code,
so ``query observed`` and the VEX decision answer *unknown* / *under investigation* while the
image (or, when the question names one, the package or the build) has such rows in the period,
naming the files. A package's scope takes in files of no package (purl ``""``): they may be its
files. A function ID's build scopes it, also an unresolved ID ``<build-id>:+0x<offset>``: a
stack frame is an address inside its function, so the function starting at that offset (how
static analysis names a stripped function) is stored under other offsets. Frames outside any
file (JIT code, anonymous memory) are not counted: no symbol table could name them, and no
package or build is theirs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store import queries
from stellaops_runtime.store.exact_sum import exact_sum
from stellaops_runtime.store.function_refs import FunctionQuery
from stellaops_runtime.store.queries import SymbolRow
from stellaops_runtime.store.refs import PurlQuery
from stellaops_runtime.store.same_image import of_image
from stellaops_runtime.store.schema import hot_symbol_windows, hot_symbols

_ON_STACK = EvidenceKind.ON_STACK.value


@dataclass(frozen=True, slots=True)
class UnnamedCode:
    """One file's frames that ran without a name: how many distinct offsets, how many times."""

    module: str
    offsets: int
    calls: int

    def describe(self) -> str:
        plural = "s" if self.offsets != 1 else ""
        return f"{self.module} ({self.offsets} offset{plural}, {self.calls} on stacks)"

    def to_json(self) -> dict[str, Any]:
        return {"module": self.module, "offsets": self.offsets, "calls": self.calls}


def describe(found: list[UnnamedCode], limit: int = 5) -> str:
    """The files, largest first, at most ``limit`` of them named."""
    shown = ", ".join(u.describe() for u in found[:limit])
    more = len(found) - limit
    return shown + (f" and {more} more file{'s' if more != 1 else ''}" if more > 0 else "")


def unnamed_code(
    conn: sa.Connection,
    *,
    image: str,
    function: FunctionQuery | None = None,
    purl: PurlQuery | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[UnnamedCode]:
    """The files of ``image`` with frames that ran under no name, most calls first.

    Narrowed to the package ``purl`` asks about (its stored purls), to the build a function-ID
    question names, and with ``since``/``until`` to frames seen in that period."""
    c = hot_symbols.c
    where = [
        of_image(conn, c.image_digest, image),
        c.evidence_kind == _ON_STACK,
        sa.func.substr(c.function_name, 1, 2) == "0x",
        sa.func.substr(c.module, 1, 1) == "/",  # a file: not JIT code or anonymous memory
        c.invocation_count > 0,
    ]
    if purl is not None:
        found = queries.matching_purls(conn, image=image, purl=purl)
        if not found:
            return []
        # and files of no package: which package's code they hold is what attribution could not
        # tell (doubts.unattributed), so their unnamed frames may be the package's function too
        where.append(c.purl.in_([*found, ""]))
    if function is not None and function.is_function_id:
        # "<build-id>:+0x<offset>" too: a sampled frame is a return address inside its function,
        # so the function that starts at (or holds) that offset ran as the build's other offsets
        where.append(c.build_id == function.build_id)
    if since is None and until is None:  # summed by the database: a stripped file has 100,000s of rows
        stmt = sa.select(c.module, sa.func.count(), exact_sum(c.invocation_count)).where(*where)
        found_all = [
            UnnamedCode(m, int(n), int(calls)) for m, n, calls in conn.execute(stmt.group_by(c.module))
        ]
        return sorted(found_all, key=lambda u: (-u.calls, u.module))
    return _in_period(conn, image, where, since=since, until=until)


def _in_period(
    conn: sa.Connection,
    image: str,
    where: list[sa.ColumnElement[bool]],
    *,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> list[UnnamedCode]:
    """:func:`unnamed_code` in a period, summed per file by the database in one statement.

    A row counts with its calls in the windows that meet the period (``queries.rows_where`` with
    the period); a row none of whose windows does, with all its calls when its first..last meets
    the period and its windows no longer hold all its calls (:func:`history_incomplete`). Read row
    by row, 100,000s of rows took 21 s (a SymbolRow each, twice, and their windows 1,000 keys at a
    time); tests/integration/test_unnamed_period_sum.py holds this to that reading's answer."""
    c, w = hot_symbols.c, hot_symbol_windows.c
    meets = [w.invocation_count > 0]
    if since is not None:
        meets.append(w.last_seen >= since)
    if until is not None:
        meets.append(w.first_seen <= until)
    in_period = sa.and_(*meets)
    per_key = (
        sa.select(
            w.module,
            w.function_name,
            # one row's windows: their sums are at most its own count (int8), summed again below
            sa.func.sum(sa.case((in_period, w.invocation_count), else_=0)).label("calls"),
            sa.func.count(sa.case((in_period, 1))).label("windows"),
            sa.func.sum(w.invocation_count).label("kept"),
        )
        .where(  # the windows of the rows ``where`` can take: the image's unnamed frames in files
            of_image(conn, w.image_digest, image),
            w.evidence_kind == _ON_STACK,
            sa.func.substr(w.function_name, 1, 2) == "0x",
            sa.func.substr(w.module, 1, 1) == "/",
        )
        .group_by(w.module, w.function_name)
        .subquery()
    )
    k = per_key.c
    found = sa.func.coalesce(k.windows, 0) > 0
    row_meets = [c.last_seen >= since] if since is not None else []
    row_meets += [c.first_seen <= until] if until is not None else []
    lost = sa.and_(*row_meets, sa.func.coalesce(k.kept, 0) < c.invocation_count)
    calls = sa.case((found, k.calls), else_=c.invocation_count)
    stmt = (
        sa.select(c.module, sa.func.count(), exact_sum(calls))
        .select_from(
            hot_symbols.outerjoin(per_key, sa.and_(k.module == c.module, k.function_name == c.function_name))
        )
        .where(*where, sa.or_(found, lost))
        .group_by(c.module)
    )
    out = [UnnamedCode(m, int(n), int(calls)) for m, n, calls in conn.execute(stmt)]
    return sorted(out, key=lambda u: (-u.calls, u.module))


def _key(r: SymbolRow) -> tuple[str, str, str, str]:
    return (r.image_digest, r.module, r.function_name, r.evidence_kind)


def history_incomplete(
    conn: sa.Connection, rows: list[SymbolRow], *, since: dt.datetime | None, until: dt.datetime | None
) -> list[SymbolRow]:
    """Of the cumulative ``rows``, those whose first..last call meets the period while their
    per-window history no longer holds all their calls (retention removed the oldest windows):
    whether one of their calls fell in the period cannot be told."""
    meet = [
        r
        for r in rows
        if (since is None or r.last_seen >= since) and (until is None or r.first_seen <= until)
    ]
    if not meet:
        return []
    w = hot_symbol_windows.c
    cols = (w.image_digest, w.module, w.function_name, w.evidence_kind)
    keys = [_key(r) for r in meet]
    stmt = sa.select(*cols, exact_sum(w.invocation_count)).group_by(*cols)
    kept: dict[tuple[Any, ...], int] = {}
    for part in queries.chunks(keys):  # 100,000s of unnamed rows: no statement binds that many
        kept |= {tuple(r[:4]): int(r[4] or 0) for r in conn.execute(stmt.where(sa.tuple_(*cols).in_(part)))}
    return [r for r, k in zip(meet, keys, strict=True) if kept.get(k, 0) < r.invocation_count]
