"""Where an image ran on a node that could not see its calls, while another node could: read and told.

Split from :mod:`stellaops_runtime.store.coverage`, which decides what "no rows" means. A "not
observed" is a claim about every run of the image in the period asked about, and a watched day
(evidence/store_facts.py) one about every run of it that day. A window at EbpfDeep on one node
says nothing of a run the same UTC day on a node where none of the image's windows could see
calls: a node at ActiveTracing (kernel probes without user stacks, an agent whose registry was not
in sync or that found no runtime socket), one where the image only ran (lifecycle rows, Passive:
no container of it sent an event), one whose windows a silent container of the image capped at
Passive all day (hotsymbols/container_runs.py), one whose agents were all before migration 0009
or wrote no posture; or a node where a container of the image ran, for any part of the day, that
showed no call all that day while another container of it there did (a window ``evidenced`` None:
hotsymbols/day_calls.py). Such a day is no watched day (watched_sql.py ``unseen_days``), and
``query observed`` over a period holding one answers unknown, naming them (:func:`image_unseen`;
at most :data:`MAX_NAMED` in the reason, all of them in the JSON).

Per (node, UTC day, by the window's start). Apart from that mark, a node that saw the image's
calls in one window that day keeps its other windows: a window without events or with one
container's exec events alone is a quiet image there, and a window evidenced below EbpfDeep beside
one container's calls is a traced container idle or without a stack there, since the agent marks
a window of each container not seen with calls that day. What the agent did not see it cannot
mark (an agent restarted that day knows the calls it saw since: docs/evidence.md, "Days").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.contracts.posture import FUNCTION_VISIBLE, Posture, posture_of_rank, posture_text
from stellaops_runtime.store.same_image import of_image
from stellaops_runtime.store.schema import observation_windows, utc_date
from stellaops_runtime.store.watched_sql import (
    has_posture_columns,
    has_rule_column,
    is_coverage,
    period_passes,
    seen_level,
    unwatched_windows,
)

MAX_NAMED = 20  # unseen (node, day)s named in an answer's reason; the JSON lists them all
_DAY = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Unseen:
    """A UTC day on which the image ran on a node where none of its windows could see calls."""

    node_name: str
    day: dt.date
    posture: Posture | None  # the highest posture of the node's windows of the image that day
    windows: int  # the node's windows of the image that day in the period asked about
    # the node's windows of the image that day marked for a container of it that showed no call all
    # day while another did (evidenced None, one per such container: hotsymbols/day_calls.py)
    unwatched: int = 0

    def describe(self) -> str:
        n, p = f"{self.windows} window{'s' * (self.windows != 1)}", posture_text(self.posture)
        where = f"on node {self.node_name} on {self.day.isoformat()}"
        if self.posture is not None and self.posture.rank >= FUNCTION_VISIBLE.rank:
            return f"{where} in a container that showed no call all that day, beside one at posture {p} ({n})"
        return f"{where} only at posture {p} ({n})"

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node_name,
            "day": self.day.isoformat(),
            "posture": posture_text(self.posture),
            "windows": self.windows,
            "unwatched_windows": self.unwatched,
        }


def describe_all(unseen: list[Unseen]) -> str:
    """The runs in words, at most :data:`MAX_NAMED` of them."""
    named = "; ".join(u.describe() for u in unseen[:MAX_NAMED])
    more = len(unseen) - MAX_NAMED
    return named + (f"; and {more} more" if more > 0 else "")


def _as_date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def image_unseen(
    conn: sa.Connection,
    *,
    image: str,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[Unseen]:
    """The (node, day)s on which ``image`` ran in the period (a window of it overlaps the period; all
    time without one) while none of its windows on that node that whole UTC day could see calls, by
    node and day; [] on a store before migration 0003 (no posture: no day of it is watched anyway).
    The whole day, as for the watched days: a traced container whose one window in a short period
    held only events without a stack is no unseen run when its other windows that day saw calls."""
    if not has_posture_columns(conn):
        return []
    o = observation_windows.c
    day = utc_date(o.window_start).label("day")
    base: list[sa.ColumnElement[bool]] = [
        of_image(conn, o.image_digest, image),
        is_coverage(conn, observation_windows),
    ]
    in_period: dict[tuple[str, dt.date], int] = {}  # (node, day) -> its windows in the period
    ends = [] if until is None else [o.window_start <= until]
    for where in period_passes(conn, [*base, *ends], since):
        stmt = (
            sa.select(o.node_name, day, sa.func.count().label("n")).where(*where).group_by(o.node_name, day)
        )
        for r in conn.execute(stmt):
            key = (r.node_name, _as_date(r.day))
            in_period[key] = in_period.get(key, 0) + int(r.n)
    if not in_period:
        return []
    days = sorted({d for _, d in in_period})  # the whole UTC days those windows start on
    first = dt.datetime.combine(days[0], dt.time(), dt.UTC)
    # the day after the last; none after 9999-12-31 (a row stamped then: no overflow, no exit 2)
    last = (
        []
        if days[-1] == dt.date.max
        else [o.window_start < dt.datetime.combine(days[-1] + _DAY, dt.time(), dt.UTC)]
    )
    level = seen_level(conn, observation_windows)
    marked: sa.ColumnElement[Any] = (
        unwatched_windows(conn, observation_windows) if has_rule_column(conn) else sa.literal(0)
    )
    image_rows, coverage = base  # the marks count on any row of the image (watched_sql.unseen_days)
    highest = sa.func.max(sa.case((coverage, level))).label("top")
    stmt = (
        sa.select(o.node_name, day, highest, marked.label("marks"))
        .where(image_rows, o.window_start >= first, *last)
        .group_by(o.node_name, day)
    )
    tops = {
        (r.node_name, _as_date(r.day)): (-1 if r.top is None else int(r.top), int(r.marks or 0))
        for r in conn.execute(stmt)
    }
    out = []
    for (node, d), windows in sorted(in_period.items()):
        top, marks = tops.get((node, d), (-1, 0))
        if top < FUNCTION_VISIBLE.rank or marks > 0:
            out.append(Unseen(node, d, posture_of_rank(top), windows, marks))
    return out
