"""Questions the hot-symbol store answers, as functions over a connection.

"Was function F observed in image I?", "which functions of package P ran in
I?", "what is hot in I?", "did F run more than 1000 times a day?" and "I was
observed for 30 days and F never ran". The same SQLAlchemy Core statements run
on PostgreSQL and SQLite (the engine maps schema ``signals`` away on SQLite;
:class:`~stellaops_runtime.store.schema.utc_date` compiles per backend). The
caller owns the connection; nothing here opens or migrates anything.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store.schema import hot_symbol_windows, hot_symbols, observation_windows, utc_date

# Evidence about files (an exec'd binary, a mapped library), not functions.
FILE_EVIDENCE = (EvidenceKind.LOADED.value, EvidenceKind.EXECUTED.value)


@dataclass(frozen=True, slots=True)
class SymbolRow:
    """One cumulative hot-symbol row, as a user reads it."""

    image_digest: str
    module: str
    function_name: str
    evidence_kind: str
    purl: str
    build_id: str
    function_id: str
    invocation_count: int
    unique_callers: int
    confidence: float
    first_seen: dt.datetime
    last_seen: dt.datetime
    node_name: str
    sample: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; datetimes as RFC 3339 UTC strings."""
        d = asdict(self)
        d["first_seen"] = rfc3339(self.first_seen)
        d["last_seen"] = rfc3339(self.last_seen)
        d["confidence"] = round(self.confidence, 6)
        return d


def rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


_ROW_COLUMNS = [hot_symbols.c[name] for name in SymbolRow.__slots__]  # type: ignore[attr-defined]


def _rows(conn: sa.Connection, stmt: sa.Select[Any]) -> list[SymbolRow]:
    return [SymbolRow(**r._mapping) for r in conn.execute(stmt)]


def _function_filter(*, image: str, function: str, module: str | None) -> list[sa.ColumnElement[bool]]:
    c = hot_symbol_windows.c
    where = [c.image_digest == image, c.function_name == function, c.evidence_kind.not_in(FILE_EVIDENCE)]
    if module is not None:
        where.append(c.module == module)
    return where


def observed(conn: sa.Connection, *, image: str, function: str, purl: str | None = None) -> list[SymbolRow]:
    """Rows of ``function`` in ``image`` (every module and evidence kind); ``purl`` must match exactly."""
    c = hot_symbols.c
    stmt = sa.select(*_ROW_COLUMNS).where(c.image_digest == image, c.function_name == function)
    if purl is not None:
        stmt = stmt.where(c.purl == purl)
    return _rows(conn, stmt.order_by(c.invocation_count.desc(), c.module, c.evidence_kind))


def functions(
    conn: sa.Connection, *, image: str, purl: str | None = None, purl_prefix: str | None = None
) -> list[SymbolRow]:
    """Every function row of a package in ``image`` by exact ``purl`` or ``purl_prefix``, sorted by function.

    The prefix match is case-sensitive on both backends (SQLite's LIKE is not,
    hence the extra ``substr`` comparison; PostgreSQL uses the
    text_pattern_ops index for the LIKE).
    """
    if (purl is None) == (purl_prefix is None):
        raise ValueError("give exactly one of purl and purl_prefix")
    c = hot_symbols.c
    stmt = sa.select(*_ROW_COLUMNS).where(c.image_digest == image, c.evidence_kind.not_in(FILE_EVIDENCE))
    if purl is not None:
        stmt = stmt.where(c.purl == purl)
    else:
        assert purl_prefix is not None
        stmt = stmt.where(
            c.purl.startswith(purl_prefix, autoescape=True),
            sa.func.substr(c.purl, 1, len(purl_prefix)) == purl_prefix,
        )
    return _rows(conn, stmt.order_by(c.function_name, c.module, c.evidence_kind))


def hot(conn: sa.Connection, *, image: str, limit: int = 20) -> list[SymbolRow]:
    """The ``limit`` most-invoked functions of ``image`` (files excluded), ties by name."""
    c = hot_symbols.c
    stmt = (
        sa.select(*_ROW_COLUMNS)
        .where(c.image_digest == image, c.evidence_kind.not_in(FILE_EVIDENCE))
        .order_by(c.invocation_count.desc(), c.function_name, c.module, c.evidence_kind)
        .limit(limit)
    )
    return _rows(conn, stmt)


def calls_per_day(
    conn: sa.Connection,
    *,
    image: str,
    function: str,
    days: int,
    module: str | None = None,
    until: dt.date | None = None,
) -> list[tuple[dt.date, int]]:
    """Invocations of ``function`` in ``image`` per UTC day, for the ``days`` days ending ``until``.

    ``until`` defaults to today (UTC). Only days with calls are listed, oldest
    first. Counts sum every module and evidence kind of the function unless
    ``module`` narrows it.
    """
    last = until or dt.datetime.now(dt.UTC).date()
    first = last - dt.timedelta(days=days - 1)
    start = dt.datetime.combine(first, dt.time(), dt.UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.UTC)
    c = hot_symbol_windows.c
    day = utc_date(c.window_start).label("day")
    stmt = (
        sa.select(day, sa.func.sum(c.invocation_count).label("calls"))
        .where(*_function_filter(image=image, function=function, module=module))
        .where(c.window_start >= start, c.window_start < end)
        .group_by(day)
        .order_by(day)
    )
    return [(_as_date(r.day), int(r.calls)) for r in conn.execute(stmt)]


def observed_days_without_calls(
    conn: sa.Connection, *, image: str, function: str, module: str | None = None
) -> int:
    """Distinct UTC days ``image`` was under observation on which ``function`` had no invocation."""
    o = observation_windows.c
    w = hot_symbol_windows.c
    obs_day = utc_date(o.window_start)
    called_days = (
        sa.select(utc_date(w.window_start))
        .where(*_function_filter(image=image, function=function, module=module))
        .where(w.invocation_count > 0)
    )
    stmt = sa.select(sa.func.count(sa.distinct(obs_day))).where(
        o.image_digest == image, o.event_count > 0, obs_day.not_in(called_days)
    )
    return int(conn.execute(stmt).scalar_one())


def _as_date(value: Any) -> dt.date:
    """SQLite returns date() as text; PostgreSQL as a date."""
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))
