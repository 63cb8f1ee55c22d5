"""Bind conversions of the store's own driver layer: schema.py's column types to driver values.

Split from store/dbconn.py (past ~400 lines): what a Python value becomes on
each dialect (UTC datetimes, JSON, REAL) is pure logic, apart from the
connections that carry it. ``CONVERT`` maps a dialect and a column kind to the
function store/dbconn.py's ``Conn.bind`` applies.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(dt.UTC)


def sqlite_datetime(value: dt.datetime | None) -> str | None:
    """UtcDateTime on SQLite: naive UTC in SQLAlchemy's text form (always six fraction digits)."""
    if value is None:
        return None
    v = _utc(value)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d} "
        f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
    )


def sqlite_json(value: Any) -> str | None:
    """JSON(none_as_null=True) on SQLite: None is NULL, anything else ``json.dumps`` text."""
    return None if value is None else json.dumps(value)


def postgres_datetime(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else _utc(value)


def postgres_json(value: Any) -> Any:
    if value is None:
        return None
    from psycopg.types.json import Jsonb

    return Jsonb(value)


def to_float(value: Any) -> float | None:
    """REAL where the driver has no native decimal (SQLite): ``float()`` of the value."""
    return None if value is None else float(value)


CONVERT: dict[str, dict[str, Callable[[Any], Any]]] = {
    "sqlite": {"utc_datetime": sqlite_datetime, "json": sqlite_json, "float": to_float},
    "postgresql": {"utc_datetime": postgres_datetime, "json": postgres_json, "float": to_float},
}
