"""Which rows say an image was watched, and which gaps touch it: the SQL every answer shares.

Split from :mod:`stellaops_runtime.store.queries` (the coverage rule, the unseen-node rule and
the gap rule that ``query observed``, days without calls, the evidence's watched days, VEX and
witnesses all rest on, so that they cannot disagree). Pure statement builders over a connection's dialect and
schema; nothing here runs a query but the column checks.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import NODE_WIDE
from stellaops_runtime.contracts.posture import FUNCTION_VISIBLE, LEGACY_TRUSTED, Posture
from stellaops_runtime.store.same_image import of_image
from stellaops_runtime.store.schema import (
    OBSERVATION_GAP_COLUMNS,
    OBSERVATION_POSTURE_COLUMNS,
    OBSERVATION_RULE_COLUMNS,
    SCHEMA,
    observation_windows,
    utc_date,
)


def has_posture_columns(conn: sa.Connection) -> bool:
    """Whether ``observation_windows`` has the columns of migration 0003 (posture, length, source)."""
    schema = SCHEMA if conn.dialect.name == "postgresql" else None
    have = {c["name"] for c in sa.inspect(conn).get_columns(observation_windows.name, schema=schema)}
    return all(name in have for name in OBSERVATION_POSTURE_COLUMNS)


def has_rule_column(conn: sa.Connection) -> bool:
    """Whether ``observation_windows`` has the column of migration 0009 (posture by today's rule)."""
    schema = SCHEMA if conn.dialect.name == "postgresql" else None
    have = {c["name"] for c in sa.inspect(conn).get_columns(observation_windows.name, schema=schema)}
    return all(name in have for name in OBSERVATION_RULE_COLUMNS)


def window_level(conn: sa.Connection, table: sa.FromClause) -> sa.ColumnElement[Any]:
    """A window's posture rank as answers may use it (NULL: unknown); needs the 0003 columns.

    ``posture_level`` alone is trusted up to ActiveTracing (:data:`LEGACY_TRUSTED`):
    agents before migration 0009 wrote 3 and 4 for uprobe and USDT events, which
    show no function but the probed one, and the store cannot tell whether such a
    window's events carried user stacks. ``evidenced_level`` (0009) is written by
    agents of today's rule only (an older agent's upsert leaves it alone), so a
    window reads EbpfDeep or more only when such an agent's events evidenced it.
    Every answer that rests on a window's posture (``query observed``, days without
    calls, the evidence's watched days, VEX) reads it through this one expression.
    """
    t = table.c
    # Inline, not bound: the same text in SELECT and GROUP BY (store/coverage.py groups by it).
    cap: sa.ColumnElement[int] = sa.literal_column(str(LEGACY_TRUSTED.rank))
    legacy = sa.case((t.posture_level > cap, cap), else_=t.posture_level)
    if not has_rule_column(conn):
        return legacy
    ev = t.evidenced_level
    return sa.case(
        (ev.is_(None), legacy),
        (sa.or_(legacy.is_(None), ev >= legacy), ev),
        else_=legacy,
    )


def is_coverage(conn: sa.Connection, table: sa.FromClause) -> sa.ColumnElement[bool]:
    """Rows that say an image was watched in their window.

    A row with events; or one with no events but a posture (agent/lifecycle_part.py: the
    image's container ran here through a window the source was connected). Gap-only and
    node-wide rows (no events, no posture, migration 0005) are not coverage. Every answer
    that rests on "the image was watched" (``query observed``, days without calls, the
    evidence's watched days) uses this one rule.
    """
    t = table.c
    if not has_posture_columns(conn):
        return t.event_count > 0
    return sa.or_(t.event_count > 0, sa.and_(t.posture_level.is_not(None), t.image_digest != ""))


def watched_node_days(conn: sa.Connection, image: str) -> sa.Select[Any]:
    """(node, UTC day) of every day on which ``image`` was watched on that node (``is_coverage``).

    Not correlated with the outer query, and filtered by ``image_digest``: on Citus (tables
    distributed by ``image_digest``, docs/operations.md) it runs on the one shard of the image.
    """
    seen = observation_windows.alias("seen")
    return sa.select(seen.c.node_name, utc_date(seen.c.window_start)).where(
        of_image(conn, seen.c.image_digest, image), is_coverage(conn, seen)
    )


def touches_image(conn: sa.Connection, table: sa.FromClause, image: str) -> sa.ColumnElement[bool]:
    """Gap rows of ``table`` that touch ``image``: its own, and the node-wide ones of any UTC day
    on which it was watched on that node (not only of the windows in which it had events: the
    events lost may be exactly its events of a window, which then has no row of it). A gap row
    reaches its window's start day and its gap's end day: a window that does not divide a day
    (5000 s, written before the configuration refused it) crosses midnight, and its gap at 00:10
    touches an image first watched on that node after midnight (a gap ending at midnight reaches
    the next day here, the safe side; the watched days leave that day in: evidence/store_facts.py)."""
    t = table.c
    watched = watched_node_days(conn, image)
    node_wide = sa.and_(
        t.image_digest == NODE_WIDE,
        sa.or_(
            sa.tuple_(t.node_name, utc_date(t.window_start)).in_(watched),
            sa.tuple_(t.node_name, utc_date(t.gap_end)).in_(watched),
        ),
    )
    return sa.or_(of_image(conn, t.image_digest, image), node_wide)


def gap_days(conn: sa.Connection, image: str) -> sa.Select[Any]:
    """UTC days with a gap that touches ``image`` (:func:`touches_image`)."""
    g = observation_windows.alias("gap")
    where = [g.c.gap_end.is_not(None), touches_image(conn, g, image)]
    return sa.select(utc_date(g.c.window_start)).where(*where)


def not_after(start: sa.ColumnElement[Any], today: dt.date) -> sa.ColumnElement[bool]:
    """Windows that start on ``today`` (UTC) or before: a day after the question's has not happened,
    so a window stamped then (a node's clock ahead; the store keeps it, its calls count) is never a
    watched day (tests/integration/test_evidence_future_days.py)."""
    return start < dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.UTC)


def store_day(conn: sa.Connection) -> dt.date | None:
    """The store's UTC day: the PostgreSQL server's clock (the transaction's ``now()``), SQLite's the
    machine's own. The evidence takes the earlier of it and the asker's: the agent's witness bridge
    asks on its node, whose clock may be the one running ahead
    (tests/integration/test_evidence_question_clock_ahead.py). None: not readable as a date."""
    if conn.dialect.name == "postgresql":
        value = conn.execute(sa.text("SELECT (now() AT TIME ZONE 'UTC')::date")).scalar()
    else:
        value = conn.execute(sa.text("SELECT date('now')")).scalar()
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value)
        except ValueError:
            return None
    return value if isinstance(value, dt.date) else None


def has_gap_columns(conn: sa.Connection) -> bool:
    """Whether ``observation_windows`` has the columns of migration 0005 (observation gaps)."""
    schema = SCHEMA if conn.dialect.name == "postgresql" else None
    have = {c["name"] for c in sa.inspect(conn).get_columns(observation_windows.name, schema=schema)}
    return all(name in have for name in OBSERVATION_GAP_COLUMNS)


_EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)


def period_passes(
    conn: sa.Connection, base: list[sa.ColumnElement[bool]], since: dt.datetime | None
) -> list[list[sa.ColumnElement[bool]]]:
    """``base`` narrowed to the windows that overlap a period starting ``since`` (needs the 0003
    columns): one list of conditions per window length, as a window [start, start + seconds)
    overlaps the period when start > since - seconds; ``[base]`` without ``since``."""
    if since is None:
        return [base]
    o = observation_windows.c
    lengths = conn.execute(sa.select(o.window_seconds).where(*base).distinct()).scalars().all()
    passes = []
    for s in lengths:
        same = o.window_seconds.is_(None) if s is None else o.window_seconds == s
        back = min(dt.timedelta(seconds=s or 0), since - _EARLIEST)  # --since 0001-01-01
        passes.append([*base, same, o.window_start > since - back])
    return passes


def unseen_days(conn: sa.Connection, image: str) -> sa.Select[Any]:
    """UTC days on which ``image`` ran on a node where none of its windows that day could see calls
    (needs the 0003 columns): another node at ActiveTracing, one where it only ran (lifecycle rows:
    no container of it sent an event), one whose windows a silent container capped at Passive all
    day, one of unknown posture; or where one of its containers ran that showed no call all that
    day while another did (:func:`unwatched_windows`). Such a day is no watched day, whatever
    another window saw (store/coverage_unseen.py). The mark counts on any row of the image: it may
    reach the store on a restate row alone (no events, no posture: no coverage row), its window's
    own row dropped by the agent's outage bound."""
    u = observation_windows.alias("unseen")
    day = utc_date(u.c.window_start).label("day")
    if not has_rule_column(conn):
        return (
            sa.select(day)
            .where(of_image(conn, u.c.image_digest, image), is_coverage(conn, u))
            .group_by(u.c.node_name, day)
            .having(sa.func.max(seen_level(conn, u)) < FUNCTION_VISIBLE.rank)
        )
    blind = sa.func.max(sa.case((is_coverage(conn, u), seen_level(conn, u)))) < FUNCTION_VISIBLE.rank
    return (
        sa.select(day)
        .where(of_image(conn, u.c.image_digest, image))
        .group_by(u.c.node_name, day)
        .having(sa.or_(blind, unwatched_windows(conn, u) > 0))
    )


def has_writer_column(conn: sa.Connection) -> bool:
    """Whether ``observation_windows`` has the column of migration 0013 (the mark's writer)."""
    schema = SCHEMA if conn.dialect.name == "postgresql" else None
    have = {c["name"] for c in sa.inspect(conn).get_columns(observation_windows.name, schema=schema)}
    return "marked_by" in have


def unwatched_windows(conn: sa.Connection, table: sa.FromClause) -> sa.ColumnElement[Any]:
    """Aggregate: how many of the rows have ``evidenced_level`` None's rank (0), which only agents
    that judge each container over its UTC day write (hotsymbols/day_calls.py): a container of the
    image ran in the window and showed no call that day on the node while another container of it
    did. Needs the 0009 column; no row of an older agent holds 0 (no event evidences None).

    With the 0013 column, a row that names a mark's writer counts too, whatever its level: the
    upserts of 0013 set ``marked_by`` NULL with every clear, so a writer named beside no mark is
    a mark an agent before 0013 cleared (its restate knows no writer: a rollback of the agent
    image), and the day of the silent container it was for stays unwatched
    (tests/integration/test_marks_old_agent_rollout.py)."""
    mark: sa.ColumnElement[int] = sa.literal_column(str(Posture.NONE.rank))
    marked = table.c.evidenced_level == mark
    if has_writer_column(conn):
        marked = sa.or_(marked, table.c.marked_by.is_not(None))
    return sa.func.sum(sa.case((marked, 1), else_=0))


def seen_level(conn: sa.Connection, table: sa.FromClause) -> sa.ColumnElement[Any]:
    """A window's posture rank as answers use it, -1 for unknown (:func:`window_level`)."""
    return sa.func.coalesce(window_level(conn, table), -1)
