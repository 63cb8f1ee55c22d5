"""The ``observation_windows`` rows an answer rests on, read grouped: one :class:`WindowGroup` per
image, node, posture, window length and source.

Split from :mod:`stellaops_runtime.store.coverage`, which decides what "no rows" means over these
groups (and re-exports :func:`image_windows`, :func:`all_image_windows` and :class:`WindowGroup`).
Grouped in SQL, so a month of one-minute windows is a handful of rows; only coverage rows count
(``watched_sql.is_coverage``: gap-only and node-wide rows never do).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import normal_sources
from stellaops_runtime.contracts.posture import FUNCTION_VISIBLE, Posture, posture_of_rank
from stellaops_runtime.store.exact_sum import exact_sum
from stellaops_runtime.store.queries import _as_utc
from stellaops_runtime.store.same_image import of_image
from stellaops_runtime.store.schema import observation_windows
from stellaops_runtime.store.watched_sql import (
    has_posture_columns,
    has_rule_column,
    is_coverage,
    period_passes,
    window_level,
)

_LAST = dt.datetime.max.replace(tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class WindowGroup:
    """Observation windows of one image on one node with the same posture, length and source."""

    image_digest: str
    node_name: str
    posture: Posture | None
    seconds: int  # 0 = unknown
    source: str
    first_start: dt.datetime
    last_start: dt.datetime
    windows: int
    event_count: int
    # The posture its agents recorded, when higher than ``posture`` (only agents before migration
    # 0009 wrote it, by the old rule: uprobes EbpfDeep, USDT FullInstrumentation); else None.
    recorded: Posture | None = None
    # The highest posture of its events, when a container of the image showed less (``posture``):
    # another container's stacks do not see its calls (hotsymbols/window_units.py); else None.
    shown: Posture | None = None

    @property
    def last_end(self) -> dt.datetime:
        """The end of the last window; the calendar's last moment for a window that would end past it
        (a row stamped 9999-12-31: it would overflow, and fail every answer about the image)."""
        if self.last_start >= _LAST - dt.timedelta(seconds=self.seconds):
            return _LAST
        return self.last_start + dt.timedelta(seconds=self.seconds)

    @property
    def sees_functions(self) -> bool:
        return self.posture is not None and self.posture >= FUNCTION_VISIBLE


def rank(p: Posture | None) -> int:
    return -1 if p is None else p.rank


def _select(conn: sa.Connection) -> tuple[list[Any], list[Any]]:
    """Columns to select and to group by; a store before migration 0003 has no posture columns."""
    o = observation_windows.c
    if has_posture_columns(conn):
        level = window_level(conn, observation_windows)
        extra = [level.label("posture_level"), o.posture_level.label("recorded_level"), o.window_seconds]
        group = [level, o.posture_level, o.window_seconds, o.source]
        if has_rule_column(conn):
            return [*extra, o.source, o.evidenced_level], [*group, o.evidenced_level]
        return [*extra, o.source, sa.null().label("evidenced_level")], group
    nulls = [
        sa.null().label("posture_level"),
        sa.null().label("recorded_level"),
        sa.null().label("window_seconds"),
        sa.literal("").label("source"),
        sa.null().label("evidenced_level"),
    ]
    return nulls, []


def _groups(
    conn: sa.Connection,
    *,
    image: str | None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[WindowGroup]:
    o = observation_windows.c
    extra, extra_group = _select(conn)
    base: list[sa.ColumnElement[bool]] = [is_coverage(conn, observation_windows)]
    if image is not None:
        base.append(of_image(conn, o.image_digest, image))
    if until is not None:
        base.append(o.window_start <= until)
    if since is not None and not extra_group:  # no window lengths known: a window is its start instant
        passes = [[*base, o.window_start >= since]]
    else:  # a window [start, start + seconds) overlaps the period when start > since - seconds
        passes = period_passes(conn, base, since)
    out: list[WindowGroup] = []
    for where in passes:
        stmt = (
            sa.select(
                o.image_digest,
                o.node_name,
                *extra,
                sa.func.min(o.window_start).label("first_start"),
                sa.func.max(o.window_start).label("last_start"),
                sa.func.count().label("windows"),
                exact_sum(o.event_count).label("events"),
            )
            .where(*where)
            .group_by(o.image_digest, o.node_name, *extra_group)
        )
        for r in conn.execute(stmt):
            posture, recorded = posture_of_rank(r.posture_level), posture_of_rank(r.recorded_level)
            higher = rank(recorded) > rank(posture)
            out.append(
                WindowGroup(
                    image_digest=r.image_digest,
                    node_name=r.node_name,
                    posture=posture,
                    seconds=int(r.window_seconds or 0),
                    source=normal_sources(r.source or ""),
                    first_start=_as_utc(r.first_start),
                    last_start=_as_utc(r.last_start),
                    windows=int(r.windows),
                    event_count=int(r.events or 0),
                    recorded=recorded if higher and r.evidenced_level is None else None,
                    shown=recorded if higher and r.evidenced_level is not None else None,
                )
            )
    return out


def image_windows(
    conn: sa.Connection,
    *,
    image: str,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[WindowGroup]:
    """``image``'s observation windows that overlap the period (all of them without one), grouped."""
    return _groups(conn, image=image, since=since, until=until)


def all_image_windows(conn: sa.Connection) -> dict[str, list[WindowGroup]]:
    """Every image's observation windows, grouped, by image."""
    out: dict[str, list[WindowGroup]] = {}
    for g in _groups(conn, image=None):
        out.setdefault(g.image_digest, []).append(g)
    return out
