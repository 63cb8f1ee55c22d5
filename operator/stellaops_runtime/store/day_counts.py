"""Calls and watched days of one function per UTC day, as the store answers them (split from
store/queries.py, which had grown past 400 lines).

``calls_per_day`` and ``observed_days_without_calls`` count by each window's start. The evidence
(evidence/store_facts.py) counts days its own way (a window across midnight, the question's
day); these are the store's plain answers, which its tests hold to (test_store.py,
test_store_retention.py, the migration tests). Both take a node's open last day out
(store/coverage_open.py ``open_days``: its agent may be down since its latest record).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.contracts.posture import FUNCTION_VISIBLE
from stellaops_runtime.store.coverage_open import open_days
from stellaops_runtime.store.exact_sum import exact_sum
from stellaops_runtime.store.queries import FILE_EVIDENCE
from stellaops_runtime.store.schema import hot_symbol_windows, observation_windows, utc_date
from stellaops_runtime.store.watched_sql import (
    gap_days,
    has_gap_columns,
    has_posture_columns,
    is_coverage,
    not_after,
    unseen_days,
    window_level,
)


def _function_filter(*, image: str, function: str, module: str | None) -> list[sa.ColumnElement[bool]]:
    c = hot_symbol_windows.c
    where = [c.image_digest == image, c.function_name == function, c.evidence_kind.not_in(FILE_EVIDENCE)]
    if module is not None:
        where.append(c.module == module)
    return where


def calls_per_day(
    conn: sa.Connection,
    *,
    image: str,
    function: str,
    days: int,
    module: str | None = None,
    until: dt.date | None = None,
) -> list[tuple[dt.date, int]]:
    """Invocations of ``function`` in ``image`` per UTC day, for the ``days`` days ending ``until``.

    ``until`` defaults to today (UTC). Only days with calls are listed, oldest
    first. Counts sum every module and evidence kind of the function unless
    ``module`` narrows it.
    """
    last = until or dt.datetime.now(dt.UTC).date()
    first = last - dt.timedelta(days=days - 1)
    start = dt.datetime.combine(first, dt.time(), dt.UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.UTC)
    c = hot_symbol_windows.c
    day = utc_date(c.window_start).label("day")
    stmt = (
        sa.select(day, exact_sum(c.invocation_count).label("calls"))
        .where(*_function_filter(image=image, function=function, module=module))
        .where(c.window_start >= start, c.window_start < end)
        .group_by(day)
        .order_by(day)
    )
    return [(_as_date(r.day), int(r.calls)) for r in conn.execute(stmt)]


def observed_days_without_calls(
    conn: sa.Connection,
    *,
    image: str,
    function: str,
    module: str | None = None,
    today: dt.date | None = None,
) -> int:
    """Distinct UTC days ``image`` was under observation on which ``function`` had no invocation,
    up to ``today`` (UTC; the wall clock's when not given: watched_sql.py ``not_after``).

    A day counts only when a window of it was watched at a posture that can
    see function calls (EbpfDeep or more: contracts/posture.py; stores from
    before migration 0003 record no posture, so none of their days count), and
    never when the image also ran that day where its calls could not be seen
    (:func:`unseen_days`, store/coverage_unseen.py) or a gap touches it that day
    (:func:`gap_days`; migration 0005), nor the day of a node's latest record once the question
    (``today``'s end, or now when earlier) is past its grace (store/coverage_open.py ``open_days``).
    """
    o = observation_windows.c
    w = hot_symbol_windows.c
    obs_day = utc_date(o.window_start)
    called_days = (
        sa.select(utc_date(w.window_start))
        .where(*_function_filter(image=image, function=function, module=module))
        .where(w.invocation_count > 0)
    )
    if not has_posture_columns(conn):
        return 0
    now = dt.datetime.now(dt.UTC)
    day = today or now.date()
    where = [
        o.image_digest == image,
        is_coverage(conn, observation_windows),
        window_level(conn, observation_windows) >= FUNCTION_VISIBLE.rank,
        obs_day.not_in(called_days),
        obs_day.not_in(unseen_days(conn, image)),
        not_after(o.window_start, day),
    ]
    if has_gap_columns(conn):
        where.append(obs_day.not_in(gap_days(conn, image)))
    days = {_as_date(d) for (d,) in conn.execute(sa.select(obs_day).where(*where).distinct())}
    return len(days - open_days(conn, image, day=day))  # now: the store's clock


def _as_date(value: Any) -> dt.date:
    """SQLite returns date() as text; PostgreSQL as a date."""
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))
