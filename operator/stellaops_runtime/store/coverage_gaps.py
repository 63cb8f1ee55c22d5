"""The gaps that touch an image: where events of it may be missing, read and told in words.

Split from :mod:`stellaops_runtime.store.coverage`, which decides what "no
rows" means; this module reads what stops a "not observed" (migration 0005).
A gap row is an ``observation_windows`` row with ``gap_start``/``gap_end``
set. Its kinds are told apart by the row's ``source``:

- events dropped (``tetragon``, ``bcc``...): Tetragon throttled a cgroup or
  its export rate limiter dropped events, or the agent's own queue or probes
  dropped them (hotsymbols/gaps.py);
- an **outage** (source ``none``): no source watched the node (Tetragon's
  stream down, a source switch, the time between two agents: agent/outages.py,
  agent/watch_record.py);
- an **opted-out pod** (source ``opted_out``): a pod of the image that opted
  out of observation (``stellaops.io/observe-level``) ran on the node then.
  Its calls are never recorded (docs/privacy.md); that the image ran there
  unwatched is, so no answer says "not observed" about that time;
- a pod outside the **namespace allowlist** (source ``not_allowed``): a pod of
  the image in a namespace ``privacy.allowedNamespaces`` leaves out ran on
  the node then; its events were dropped unseen, as an opted-out pod's;
- a pod **no native policy selects** (source ``not_selected``): the agent's
  own probes fired in a pod of the image that no policy asking for them
  selects, and its events were dropped unseen (agent/native_selection.py).
- an **open** gap (kind ``open``, never a stored row: store/coverage_open.py): the
  time after a node's latest record, while its agent may be down.

An image's own gap rows touch it; a node-wide row touches every image
watched on that node on that UTC day (``watched_sql.touches_image``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.store.exact_sum import exact_sum
from stellaops_runtime.store.queries import _as_utc, rfc3339
from stellaops_runtime.store.schema import observation_windows
from stellaops_runtime.store.watched_sql import has_gap_columns, touches_image

OUTAGE_SOURCE = "none"  # hotsymbols/gaps.py SWITCH_GAP_SOURCE
OPTED_OUT_SOURCE = "opted_out"  # hotsymbols/gaps.py OPTED_OUT_SOURCE
NOT_ALLOWED_SOURCE = "not_allowed"  # hotsymbols/gaps.py NOT_ALLOWED_SOURCE
NOT_SELECTED_SOURCE = "not_selected"  # hotsymbols/gaps.py NOT_SELECTED_SOURCE
# store/coverage_open.py: the time after a node's latest record (its agent may be down), never a stored row
OPEN_LABEL = "open"
NOT_WATCHED = {
    OUTAGE_SOURCE: "outage",
    OPTED_OUT_SOURCE: "opted_out",
    NOT_ALLOWED_SOURCE: "not_allowed",
    NOT_SELECTED_SOURCE: "not_selected",
}


@dataclass(frozen=True, slots=True)
class Gap:
    """Where events of an image may be missing on one node: its own gap, or a node-wide one."""

    node_name: str
    node_wide: bool  # a rate-limit report, a throttle of a container never seen, an outage: any image there
    start: dt.datetime
    end: dt.datetime
    windows: int
    throttles: int
    dropped_events: int
    not_watched: tuple[
        str, ...
    ] = ()  # "outage", "opted_out", "not_allowed", "not_selected", "open": nobody watched (see the module)

    @property
    def interval(self) -> str:
        return f"{rfc3339(self.start)}/{rfc3339(self.end)}"

    @property
    def dropped(self) -> bool:
        """Whether events were dropped (not only unwatched): what Tetragon or the agent reported."""
        return bool(self.throttles or self.dropped_events or not self.not_watched)

    def describe(self) -> str:
        what = []
        if self.dropped_events:
            what.append(
                f"{self.dropped_events} events of the node were dropped (by Tetragon's export rate "
                "limiter, or by the agent's own receive queue or probes)"
            )
        if self.throttles or (not self.dropped_events and not self.not_watched):
            whose = "a container it could not attribute" if self.node_wide else "the image's cgroup"
            n = self.throttles
            what.append(f"it throttled {whose} ({n} throttle signal{'s' * (n != 1)})")
        if "outage" in self.not_watched:
            what.append("no event source watched the node (an outage, a source switch or no agent running)")
        if "opted_out" in self.not_watched:
            what.append(
                "a pod of the image that opted out of observation (stellaops.io/observe-level) ran there "
                "unwatched"
            )
        if "not_allowed" in self.not_watched:
            what.append(
                "a pod of the image in a namespace privacy.allowedNamespaces leaves out ran there unwatched"
            )
        if "not_selected" in self.not_watched:
            what.append(
                "a pod of the image that no native policy selects ran there unwatched by the agent's probes"
            )
        if OPEN_LABEL in self.not_watched:
            what.append(
                "the store holds no record of the node since (its agent may be down: a crash, an OOM kill, "
                "a node lost), so nobody is known to have watched it; a newer record of the node closes it"
            )
        w = self.windows
        if not w:  # an open gap: no stored row
            return f"on node {self.node_name} {self.interval}: {' and '.join(what)}"
        return f"on node {self.node_name} {self.interval} ({w} window{'s' * (w != 1)}): {' and '.join(what)}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "node": self.node_name,
            "scope": "node" if self.node_wide else "image",
            "start": rfc3339(self.start),
            "end": rfc3339(self.end),
            "interval": self.interval,
            "windows": self.windows,
            "throttles": self.throttles,
            "dropped_events": self.dropped_events,
        }
        if self.not_watched:  # only when it says more than "events dropped"
            out["not_watched"] = list(self.not_watched)
        return out


def gaps_lead(gaps: Sequence[Gap]) -> str:
    """How an answer introduces its gaps: dropped events, time nobody watched, or both."""
    dropped = any(g.dropped for g in gaps)
    unwatched = any(g.not_watched for g in gaps)
    if dropped and not unwatched:
        return "events were dropped"
    if unwatched and not dropped:
        return "the image was not watched throughout"
    return "events were dropped and the image was not watched throughout"


def image_gaps(
    conn: sa.Connection,
    *,
    image: str,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[Gap]:
    """The gaps that touch ``image`` in the period (all of them without one), per node and scope.

    The image's own gaps (its cgroup throttled, an opted-out pod of it), and the node-wide ones
    (rate limiting, unattributed throttles, outages) of any UTC day on which the image was
    observed on that node (``watched_sql.touches_image``).
    """
    if not has_gap_columns(conn):
        return []
    o = observation_windows.c
    where = [o.gap_end.is_not(None), touches_image(conn, observation_windows, image)]
    if since is not None:
        where.append(o.gap_end > since)  # a gap ending at a window end (exclusive) is before it
    if until is not None:
        where.append(o.gap_start <= until)
    node_wide = (o.image_digest == "").label("node_wide")
    stmt = (
        sa.select(
            o.node_name,
            node_wide,
            o.source,
            sa.func.min(o.gap_start).label("start"),
            sa.func.max(o.gap_end).label("end"),
            sa.func.count().label("windows"),
            exact_sum(o.throttle_count).label("throttles"),
            exact_sum(o.dropped_events).label("dropped"),
        )
        .where(*where)
        .group_by(o.node_name, node_wide, o.source)
    )
    folded: dict[tuple[str, bool], Gap] = {}
    for r in conn.execute(stmt):
        sources = {p for p in (r.source or "").split(",") if p}
        g = Gap(
            node_name=r.node_name,
            node_wide=bool(r.node_wide),
            start=_as_utc(r.start),
            end=_as_utc(r.end),
            windows=int(r.windows),
            throttles=int(r.throttles or 0),
            dropped_events=int(r.dropped or 0),
            not_watched=tuple(sorted(NOT_WATCHED[s] for s in sources if s in NOT_WATCHED)),
        )
        key = (g.node_name, g.node_wide)
        have = folded.get(key)
        folded[key] = g if have is None else _fold(have, g)
    return [folded[k] for k in sorted(folded)]


def images_with_gaps(conn: sa.Connection) -> set[str]:
    """Every image that has gap rows of its own (node-wide rows name no image)."""
    if not has_gap_columns(conn):
        return set()
    o = observation_windows.c
    stmt = sa.select(o.image_digest).where(o.gap_end.is_not(None), o.image_digest != "").distinct()
    return set(conn.execute(stmt).scalars())


def _fold(a: Gap, b: Gap) -> Gap:
    """Two groups of one node and scope (rows of different sources) as one gap."""
    return Gap(
        node_name=a.node_name,
        node_wide=a.node_wide,
        start=min(a.start, b.start),
        end=max(a.end, b.end),
        windows=a.windows + b.windows,
        throttles=a.throttles + b.throttles,
        dropped_events=a.dropped_events + b.dropped_events,
        not_watched=tuple(sorted({*a.not_watched, *b.not_watched})),
    )
