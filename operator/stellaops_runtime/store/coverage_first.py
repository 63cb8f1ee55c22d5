"""The store's first recorded day: before it nothing is known, so no "not observed" covers it.

Split from :mod:`stellaops_runtime.store.coverage`, which decides what "no rows" means. A
"not observed" over a period is a claim about every day of it, and the store knows only the days
it holds records of: the earliest ``observation_windows`` row (any image, node or kind: windows,
lifecycle and gap rows) marks where that knowledge starts. Before it, no agent had recorded
anything yet, or ``store.retentionDays`` removed the windows and gaps of those days together
(store/partitions.py), and with them every outage, opted-out pod and blind node they recorded.
A period asked about (``query observed --since``) that starts before that UTC day is unknown
(tests/integration/test_answer_before_first_record.py). Days are the unit, as for the watched
days: retention removes whole days, and a real first agent's start day is a gap already
(tests/e2e/test_first_agent_window.py), so a period from the first day's midnight on keeps its
answer. A row stamped before 2020 (``RECORDS_FROM``, adapter/validate.py ``MIN_EVENT_NS``: no
event's time is, the agent restamps such times) is clock trouble, not where the records start: one
such row of any image would otherwise take the rule away from every answer.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from stellaops_runtime.store.queries import _as_utc, rfc3339
from stellaops_runtime.store.schema import observation_windows

# adapter/validate.py MIN_EVENT_NS (2020-01-01): earlier rows are clock trouble, not the first record
RECORDS_FROM = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def first_record(conn: sa.Connection) -> dt.datetime | None:
    """The earliest ``window_start`` of any ``observation_windows`` row, in UTC; None on an empty
    store. Rows before :data:`RECORDS_FROM` are left out (clock trouble). Read through the index on
    ``window_start`` (migration 0007)."""
    start = observation_windows.c.window_start
    value = conn.execute(sa.select(sa.func.min(start)).where(start >= RECORDS_FROM)).scalar()
    return None if value is None else _as_utc(value)


def first_day(recorded_from: dt.datetime) -> dt.datetime:
    """Midnight UTC of the first record's UTC day."""
    return dt.datetime.combine(recorded_from.astimezone(dt.UTC).date(), dt.time(), dt.UTC)


def before_first_day(since: dt.datetime, recorded_from: dt.datetime | None) -> str | None:
    """Why a period starting ``since`` cannot be "not observed" (it starts before the first
    recorded day), in words; None when it does not (or the store holds nothing)."""
    if recorded_from is None:
        return None
    day = first_day(recorded_from)
    if since >= day:
        return None
    return (
        f"the period starts before {day.date().isoformat()}, the first UTC day the store holds a record "
        f"of (its first: {rfc3339(recorded_from)}): nothing is known of the days before it (no agent had "
        "recorded anything yet, or store.retentionDays removed their windows and gaps), so a 'not "
        f"observed' cannot cover them (ask --since {rfc3339(day)} or later)"
    )
