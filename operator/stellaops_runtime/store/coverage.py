"""Was an image under observation, when, and how well: what a "no" rests on.

DESIGN.md: answers are three-valued. A function is *observed* when the store
has rows of it; *not observed* only when the image was watched at a posture
that can see function calls (EbpfDeep or more: user stacks were counted,
contracts/posture.py) in the period asked about; otherwise the answer is
*unknown*: never observed, or observed only at Passive (lifecycle events), at
ActiveTracing (kernel probes without user stacks, uprobes, USDT: no function
but a probed one shows; and every window only agents before migration 0009
wrote, whatever posture they recorded: store/watched_sql.py ``window_level``)
or at an unknown posture (windows recorded before migration 0003).
:func:`absence` is that rule, over :class:`Coverage` summaries of the
``observation_windows`` rows that :func:`image_windows` and
:func:`all_image_windows` read (grouped in SQL, so a month of one-minute
windows is a handful of rows).

A window in which Tetragon said it dropped events (a throttled cgroup, its
export rate limiter; migration 0005), an outage or an opted-out pod of the
image has a *gap*: :func:`image_gaps` (store/coverage_gaps.py) reads the
image's own gaps and the node-wide ones of days on which the image was
observed on that node, and :func:`absence` answers unknown, naming them, whenever one
falls in the period asked about (all time without one). So it does when code of
the image ran under no name (store/unnamed.py): a frame no symbol named may be
the function asked about. So it does when the image also ran in the period
on a node none of whose windows of a UTC day could see calls, beside windows
that could (another node at ActiveTracing, or where it only ran:
store/coverage_unseen.py): a "not observed" is about every run of it. Gap-only and
node-wide rows (no events, no posture) are never coverage; a row with no
events but a posture is: the agent's lifecycle observer saw the image's
container run through that window while the source was connected
(:func:`is_coverage`, hotsymbols/run_windows.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import normal_sources
from stellaops_runtime.contracts.posture import FUNCTION_VISIBLE, Posture, posture_of_rank, posture_text
from stellaops_runtime.store.coverage_first import before_first_day
from stellaops_runtime.store.coverage_first import first_record as first_record  # as coverage.first_record
from stellaops_runtime.store.coverage_gaps import NOT_WATCHED, OUTAGE_SOURCE, Gap, gaps_lead
from stellaops_runtime.store.coverage_gaps import image_gaps as image_gaps  # read as coverage.image_gaps
from stellaops_runtime.store.coverage_unseen import Unseen, describe_all
from stellaops_runtime.store.coverage_unseen import image_unseen as image_unseen  # as coverage.image_unseen
from stellaops_runtime.store.exact_sum import exact_sum
from stellaops_runtime.store.queries import rfc3339
from stellaops_runtime.store.schema import observation_windows
from stellaops_runtime.store.unnamed import UnnamedCode, describe
from stellaops_runtime.store.watched_sql import (
    has_posture_columns,
    has_rule_column,
    is_coverage,
    period_passes,
    window_level,
)

if TYPE_CHECKING:
    from stellaops_runtime.evidence.doubts import Doubt

OBSERVED = "observed"
NOT_OBSERVED = "not_observed"
UNKNOWN = "unknown"


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


@dataclass(frozen=True, slots=True)
class Coverage:
    """A summary of observation windows: the interval they span and what backs it."""

    start: dt.datetime
    end: dt.datetime
    windows: int
    nodes: tuple[str, ...]
    lowest: Posture | None
    highest: Posture | None
    sources: tuple[str, ...]
    event_count: int

    @property
    def interval(self) -> str:
        """ISO 8601 ``start/end``."""
        return f"{rfc3339(self.start)}/{rfc3339(self.end)}"

    @property
    def posture_range(self) -> str:
        lo, hi = posture_text(self.lowest), posture_text(self.highest)
        return lo if lo == hi else f"{lo}..{hi}"

    def describe(self) -> str:
        """One line for people: interval, windows, nodes, posture, source, events."""
        n, k = self.windows, len(self.nodes)
        source = ",".join(self.sources) or "unknown"
        return (
            f"{self.interval} ({n} window{'s' * (n != 1)} on {k} node{'s' * (k != 1)}, "
            f"posture {self.posture_range}, source {source}, {self.event_count} events)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "start": rfc3339(self.start),
            "end": rfc3339(self.end),
            "interval": self.interval,
            "windows": self.windows,
            "nodes": list(self.nodes),
            "posture": {"lowest": posture_text(self.lowest), "highest": posture_text(self.highest)},
            "source": ",".join(self.sources),
            "event_count": self.event_count,
        }


# Sources of gap rows alone, never of a watch: a window's row that holds one names how it was not watched.
_GAP_ONLY = frozenset(NOT_WATCHED) - {OUTAGE_SOURCE}


def _rank(p: Posture | None) -> int:
    return -1 if p is None else p.rank


def summarize(groups: Iterable[WindowGroup]) -> Coverage | None:
    """The coverage of these windows; None when there are none."""
    gs = list(groups)
    if not gs:
        return None
    postures = sorted((g.posture for g in gs), key=_rank)
    return Coverage(
        start=min(g.first_start for g in gs),
        end=max(g.last_end for g in gs),
        windows=sum(g.windows for g in gs),
        nodes=tuple(sorted({g.node_name for g in gs})),
        lowest=postures[0],
        highest=postures[-1],
        sources=tuple(sorted({p for g in gs for p in g.source.split(",") if p and p not in _GAP_ONLY})),
        event_count=sum(g.event_count for g in gs),
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the store can say about an absence: not observed (with coverage) or unknown (why)."""

    answer: str  # NOT_OBSERVED | UNKNOWN
    reason: str
    coverage: Coverage | None
    gaps: tuple[Gap, ...] = ()
    unnamed: tuple[UnnamedCode, ...] = ()  # code that ran under no name (store/unnamed.py)
    doubts: tuple[Doubt, ...] = ()  # calls that may be the function's (evidence/doubts.py)
    unseen: tuple[Unseen, ...] = ()  # runs that could not see calls beside windows that could


# What windows at a posture below FUNCTION_VISIBLE showed (contracts/posture.py).
_SHOWED = {
    Posture.PASSIVE: "lifecycle events",
    Posture.ACTIVE_TRACING: "kernel probes without user stacks; uprobes and USDT show only their functions",
}


def _period_text(since: dt.datetime | None, until: dt.datetime | None) -> str:
    if since is not None and until is not None:
        return f" between {rfc3339(since)} and {rfc3339(until)}"
    if since is not None:
        return f" since {rfc3339(since)}"
    return f" until {rfc3339(until)}" if until is not None else ""


def absence(
    image: str,
    groups: Sequence[WindowGroup],
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    gaps: Sequence[Gap] = (),
    unnamed: Sequence[UnnamedCode] = (),
    doubts: Sequence[Doubt] = (),
    unseen: Sequence[Unseen] = (),
    recorded_from: dt.datetime | None = None,
) -> Verdict:
    """What "no rows" means for ``image`` given its windows, gaps, the code that ran under no
    name, the calls that may be the function's (``doubts``) and the runs of it that could not see
    calls (``unseen``, store/coverage_unseen.py), each already narrowed to the period and, for
    ``unnamed``, to the question's package; ``recorded_from``, the store's first record: a period
    starting before its UTC day is never "not observed" (store/coverage_first.py)."""
    period = _period_text(since, until)
    if not groups:
        if gaps:  # it ran here, unwatched (an opted-out pod) or with every event dropped
            why = (
                f"image {image} was never watched{period}; it ran with every event of it missing: "
                f"{'; '.join(g.describe() for g in gaps)}"
            )
            return Verdict(UNKNOWN, why, None, tuple(gaps))
        return Verdict(UNKNOWN, f"no observation window for image {image}{period}", None)
    seeing = [g for g in groups if g.sees_functions]
    if not seeing:
        cov = summarize(groups)
        assert cov is not None
        if cov.highest is None:
            why = (
                f"image {image} was observed{period} only at an unknown posture (windows recorded "
                "before postures were stored), which cannot back a 'not observed'"
            )
        else:
            why = (
                f"image {image} was observed{period} only at posture {posture_text(cov.highest)} "
                f"({_SHOWED.get(cov.highest, 'no events')}), which cannot see function calls"
            )
        legacy = sorted({g.recorded for g in groups if g.recorded is not None}, key=_rank)
        if legacy:
            n = sum(g.windows for g in groups if g.recorded is not None)
            why += (
                f"; {n} window{'s' * (n != 1)} recorded at posture {'/'.join(p.value for p in legacy)} "
                "by agents before store migration 0009 read as ActiveTracing: those agents gave uprobe "
                "and USDT events that posture, and whether the events carried user stacks was not recorded"
            )
        mixed = sorted({g.shown for g in groups if g.shown is not None}, key=_rank)
        if mixed:
            n = sum(g.windows for g in groups if g.shown is not None)
            why += (
                f"; {n} window{'s' * (n != 1)} had events at posture {'/'.join(p.value for p in mixed)} "
                "that some containers of the image showed and another did not (one container's stacks "
                "do not see another's calls; a running container that sent none counts at Passive), "
                "or that agents before store migration 0009 recorded for "
                "uprobe and USDT events"
            )
        if gaps:  # named too: events of the period were lost, whatever the posture could see
            why += f"; and {gaps_lead(gaps)}: {'; '.join(g.describe() for g in gaps)}"
        return Verdict(UNKNOWN, why, cov, tuple(gaps))
    cov = summarize(seeing)
    assert cov is not None
    ran = f"it also ran where its calls could not be seen: {describe_all(list(unseen))}" if unseen else ""
    if doubts:  # the gaps and unseen runs named too: each alone would forbid the "no"
        lost = [f"{gaps_lead(gaps)}: {'; '.join(g.describe() for g in gaps)}"] if gaps else []
        parts = [*lost, *(d.why for d in doubts), *([ran] if ran else [])]
        why = f"image {image} was under observation{period} {cov.describe()}, but {'; and '.join(parts)}"
        return Verdict(UNKNOWN, why, cov, tuple(gaps), doubts=tuple(doubts), unseen=tuple(unseen))
    if gaps:
        why = (
            f"image {image} was under observation{period} {cov.describe()}, but {gaps_lead(gaps)}: "
            f"{'; '.join(g.describe() for g in gaps)}{'; and ' + ran if ran else ''}; a 'not observed' "
            "cannot rest on windows with gaps (ask about a period without them with --since/--until)"
        )
        return Verdict(UNKNOWN, why, cov, tuple(gaps), unseen=tuple(unseen))
    if unseen:
        why = (
            f"image {image} was under observation{period} {cov.describe()}, but {ran}; a 'not observed' "
            "is about every run of the image, and a function only those runs called would not be "
            "seen (ask about a period without them with --since/--until)"
        )
        return Verdict(UNKNOWN, why, cov, unseen=tuple(unseen))
    if unnamed:
        why = (
            f"image {image} was under observation{period} {cov.describe()}, but code ran there that "
            f"no symbol names: {describe(list(unnamed))}; the function asked about may be that code "
            "(no symbol table or debug file covers it: docs/symbolization.md)"
        )
        return Verdict(UNKNOWN, why, cov, unnamed=tuple(unnamed))
    if since is not None and (unrecorded := before_first_day(since, recorded_from)) is not None:
        why = f"image {image} was under observation{period} {cov.describe()}, but {unrecorded}"
        return Verdict(UNKNOWN, why, cov)
    return Verdict(NOT_OBSERVED, f"image {image} was under observation {cov.describe()}", cov)


def backing(groups: Sequence[WindowGroup]) -> Coverage | None:
    """The coverage an answer rests on: the windows that can see functions, else all of them."""
    seeing = [g for g in groups if g.sees_functions]
    return summarize(seeing or groups)


# -- reading the windows -------------------------------------------------------


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
        base.append(o.image_digest == image)
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
            higher = _rank(recorded) > _rank(posture)
            out.append(
                WindowGroup(
                    image_digest=r.image_digest,
                    node_name=r.node_name,
                    posture=posture,
                    seconds=int(r.window_seconds or 0),
                    source=normal_sources(r.source or ""),
                    first_start=_utc(r.first_start),
                    last_start=_utc(r.last_start),
                    windows=int(r.windows),
                    event_count=int(r.events or 0),
                    recorded=recorded if higher and r.evidenced_level is None else None,
                    shown=recorded if higher and r.evidenced_level is not None else None,
                )
            )
    return out


def _utc(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


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
