"""Bind conversions of the store's own driver layer: schema.py's column types to driver values.

Split from store/dbconn.py (past ~400 lines): what a Python value becomes on
each dialect (UTC datetimes, JSON, REAL) is pure logic, apart from the
connections that carry it. ``CONVERT`` maps a driver (``sqlite``, ``postgresql``: psycopg,
``pgwire``: the agent's own PostgreSQL client) and a column kind to the function
store/dbconn.py's ``Conn.bind`` applies; :func:`convert_for` picks a connection's table once.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from stellaops_runtime.store.pg_connect import is_pgwire


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


def pgwire_json(value: Any) -> Any:
    """JSONB on pgwire's connections: its own wrapper (psycopg is not imported for them)."""
    if value is None:
        return None
    from stellaops_runtime.pgwire import Jsonb

    return Jsonb(value)


def to_float(value: Any) -> float | None:
    """REAL where the driver has no native decimal (SQLite): ``float()`` of the value."""
    return None if value is None else float(value)


CONVERT: dict[str, dict[str, Callable[[Any], Any]]] = {
    "sqlite": {"utc_datetime": sqlite_datetime, "json": sqlite_json, "float": to_float},
    "postgresql": {"utc_datetime": postgres_datetime, "json": postgres_json, "float": to_float},
    "pgwire": {"utc_datetime": postgres_datetime, "json": pgwire_json, "float": to_float},
}


def convert_for(raw: Any, dialect: str) -> dict[str, Callable[[Any], Any]]:
    """The conversions for the DB-API connection ``raw`` of ``dialect`` (chosen once per connection use)."""
    return CONVERT["pgwire" if dialect == "postgresql" and is_pgwire(raw) else dialect]
