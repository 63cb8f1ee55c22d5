"""Read from the store what the reachability assessment needs for one (image, package, function).

Everything comes from recorded rows: calls from ``hot_symbols`` and their
per-window history, watched days from ``observation_windows`` (UTC days with
a window at a posture that can see function calls, minus days on which the
image also ran where its calls could not be seen, store/coverage_unseen.py,
and days with a gap that touches the image, store/coverage_gaps.py), the
package from the stored purls, and the
calls that may be the function's where the question does not find them
(:mod:`stellaops_runtime.evidence.doubts`). The one clock is the question's UTC day
(``today``, read once by :func:`observe` unless handed in: the earlier of the asker's clock and
the store's, as the witness bridge asks on a node whose clock may run ahead): a window stamped after it (a
node's clock ahead) is kept, its calls count, but its day has not happened and is never a
watched day (store/watched_sql.py ``not_after``). The pure decision is
:mod:`stellaops_runtime.evidence.reachability`.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.contracts.posture import FUNCTION_VISIBLE
from stellaops_runtime.evidence import doubts
from stellaops_runtime.evidence.doubts import Doubt
from stellaops_runtime.evidence.reachability import Facts
from stellaops_runtime.store import coverage, queries
from stellaops_runtime.store.coverage import Coverage, Gap
from stellaops_runtime.store.coverage_open import OpenMemo, open_days, open_gaps
from stellaops_runtime.store.coverage_unseen import Unseen
from stellaops_runtime.store.exact_sum import exact_sum
from stellaops_runtime.store.function_refs import FunctionQuery
from stellaops_runtime.store.queries import SymbolRow
from stellaops_runtime.store.refs import PurlQuery
from stellaops_runtime.store.schema import hot_symbol_windows, observation_windows, utc_date
from stellaops_runtime.store.unnamed import UnnamedCode, unnamed_code
from stellaops_runtime.store.watched_sql import (
    gap_days,
    has_gap_columns,
    has_posture_columns,
    is_coverage,
    not_after,
    store_day,
    touches_image,
    unseen_days,
    window_level,
)


@dataclass(frozen=True, slots=True)
class Observation:
    """Facts plus what the Evidence document shows: the rows, the watched coverage, the gaps."""

    facts: Facts
    watched: frozenset[dt.date]  # the gap-free UTC days at a posture that can see calls
    rows: list[SymbolRow]
    purls: list[str]
    coverage: Coverage | None  # windows at a posture that can see calls
    gaps: list[Gap]
    unnamed: list[UnnamedCode] = field(default_factory=list)  # the package's code under no name
    doubts: list[Doubt] = field(default_factory=list)  # calls that may be it (evidence/doubts.py)
    unseen: list[Unseen] = field(default_factory=list)  # runs that could not see calls (coverage_unseen.py)


def _as_date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def _calls_per_day(
    conn: sa.Connection, image: str, rows: list[SymbolRow]
) -> tuple[dict[dt.date, int], list[tuple[dt.date, dt.date, int]]]:
    """Calls per UTC day, at least: summed per evidence kind, then the largest kind (one call seen
    two ways, invoked and on a stack, counts once); and the spans of days of windows whose calls
    cross midnight, each with the calls its busiest day had at least.

    A window counts toward a day only when its first and last call lie in that day: one that
    crosses midnight (``aggregationWindowSeconds`` that does not divide a day) may hold any split
    of its calls between the days, but each day it spans had calls, and the calls of those days
    (its own and the windows' within them) put at least their share on one of them: 2,500 calls
    across one midnight are 1,250 on a day at least. A last call stamped before the first (a
    skewed or hostile row) spans the same days.
    """
    if not rows:
        return {}, []
    w = hot_symbol_windows.c
    # Each row's own key, its digest too (the image's, or one paired with it: store/same_image.py):
    # never the rows' digests crossed with their keys, which reaches rows the answer left out.
    keys = sorted({(r.image_digest, r.module, r.function_name, r.evidence_kind) for r in rows})
    first, last = utc_date(w.first_seen).label("first"), utc_date(w.last_seen).label("last")
    stmt = (
        sa.select(first, last, w.evidence_kind, exact_sum(w.invocation_count).label("calls"))
        .where(
            sa.tuple_(w.image_digest, w.module, w.function_name, w.evidence_kind).in_(keys),
            w.invocation_count > 0,
        )
        .group_by(first, last, w.evidence_kind)
    )
    by_kind: dict[tuple[dt.date, str], int] = defaultdict(int)
    spanning: list[tuple[dt.date, dt.date, str, int]] = []
    for r in conn.execute(stmt):
        d1, d2 = sorted((_as_date(r.first), _as_date(r.last)))
        if d1 == d2:
            by_kind[(d1, r.evidence_kind)] += int(r.calls)
        else:
            spanning.append((d1, d2, r.evidence_kind, int(r.calls)))
    out: dict[dt.date, int] = defaultdict(int)
    for (d, _kind), n in by_kind.items():
        out[d] = max(out[d], n)
    return dict(out), _spread(by_kind, spanning)


def _spread(
    by_kind: dict[tuple[dt.date, str], int], spanning: list[tuple[dt.date, dt.date, str, int]]
) -> list[tuple[dt.date, dt.date, int]]:
    """Each spanning window's days and the calls one of them had at least: its own and those of the
    windows of its kind within its days, shared out over the days (prefix sums: a store of many
    windows costs n log n, not n squared)."""
    days: dict[str, list[dt.date]] = defaultdict(list)
    sums: dict[str, list[int]] = defaultdict(lambda: [0])
    for (d, kind), n in sorted(by_kind.items()):
        days[kind].append(d)
        sums[kind].append(sums[kind][-1] + n)
    out = []
    for d1, d2, kind, n in spanning:
        ds, cs = days[kind], sums[kind]
        within = cs[bisect.bisect_right(ds, d2)] - cs[bisect.bisect_left(ds, d1)]
        out.append((d1, d2, -(-(n + within) // ((d2 - d1).days + 1))))
    return out


def _covered(days: set[dt.date], spans: list[tuple[dt.date, dt.date, int]]) -> set[dt.date]:
    """The ``days`` that lie in one of the ``spans`` (merged, then each day found by bisection)."""
    merged: list[list[dt.date]] = []
    for a, b, _ in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    starts = [a for a, _ in merged]
    return {d for d in days if (i := bisect.bisect_right(starts, d) - 1) >= 0 and d <= merged[i][1]}


def _watched_days(conn: sa.Connection, image: str, today: dt.date | None = None) -> set[dt.date]:
    """The watched days alone (:func:`_watched_and_unseen`)."""
    return _watched_and_unseen(conn, image, today or _question_day(conn))[0]


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _question_day(conn: sa.Connection) -> dt.date:
    """The question's UTC day: the earlier of the asker's clock and the store's (watched_sql.py
    ``store_day``), each read once; a clock ahead on either side adds no day."""
    mine, theirs = _today(), store_day(conn)
    return mine if theirs is None else min(mine, theirs)


def _watched_and_unseen(
    conn: sa.Connection, image: str, today: dt.date, memo: OpenMemo | None = None
) -> tuple[set[dt.date], set[dt.date]]:
    """UTC days up to ``today`` with a window of ``image`` at a posture that can see calls, no run of
    it that could not (``unseen_days``: a node where none of its windows that day could, or where a
    container of it showed no call all day while another did; store/coverage_unseen.py) and no gap
    that day; and the gap-free days such a run took out."""
    if not has_posture_columns(conn):
        return set(), set()
    o = observation_windows.c
    day = utc_date(o.window_start)
    where = [
        o.image_digest == image,
        is_coverage(conn, observation_windows),
        window_level(conn, observation_windows) >= FUNCTION_VISIBLE.rank,
        not_after(o.window_start, today),
    ]
    if has_gap_columns(conn):
        where.append(day.not_in(gap_days(conn, image)))
    days = {_as_date(d) for (d,) in conn.execute(sa.select(day).where(*where).distinct())}
    if has_gap_columns(conn):
        days -= _gap_days_after_midnight(conn, image)
    days -= open_days(conn, image, day=today, memo=memo)  # the day a node's watched time ends: may be down
    unseen = {_as_date(d) for (d,) in conn.execute(unseen_days(conn, image))}
    return days - unseen, days & unseen


def _gap_days_after_midnight(conn: sa.Connection, image: str) -> set[dt.date]:
    """UTC days a gap reaches past its window's first day: with ``aggregationWindowSeconds`` that
    does not divide a day (5000 s), a window starts before midnight and ends after it, and a gap
    at 00:10 is on a row of the day before. ``gap_days`` gives that row's day; the day the events
    were dropped on is this one. A gap's end is exclusive (a window's end): one ending at
    midnight does not reach the next day. Few rows: at most one window a day crosses midnight."""
    g = observation_windows.alias("gap")
    stmt = (
        sa.select(g.c.gap_end)
        .distinct()
        .where(
            g.c.gap_end.is_not(None),
            touches_image(conn, g, image),
            utc_date(g.c.gap_end) != utc_date(g.c.window_start),
        )
    )
    ends = (_as_utc(end) for (end,) in conn.execute(stmt))
    return {(end - dt.timedelta(microseconds=1)).date() for end in ends}


def _as_utc(value: Any) -> dt.datetime:
    if isinstance(value, str):  # a raw SQLite value
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def observe(
    conn: sa.Connection,
    *,
    image: str,
    purl: PurlQuery,
    function: FunctionQuery,
    exploit_path: bool = False,
    today: dt.date | None = None,
    open_memo: OpenMemo | None = None,
) -> Observation:
    """Everything the store holds about ``function`` of ``purl`` in ``image``; days after ``today``
    (the question's UTC day; when not given, the earlier of the wall clock's and the store's) are
    no watched days. ``open_memo``: the open gaps (store/coverage_open.py) computed once for all the
    functions asked with it (a vex run), at the store's clock of the first; each call's own else."""
    open_memo = {} if open_memo is None else open_memo
    purls = queries.matching_purls(conn, image=image, purl=purl)
    rows = queries.observed(conn, image=image, function=function, purl=purl) if purls else []
    rows = [r for r in rows if r.evidence_kind not in queries.FILE_EVIDENCE and r.invocation_count > 0]
    by_kind: dict[str, int] = defaultdict(int)
    for r in rows:
        by_kind[r.evidence_kind] += r.invocation_count
    per_day, spans = _calls_per_day(conn, image, rows)
    day = today or _question_day(conn)
    watched, taken = _watched_and_unseen(conn, image, day, open_memo)
    called = {d for d, n in per_day.items() if n > 0} | _covered(watched, spans)
    nameless = unnamed_code(conn, image=image, function=function, purl=purl) if purls else []
    found = [] if rows else doubts.doubts(conn, image=image, function=function, purl=purl)
    facts = Facts(
        invocations=max(by_kind.values(), default=0),
        max_calls_in_a_day=max([*per_day.values(), *(n for _, _, n in spans)], default=0),
        watched_days=len(watched),
        days_without_calls=len(watched - called),
        # a row of its code (a file mapped, a function seen), never a fact's (a tail, a listed JAR)
        package_loaded=bool(purls)
        and bool(queries.matching_purls(conn, image=image, purl=purl, facts=False)),
        exploit_path=exploit_path,
        unnamed_calls=sum(u.calls for u in nameless),
        doubts=tuple(d.why for d in found),
        unseen_days=len(taken),
    )
    groups = [g for g in coverage.image_windows(conn, image=image) if g.sees_functions]
    return Observation(
        facts=facts,
        watched=frozenset(watched),
        rows=rows,
        purls=purls,
        coverage=coverage.summarize(groups),
        gaps=[
            *coverage.image_gaps(conn, image=image),
            *open_gaps(conn, image=image, day=day, memo=open_memo),
        ],
        unnamed=nameless,
        doubts=found,
        unseen=coverage.image_unseen(conn, image=image),
    )
