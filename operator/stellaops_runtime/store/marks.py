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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import TypeVar

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture

MARK = Posture.NONE  # the unwatched-container mark
K = TypeVar("K", bound=Hashable)


def is_restate(o: ObservationWindow) -> bool:
    """A row that restates the window's ``evidenced``: no events, no posture, no gap, a value."""
    return o.event_count == 0 and o.posture is None and o.evidenced is not None and not o.has_gap


def merged(have: ObservationWindow, o: ObservationWindow) -> ObservationWindow:
    """``have`` and a later row ``o`` of the same window (not a restate row), by the store's rule:
    a mark stays against it."""
    out = have.merged(o)
    if have.evidenced_posture is MARK and out.evidenced_posture is not MARK:
        out = dataclasses.replace(out, evidenced=MARK)
    return out


def fold(
    rows: dict[K, ObservationWindow], restates: dict[K, ObservationWindow], key: K, o: ObservationWindow
) -> bool:
    """Merge ``o`` into the window's row (``rows``) or its restate row (``restates``); True when it
    made a new entry in either."""
    if is_restate(o):
        new = key not in restates
        restates[key] = o  # the later restatement is the agent's latest value
        return new
    have = rows.get(key)
    rows[key] = o if have is None else merged(have, o)
    r = restates.get(key)
    value = o.evidenced_posture
    if r is not None and value is not None and r.evidenced is not MARK:
        restates[key] = dataclasses.replace(r, evidenced=value)  # the latest value, written as a restate
    return have is None
