"""Nanoseconds since the epoch to aware UTC datetimes and back, without importing SQLAlchemy.

The agent's write path (:mod:`stellaops_runtime.store.rows`,
:mod:`stellaops_runtime.store.pg_write`) and the readers share these; they
live apart from the SQLAlchemy schema so that a process that never loads the
schema (the agent, issue 13) has them too. :mod:`stellaops_runtime.store.schema`
re-exports them.
"""

from __future__ import annotations

import datetime as dt

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def ns_to_datetime(ns: int) -> dt.datetime:
    """Nanoseconds since the epoch -> aware UTC datetime (microsecond precision)."""
    return _EPOCH + dt.timedelta(microseconds=ns // 1000)


def datetime_to_ns(value: dt.datetime) -> int:
    """An aware datetime -> nanoseconds since the epoch (what :func:`ns_to_datetime` took)."""
    delta = value.astimezone(dt.UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
