"""The time after a node's last record is unwatched: an agent that is down has recorded no gap yet.

Split from :mod:`stellaops_runtime.store.coverage`, which decides what "no rows" means. The time
between two agents on a node is a gap, but the next agent records it (agent/watch_record.py): while
an agent is down (SIGKILL, an OOM kill, a node lost) nothing in the store says so, and a day with
one EbpfDeep window before the crash read as a watched, gap-free day, so ``query observed``,
``vex`` and a witness asked during the outage said "not observed" / ``not_affected`` over calls
made after the agent died.

The rule: a node's watched time ends at its latest record in the store (the start of its latest
``observation_windows`` row, any image, lifecycle or gap row: the row of a window still being
counted claims only what was flushed by then, so its start, not its end). Between two records of
a node a dead agent's hole is a gap already (the next agent wrote it), so only the time after the
latest one is open: from it to the question's moment, over every UTC day between (its agent
died while the node and its workloads may run on: an OOM kill, a crash), the node is taken as
unwatched (an *open* gap, node-wide, of kind ``open``) once the
question is more than three of its windows after that record (:func:`grace`: a live agent's latest
row is the window it is counting, rewritten at each flush, or, on a node that sends no event, the
lifecycle row of a window that ended a settle and a flush before the last one did; a live agent
whose node sends no event and, without ``lifecycle.enabled``, writes no row, reads as down: the
safe side), touching the
images watched on that node on the day its watched time ends or in the hour (at least three windows)
before it (:func:`_watched_on`), like any node-wide gap. So that UTC
day and every later one up to the question's are no watched days of those images (:func:`open_days`:
the days other nodes watched them included, which before took nothing out for this node) and a
``query observed`` over a period reaching into the open time answers unknown (:func:`open_gaps`),
until a newer record of the node closes it (its next agent records the hole as a gap). A day
counts only once its node's records reach past it.

A node gone for good (drained, removed by an autoscaler, its agent deleted) keeps its images open
to every later question: nothing in the store says when after its last record it stopped running
them. docs/evidence.md ("Days") says what reads unknown then and how it ends (retention removes
the node's rows; a newer record of the node closes it). An agent stopped with SIGTERM says more: its
stop record (migration 0017, store/node_stop.py, read by
:meth:`~stellaops_runtime.store.coverage_live.Live.stop_end`) ends the open time at the stop for
the images no longer running then, and for every image of a node going away (:func:`stopped_span`).
A row stamped after the question's UTC day (a node's clock ahead) is not the node's latest record.

A node with a proof of life (``node_liveness``, migration 0015, written by its agent at every flush,
empty ones included: store/node_liveness.py, read by store/coverage_live.py) is judged by it
instead, on the store's clock: its watched time ends at the moment its agent last said it had
watched and stored everything (the earlier of that moment on the store's clock and on the node's,
:attr:`~stellaops_runtime.store.coverage_live.Live.watched_end`; for Tetragon's gRPC stream that
moment trails now by the 32 s its event cache may hold events), and the open time starts there once
the question is more than three of ITS flush intervals and two seconds after the agent's last write
(a flush's own time; :attr:`~stellaops_runtime.store.coverage_live.Live.grace`), or once its claimed
moment trailed its write by more than Tetragon's hold and largest backlog allow (its flushes
failing: :meth:`~stellaops_runtime.store.coverage_live.Live.alive_at`), instead of three windows
after the latest record. So a SIGKILL opens the gap within about three flush intervals and 2 s (32 s by
default, not three minutes), a node clock ahead does not delay it (its rows' stamps are not read),
and a live node with no event and no lifecycle row, or with a flush interval longer than a window,
never reads as down. Event time against store time: windows are stamped by event time, and a
replayed export file's are days behind the store's clock, so a proof of life vouches only for a node
whose latest record is not older than its agent's start by more than two of its windows
(:meth:`~stellaops_runtime.store.coverage_live.Live.vouches_for`: a live agent's restart gap ends in
its first window); a proof whose agent is taken as down and whose watched end is on an earlier UTC
day than the node's latest record (stale: its writes failing while the rows are stored, or the agent
rolled back to one that writes none) also leaves the record's day the open time of the record's rule,
so that day does not read as watched after its rows stop; a node whose latest record is older (a
replay, an earlier agent's rows) keeps the rule of its latest record, so a replay's last day reads
open once its agent is gone, and a live agent's proof of life never makes event time it did not
watch read as watched. A question about now
takes now from the store's clock (:func:`~stellaops_runtime.store.coverage_live.store_now`), not the
CLI host's; one about a past UTC day takes that day's end when earlier.

Wired: ``open_gaps`` joins ``query observed``'s gaps (cli/query.py), ``open_days`` is taken out of
evidence/store_facts.py's watched days and ``open_gaps`` joins its gaps, which vex and witnesses read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.store.coverage_gaps import OPEN_LABEL, Gap
from stellaops_runtime.store.coverage_live import Live, Stopped, liveness, store_now
from stellaops_runtime.store.partitions import MAX_RETENTION_DAYS
from stellaops_runtime.store.queries import _as_utc
from stellaops_runtime.store.same_image import of_image, same_image
from stellaops_runtime.store.schema import observation_windows
from stellaops_runtime.store.watched_sql import has_posture_columns, is_coverage

_DAY = dt.timedelta(days=1)
_TICK = dt.timedelta(microseconds=1)
_NONE = dt.timedelta(0)
LOOK_BACK = dt.timedelta(hours=1)  # an image's rows before a watched end that still touch it (_watched_on)
DEFAULT_WINDOW_SECONDS = 60  # hotSymbols.aggregationWindowSeconds' default, for a row of unknown length


def midnight_after(moment: dt.datetime) -> dt.datetime:
    """Midnight UTC at the end of ``moment``'s UTC day (the calendar's last moment on 9999-12-31)."""
    day = moment.astimezone(dt.UTC).date()
    if day == dt.date.max:
        return dt.datetime.max.replace(tzinfo=dt.UTC)
    return dt.datetime.combine(day + _DAY, dt.time(), dt.UTC)


def open_span(
    last: dt.datetime, asked: dt.datetime, seconds: int = 0
) -> tuple[dt.datetime, dt.datetime] | None:
    """The open time after a node's latest record, a window of ``seconds`` starting at ``last``, for
    a question asked at ``asked``: from ``last`` to ``asked``, over every UTC day between; None while
    the question is within :func:`grace` of the record (a live agent's latest row is of the window
    it is counting) or not after it."""
    if asked - last <= grace(seconds):
        return None
    return last, asked


def grace(seconds: int) -> dt.timedelta:
    """How long after a node's latest record starts it may be its agent's newest: three windows;
    three minutes for a row of unknown length. A live agent rewrites the window it is counting at
    each flush, but on a node that sends no event its only rows are lifecycle rows
    (hotsymbols/run_windows.py), window W's written once W is over, ``lifecycle.windowSettleSeconds``
    (5 s) passed and the next flush ran (``hotSymbols.flushIntervalSeconds``, 10 s): just after a
    window ends the newest is the one before it, two windows and settle + flush interval old. Two
    windows read 7 to 22 % of a healthy idle node's seconds as down
    (tests/unit/test_coverage_open_live_agent.py); three hold while settle + flush interval + a
    flush's time stay under one window (the defaults: 15 s of 60)."""
    return 3 * dt.timedelta(seconds=seconds if seconds > 0 else DEFAULT_WINDOW_SECONDS)


def _day_end(today: dt.date) -> dt.datetime:
    return midnight_after(dt.datetime.combine(today, dt.time(), dt.UTC))


def last_records(
    conn: sa.Connection, nodes: Iterable[str], before: dt.datetime
) -> dict[str, tuple[dt.datetime, int]]:
    """Each node's latest record: the start and length of its latest row starting before ``before``
    (one look-up per node through the index of migration 0010, as agent/node_history.py reads it).
    A store before migration 0003 has no ``window_seconds``: the length is unknown (0)."""
    o = observation_windows.c
    length = o.window_seconds if has_posture_columns(conn) else sa.literal(0)
    out: dict[str, tuple[dt.datetime, int]] = {}
    for node in nodes:
        stmt = (
            sa.select(o.window_start, length.label("seconds"))
            .where(o.node_name == node, o.window_start < before)
            .order_by(o.window_start.desc())
            .limit(1)
        )
        row = conn.execute(stmt).first()
        if row is not None:
            out[node] = (_as_utc(row.window_start), int(row.seconds or 0))
    return out


_CHUNK = 200  # (node, day) pairs asked about in one statement


def image_last_records(
    conn: sa.Connection, image: str, before: dt.datetime
) -> dict[str, tuple[dt.datetime, int]]:
    """:func:`last_records` of the nodes on which ``image`` has a coverage row, in one statement: the
    image's nodes read through its key, and each one's latest row through the index of migration 0010
    (a correlated look-up per node, not a round trip per node). A node whose rows all start at or
    after ``before`` (an event clock ahead past the question's UTC day) gets its earliest one, of
    unknown length: its proof of life judges it (:func:`_open`; by the record's rule a record after
    the question opens nothing). Before, such a node was left out: a dead agent's node whose only
    windows were stamped past midnight read as watched, "not observed"."""
    o = observation_windows
    nodes = (
        sa.select(o.c.node_name)
        .where(of_image(conn, o.c.image_digest, image), is_coverage(conn, o))
        .distinct()
        .subquery("image_nodes")
    )
    latest = o.alias("latest")

    def newest(column: sa.ColumnElement[Any]) -> sa.ScalarSelect[Any]:
        return (
            sa.select(column)
            .where(latest.c.node_name == nodes.c.node_name, latest.c.window_start < before)
            .order_by(latest.c.window_start.desc())
            .limit(1)
            .scalar_subquery()
        )

    length = newest(latest.c.window_seconds) if has_posture_columns(conn) else sa.literal(0)
    stmt = sa.select(nodes.c.node_name, newest(latest.c.window_start).label("last"), length.label("seconds"))
    out, ahead = {}, []
    for r in conn.execute(stmt):
        if r.last is not None:
            out[r.node_name] = (_as_utc(r.last), int(r.seconds or 0))
        else:
            ahead.append(r.node_name)
    col = o.c
    for i in range(0, len(ahead), _CHUNK):
        first = (
            sa.select(col.node_name, sa.func.min(col.window_start).label("first"))
            .where(col.node_name.in_(ahead[i : i + _CHUNK]), col.window_start >= before)
            .group_by(col.node_name)
        )
        out.update((r.node_name, (_as_utc(r.first), 0)) for r in conn.execute(first))
    return out


def _watched_on(
    conn: sa.Connection,
    image: str,
    pairs: list[tuple[str, dt.datetime, int, bool]],
    ahead: dt.datetime,
) -> set[str]:
    """The nodes of ``pairs`` (node, watched end, its windows' seconds, whether the end is a proof of
    life's) on which ``image`` has a coverage row on the watched end's UTC day or in the
    :data:`LOOK_BACK` (at least :func:`grace`) before it, or, for
    a proof of life's watched end, one starting at or after ``ahead`` (the end of the question's UTC
    day); through the primary key, a statement per :data:`_CHUNK` pairs.

    The look-back: an agent killed just after midnight has stored no row of the new day yet for an
    image that runs on across it, and an idle image (no event, lifecycle off) has none for as long
    as it stays idle; with three windows' grace alone, an image idle since 23:57 was touched by a
    kill at 23:59 but not by one at 00:05 ("not observed" over the unwatched time). An image idle
    for longer than the hour across midnight is still not touched (docs/evidence.md, "Days"): a
    node that ran on for a day without an image's rows is not taken to run it. ``ahead``: the
    node's rows stamped past the question's day, which :func:`last_records` does not read, are the
    dead agent's own on an event clock ahead of its proof's (its windows on the next UTC day: a
    clean-clone run at 23:50 read the image as not running there)."""
    o = observation_windows.c
    covered = is_coverage(conn, observation_windows)
    out: set[str] = set()
    for i in range(0, len(pairs), _CHUNK):
        which = []
        for node, end, seconds, proved in pairs[i : i + _CHUNK]:
            day = dt.datetime.combine(end.date(), dt.time(), dt.UTC)
            start = min(day, end - max(grace(seconds), LOOK_BACK))
            when = sa.and_(o.window_start >= start, o.window_start < midnight_after(day))
            if proved:
                when = sa.or_(when, o.window_start >= ahead)
            which.append(sa.and_(o.node_name == node, when))
        stmt = (
            sa.select(o.node_name)
            .where(of_image(conn, o.image_digest, image), covered, sa.or_(*which))
            .distinct()
        )
        out.update(conn.execute(stmt).scalars())
    return out


def live_span(live: Live, asked: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """The open time of a node by its proof of life, for a question asked at ``asked`` (the store's
    clock): from its watched end to ``asked``; None
    while its agent is taken as alive (:meth:`~stellaops_runtime.store.coverage_live.Live.alive_at`)."""
    if live.alive_at(asked):
        return None
    return live.watched_end, asked


def stopped_span(
    span: tuple[dt.datetime, dt.datetime] | None, stop: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime] | None:
    """``span`` ended at the agent's graceful stop ``stop`` (store/node_stop.py: the image was not
    running then, or the node was going away), None when that leaves nothing of it."""
    if span is None or stop is None:
        return span
    end = min(span[1], stop)
    return (span[0], end) if end > span[0] else None


def _stop_before(live: Live | None, last: dt.datetime) -> Stopped | None:
    """``live``'s stop record, None when the node's latest record ``last`` starts after it (on the
    node's clock, ahead by as much as its agent's proof said): the node ran on, an operator's
    node-gone it outlived (store/node_gone.py)."""
    if live is None or live.stop is None:
        return None
    ahead = max(_NONE, live.alive_node - live.alive_through)
    return None if last > live.stop.at + ahead else live.stop


def asked_at(conn: sa.Connection, asked: dt.datetime | None, day: dt.date | None) -> dt.datetime:
    """The question's moment: ``asked``, else the store's now; the end of ``day`` when earlier."""
    moment = (store_now(conn) if asked is None else asked).astimezone(dt.UTC)
    return moment if day is None else min(moment, _day_end(day))


def _open(
    conn: sa.Connection, image: str, asked: dt.datetime | None = None, day: dt.date | None = None
) -> list[tuple[str, dt.datetime, dt.datetime]]:
    """(node, start, end) of the open time, for a question asked at ``asked`` (the store's now when
    None; ``day``'s end when earlier), of each node whose latest record's UTC day saw ``image``."""
    asked = asked_at(conn, asked, day)
    spans, later, proved = {}, {}, set()
    lasts = image_last_records(conn, image, _day_end(asked.date()))
    lives = liveness(conn, lasts)
    digests = same_image(conn, image) if any(v.stop for v in lives.values()) else (image,)
    for node, (last, seconds) in sorted(lasts.items()):
        live = lives.get(node)
        stop = _stop_before(live, last)
        # a node gone (its Node deleted at its agent's stop, or an operator's node-gone) runs nothing
        # after: every span of it ends there, whichever rule started it
        gone = stop.at if stop is not None and stop.gone else None
        if live is not None and live.vouches_for(last):
            span = stopped_span(live_span(live, asked), live.stop_end(digests) if stop else None)
            proved.add(node)
            # a proof of an earlier day than the node's latest record (stale: its writes failing
            # while the rows are stored, the agent rolled back to one writing none): the images of
            # the record's day have the open time of the record's rule too
            after = open_span(last, asked, seconds) if span and last.date() > span[0].date() else None
            if (after := stopped_span(after, gone)) is not None:
                later[node] = after
        else:
            span = stopped_span(open_span(last, asked, seconds), gone)
        if span is not None:
            spans[node] = span
    out = []
    for found, by_proof in ((spans, proved), (later, set[str]())):
        ends = [(node, start, lasts[node][1], node in by_proof) for node, (start, _) in found.items()]
        seen = _watched_on(conn, image, ends, _day_end(asked.date()))
        out += [(node, *span) for node, span in found.items() if node in seen]
    return out


@dataclass(slots=True)
class Found:
    """One question's open spans of an image (:func:`_open`), and the days they take out once walked
    (:func:`span_days`: 1-7 ms an image with 1,000 nodes down, paid once a run, not per function)."""

    spans: list[tuple[str, dt.datetime, dt.datetime]]
    days: frozenset[dt.date] | None = None


# The open spans of one question, by (image, day), computed once for many functions (a vex run)
OpenMemo = dict[tuple[str, dt.date | None], Found]


def _found(
    conn: sa.Connection, image: str, asked: dt.datetime | None, day: dt.date | None, memo: OpenMemo | None
) -> Found:
    """:func:`_open`, kept in ``memo`` for a question about now: the first call's store clock is the
    moment of every function asked with that memo (one question, as vex reads one snapshot)."""
    if memo is None or asked is not None:
        return Found(_open(conn, image, asked, day))
    key = (image, day)
    if key not in memo:
        memo[key] = Found(_open(conn, image, None, day))
    return memo[key]


def open_days(
    conn: sa.Connection,
    image: str,
    asked: dt.datetime | None = None,
    *,
    day: dt.date | None = None,
    memo: OpenMemo | None = None,
) -> set[dt.date]:
    """UTC days that an open gap takes out of ``image``'s watched days, for a question asked at
    ``asked`` (:func:`asked_at`): every day from the one the node's watched time ends on (when the
    image was watched on that node that day) to the question's (:func:`span_days`)."""
    found = _found(conn, image, asked, day, memo)
    if found.days is None:
        found.days = frozenset(span_days((start, end) for _, start, end in found.spans))
    return set(found.days)  # the caller's own: taking days out of it changes no later call's


def span_days(spans: Iterable[tuple[dt.datetime, dt.datetime]]) -> set[dt.date]:
    """The UTC days the spans touch (an end is exclusive), their union merged first so that many
    nodes' spans cost one pass over the days; of a span longer than the longest retention, its
    first day and the :data:`~stellaops_runtime.store.partitions.MAX_RETENTION_DAYS` before its
    end only (no window of an earlier day is kept to take out)."""
    merged: list[list[dt.date]] = []
    for start, end in sorted(spans):
        first, last = start.date(), max(start, end - _TICK).date()
        if merged and first <= merged[-1][1] + _DAY:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    out: set[dt.date] = set()
    for first, last in merged:
        out.add(first)
        day = max(first, last - dt.timedelta(days=MAX_RETENTION_DAYS))
        while day <= last:
            out.add(day)
            day += _DAY
    return out


def open_gaps(
    conn: sa.Connection,
    *,
    image: str,
    asked: dt.datetime | None = None,
    day: dt.date | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    memo: OpenMemo | None = None,
) -> list[Gap]:
    """The open gaps of the nodes that watched ``image`` that reach into the period (all time without
    one), for a question asked at ``asked`` (:func:`asked_at`): node-wide gaps of kind ``open``
    (module docstring)."""
    out = []
    for node, start, end in _found(conn, image, asked, day, memo).spans:
        if (since is not None and end <= since) or (until is not None and start > until):
            continue
        out.append(Gap(node, True, start, end, 0, 0, 0, (OPEN_LABEL,)))
    return out
