"""How rows of one window are merged so that the unwatched-container mark is never written away by mistake.

The mark (``evidenced`` None, rank 0: hotsymbols/day_calls.py) says a container of the image ran
unwatched that UTC day on the node, and the store takes the node's day out on it. Another agent
may write the same window again (one restarted inside it, two at once on the node in a surge
rollout) with the value it knew, without the mark; the store used to keep a window's latest
value, so the mark went and the day read watched. So the store keeps a mark against any row
with events or a posture (agent_sql_gen.py, pg_write.py ``UPSERT_OBS``), and only a restate row
(no events, no posture, carrying ``evidenced``: hotsymbols/window_units.py ``restated``, written
by the agent that judged the window, among them its "calls seen later that day") replaces it.

Rows are merged before the store sees them (one batch: store/upsert.py; the outage buffer:
store/pending_buffer.py), and a restate row merged into a row with events would no longer be
one. :func:`fold` merges by the store's rule and keeps a window's restate row apart, to be
written after the window's other rows, carrying the latest value of the rows that came after
it (a mark among them stays a mark). Pure: no I/O.

A mark also names its writer, ``marked_by`` (the agent's ``agent_id``, stamped by
:func:`stamped`; migration 0013). Another agent (a replaced pod replaying the export file) knows
only the containers it saw, so its restate row clearing this agent's mark made a day read watched
beside a silent container nobody watched. A restate row therefore clears only a mark its own agent
wrote; a mark a second agent writes too becomes :data:`SEVERAL`, which no restate clears; rows
without a writer (agents before 0013) keep the old rule between themselves. :func:`fold` follows
the same rule, erring towards a kept mark where one row cannot say what two restate rows of two
agents would (a later agent's mark over an earlier one's clear in one batch reads "several").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import TypeVar

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture

MARK = Posture.NONE  # the unwatched-container mark
SEVERAL = "*"  # ``marked_by`` of a mark two agents wrote (an agent_id is "<node>/<uuid>": never "*")
K = TypeVar("K", bound=Hashable)


def is_restate(o: ObservationWindow) -> bool:
    """A row that restates the window's ``evidenced``: no events, no posture, no gap, a value."""
    return o.event_count == 0 and o.posture is None and o.evidenced is not None and not o.has_gap


def stamped(windows: list[ObservationWindow], agent_id: str) -> list[ObservationWindow]:
    """``windows`` with ``marked_by`` = ``agent_id`` on every mark and restate row (the rows whose
    writer the store compares); the others are returned as they are."""
    if not agent_id:
        return windows
    return [
        dataclasses.replace(o, marked_by=agent_id) if o.evidenced is MARK or is_restate(o) else o
        for o in windows
    ]


def writer(have_by: str, o: ObservationWindow) -> str:
    """The writer of a mark ``have_by`` wrote once a later marking row ``o`` is added: one agent's
    mark stays its own, a second agent's makes it :data:`SEVERAL` (store: pg_write ``UPSERT_OBS``)."""
    return have_by if have_by == o.marked_by else SEVERAL


def merged(have: ObservationWindow, o: ObservationWindow) -> ObservationWindow:
    """``have`` and a later row ``o`` of the same window (not a restate row), by the store's rule:
    a mark stays against it, and names who wrote it."""
    out = have.merged(o)
    if have.evidenced_posture is MARK:
        by = writer(have.marked_by, o) if o.evidenced_posture is MARK else have.marked_by
        return dataclasses.replace(out, evidenced=MARK, marked_by=by)
    return dataclasses.replace(out, marked_by=o.marked_by if out.evidenced_posture is MARK else "")


def _restated(r: ObservationWindow, o: ObservationWindow) -> ObservationWindow:
    """One restate row for a window's restate row ``r`` and a later one ``o``: the later value, but a
    mark ``r`` wrote stays against another agent's clear, and two agents' marks are several."""
    if r.evidenced is MARK and r.marked_by != o.marked_by:
        return r if o.evidenced is not MARK else dataclasses.replace(r, marked_by=SEVERAL)
    return o


def fold(
    rows: dict[K, ObservationWindow], restates: dict[K, ObservationWindow], key: K, o: ObservationWindow
) -> bool:
    """Merge ``o`` into the window's row (``rows``) or its restate row (``restates``); True when it
    made a new entry in either."""
    if is_restate(o):
        r = restates.get(key)
        restates[key] = o if r is None else _restated(r, o)  # the later restatement: the latest value
        return r is None
    have = rows.get(key)
    rows[key] = o if have is None else merged(have, o)
    r = restates.get(key)
    value = o.evidenced_posture
    if r is not None and value is not None and r.evidenced is not MARK:
        by = o.marked_by if value is MARK else r.marked_by  # a mark's writer; else r's own clear
        restates[key] = dataclasses.replace(r, evidenced=value, marked_by=by)  # written as a restate
    return have is None
