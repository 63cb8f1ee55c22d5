"""Questions the hot-symbol store answers, as functions over a connection.

"Was function F observed in image I?", "which functions of package P ran in
I?", "what is hot in I?" (calls and watched days per UTC day: store/day_counts.py).
The same SQLAlchemy Core statements run on PostgreSQL and SQLite (the engine
maps schema ``signals`` away on SQLite; :class:`~stellaops_runtime.store.schema.utc_date`
compiles per backend). The
caller owns the connection; nothing here opens or migrates anything.

Functions and packages may be given as parsed questions
(:class:`~stellaops_runtime.store.function_refs.FunctionQuery`,
:class:`~stellaops_runtime.store.refs.PurlQuery`: function IDs, mangled names,
purls matched as purls) or as plain strings (exact match). Whether an image
was under observation, and how well, is :mod:`stellaops_runtime.store.coverage`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import FACT_KINDS, EvidenceKind
from stellaops_runtime.store.exact_sum import exact_sum
from stellaops_runtime.store.function_refs import FunctionQuery
from stellaops_runtime.store.refs import PurlQuery, prefix_test
from stellaops_runtime.store.same_image import of_image
from stellaops_runtime.store.schema import (
    hot_symbol_windows,
    hot_symbols,
)
from stellaops_runtime.store.watched_sql import has_gap_columns as has_gap_columns
from stellaops_runtime.store.watched_sql import has_posture_columns as has_posture_columns

# Evidence about files (an exec'd binary, a mapped library), not functions.
FILE_EVIDENCE = (EvidenceKind.LOADED.value, EvidenceKind.EXECUTED.value)
# Rows of no call the answers read as facts: an ``unprobed`` tail (agent/unprobed.py), a ``listed``
# JAR (agent/listed_jars.py). No observation: never a sign that the package's code was loaded.
FACT_EVIDENCE = tuple(sorted(k.value for k in FACT_KINDS))
# A function row of no calls (another tool's spool or export; the agent writes none but its
# ``unprobed`` facts: agent/unprobed.py) observed nothing.
_CALLED = hot_symbols.c.invocation_count > 0


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


_K = TypeVar("_K")


def _rows(conn: sa.Connection, stmt: sa.Select[Any]) -> list[SymbolRow]:
    return [SymbolRow(**r._mapping) for r in conn.execute(stmt)]


def snapshot(conn: sa.Connection) -> None:
    """Make every later read on ``conn`` one snapshot of the store.

    Agents flush while a question is answered. Reads from before and after one flush (calls
    before it, watched days after it) can say "not called" of a call that flush stored; VEX made
    ``not_affected`` of one. PostgreSQL: REPEATABLE READ. SQLite: one read transaction (its first
    read takes the shared lock and keeps it to the end), so an agent's write waits, within its
    busy timeout, until the answer is read: answers take milliseconds to seconds, and a write
    that waits longer is retried, never lost (the flush ledger makes the retry exact).
    """
    if conn.in_transaction():
        conn.commit()
    if conn.dialect.name == "postgresql":
        conn.execution_options(isolation_level="REPEATABLE READ")
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN")  # sqlite3 opens none for reads; the connection's end closes it


def _image(conn: sa.Connection, image: str) -> sa.ColumnElement[bool]:
    """``hot_symbols`` rows of ``image`` under any digest the agents paired with it (store/same_image.py)."""
    return of_image(conn, hot_symbols.c.image_digest, image)


def _purls(conn: sa.Connection, image: str, facts: bool) -> sa.Select[Any]:
    c = hot_symbols.c
    stmt = sa.select(c.purl).where(_image(conn, image), c.purl != "").distinct()
    return stmt if facts else stmt.where(c.evidence_kind.not_in(FACT_EVIDENCE))


def matching_purls(conn: sa.Connection, *, image: str, purl: PurlQuery, facts: bool = True) -> list[str]:
    """The distinct stored purls of ``image`` that are the package ``purl`` asks for (of rows of
    code only, not of :data:`FACT_EVIDENCE`, unless ``facts``: the package seen loaded)."""
    return sorted(p for (p,) in conn.execute(_purls(conn, image, facts)) if purl.matches(p))


def prefixed_purls(conn: sa.Connection, *, image: str, prefix: str, facts: bool = True) -> list[str]:
    """The distinct stored purls of ``image`` that start with ``prefix`` (case-sensitive, a ``%2F``
    read as ``/``: refs.prefix_test; ``facts`` as for :func:`matching_purls`)."""
    covers = prefix_test(prefix)
    return sorted(p for (p,) in conn.execute(_purls(conn, image, facts)) if covers(p))


def prefix_filter(conn: sa.Connection, *, image: str, prefix: str) -> sa.ColumnElement[bool]:
    """The WHERE clause for the purls ``prefix`` covers: those starting with it as written (a
    ``substr``, plus PostgreSQL's index on LIKE; SQLite refuses a pattern over 50,000 bytes), and
    the image's few stored with a name's ``/`` spelled the other way (refs.prefix_test)."""
    c = hot_symbols.c
    raw = sa.func.substr(c.purl, 1, len(prefix)) == prefix
    if conn.dialect.name == "postgresql":
        raw = sa.and_(raw, c.purl.startswith(prefix, autoescape=True))
    other = [p for p in prefixed_purls(conn, image=image, prefix=prefix) if not p.startswith(prefix)]
    return sa.or_(raw, c.purl.in_(other)) if other else raw


def _purl_filter(conn: sa.Connection, *, image: str, purl: str | PurlQuery) -> sa.ColumnElement[bool] | None:
    """The WHERE clause for a package; None when no stored purl can match (no rows)."""
    if isinstance(purl, str):
        return hot_symbols.c.purl == purl
    found = matching_purls(conn, image=image, purl=purl)
    return hot_symbols.c.purl.in_(found) if found else None


def _name_filter(function: str | FunctionQuery) -> sa.ColumnElement[bool]:
    c = hot_symbols.c
    if isinstance(function, str):
        return c.function_name == function
    # GCC clones (name_spellings.clone_of): narrowed here by their start, kept by matches_name
    # (matches_clone for a function ID, whose clones are those of its build)
    clones = [
        sa.func.substr(c.function_name, 1, len(n) + len(sep)) == n + sep
        for n in function.clones
        for sep in (".", " (.")
    ]
    if not function.is_function_id:
        # substr, not LIKE: SQLite's LIKE ignores case, and names hold LIKE's wildcards (_ and %)
        overloads = [sa.func.substr(c.function_name, 1, len(n) + 1) == f"{n}(" for n in function.overloads]
        # A Rust path's stored names hold ``::<last segment>``; SQL cannot read generics away, so
        # this only narrows the image's rows and observed() keeps those that match_name. replace(),
        # not LIKE: no pattern (SQLite refuses one of more than 50,000 bytes), case-sensitive.
        segs = [f"::{p.rpartition('::')[2]}" for p in function.rust_paths]
        rust = [sa.func.replace(c.function_name, seg, "") != c.function_name for seg in segs]
        # A name with a parameter list, spaced otherwise than the demangler's (name_spellings.spaceless).
        # ... and its C++ clones (``f(std::istream&) (.isra.0)``), kept by matches_name in observed()
        nospace = sa.func.replace(c.function_name, " ", "")
        spaced: list[sa.ColumnElement[bool]] = [nospace.in_(function.spaceless)] if function.spaceless else []
        spaced += [sa.func.substr(nospace, 1, len(n) + 2) == f"{n}(." for n in function.spaceless]
        named = c.function_name.in_(function.names + function.c_names)
        return sa.or_(named, *overloads, *rust, *spaced, *clones)
    by_name = sa.and_(
        c.build_id == function.build_id, c.function_name.in_(function.names), c.function_id == ""
    )
    if clones:  # ``<build-id>:crc32+0x0`` ran as that build's ``crc32.part.0`` (stored under its own ID)
        by_name = sa.or_(by_name, sa.and_(c.build_id == function.build_id, sa.or_(*clones)))
    if function.entry_id:
        return sa.or_(c.function_id == function.entry_id, by_name)
    return by_name


def _named_by_id(function: FunctionQuery, r: SymbolRow) -> bool:
    """Whether a row :func:`_name_filter` found for a function ID is the function or its clone."""
    if r.function_id == function.entry_id and function.entry_id:
        return True
    if r.build_id == function.build_id and r.function_name in function.names and not r.function_id:
        return True
    return function.matches_clone(r.function_name, r.build_id)


def observed(
    conn: sa.Connection,
    *,
    image: str,
    function: str | FunctionQuery,
    purl: str | PurlQuery | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[SymbolRow]:
    """Rows of ``function`` with calls in ``image`` (every module and evidence kind), maybe of one package.

    A string ``function``/``purl`` must match exactly; a :class:`FunctionQuery`
    matches canonical names (with their overloads and Rust generic-free paths)
    or a function ID, a :class:`PurlQuery` every stored purl of that package.
    With ``since``/``until`` only calls seen in that period count: counts and
    first/last seen are the period's (from the per-window history) and rows without calls in it are left out.
    """
    c = hot_symbols.c
    stmt = sa.select(*_ROW_COLUMNS).where(_image(conn, image), _name_filter(function), _CALLED)
    if purl is not None:
        where = _purl_filter(conn, image=image, purl=purl)
        if where is None:
            return []
        stmt = stmt.where(where)
    rows = _rows(conn, stmt.order_by(c.invocation_count.desc(), c.module, c.evidence_kind))
    narrowed = isinstance(function, FunctionQuery) and (function.rust_paths or function.clones)
    if isinstance(function, FunctionQuery) and narrowed and not function.is_function_id:
        # the SQL narrows a Rust path and a clone by their start only
        rows = [r for r in rows if function.matches_name(r.function_name)]
    elif isinstance(function, FunctionQuery) and function.is_function_id and function.clones:
        rows = [r for r in rows if _named_by_id(function, r)]
    if rows and (since is not None or until is not None):
        rows = _in_period(conn, rows, since=since, until=until, sure=True)
    return rows


def unprobed(
    conn: sa.Connection,
    *,
    image: str,
    function: FunctionQuery | None,
    purl: PurlQuery | None = None,
    purl_prefix: str | None = None,
) -> list[SymbolRow]:
    """The ``unprobed`` rows (agent/unprobed.py) of ``image`` that are split tails of ``function``
    (matched as :func:`observed` matches its clones; any function's when None), maybe of one
    package or of those ``purl_prefix`` covers, whose rows without a package count too (the
    tail's file may be the package's, as for an unattributed call): any period."""
    c = hot_symbols.c
    where = [of_image(conn, c.image_digest, image), c.evidence_kind == EvidenceKind.UNPROBED.value]
    if function is not None:
        where.append(_name_filter(function))
    if purl is not None:
        by_purl = _purl_filter(conn, image=image, purl=purl)
        where.append(c.purl == "" if by_purl is None else sa.or_(by_purl, c.purl == ""))
    if purl_prefix is not None:
        where.append(sa.or_(prefix_filter(conn, image=image, prefix=purl_prefix), c.purl == ""))
    rows = _rows(conn, sa.select(*_ROW_COLUMNS).where(*where).order_by(c.module, c.function_name))
    if function is None:
        return rows
    if function.is_function_id:
        return [r for r in rows if function.matches_clone(r.function_name, r.build_id)]
    return [r for r in rows if function.matches_name(r.function_name)]


def rows_where(
    conn: sa.Connection,
    *where: sa.ColumnElement[bool],
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[SymbolRow]:
    """The hot-symbol rows matching ``where``; with ``since``/``until`` only those with calls in that
    period, their counts and first/last seen the period's (as :func:`observed` gives them)."""
    rows = _rows(conn, sa.select(*_ROW_COLUMNS).where(*where))
    if rows and (since is not None or until is not None):
        rows = _in_period(conn, rows, since=since, until=until)
    return rows


# Keys one statement's IN list holds at most (4 parameters each): psycopg binds at most 65,535
# parameters, older SQLite builds 32,766, and PostgreSQL nests a row IN list as ORs, exceeding its
# stack depth at some thousands; an image with a stripped binary has 100,000s of rows.
KEYS_PER_STATEMENT = 1_000


def chunks(keys: list[_K]) -> Iterator[list[_K]]:
    """``keys`` in parts of at most KEYS_PER_STATEMENT, for one IN list each."""
    for i in range(0, len(keys), KEYS_PER_STATEMENT):
        yield keys[i : i + KEYS_PER_STATEMENT]


def _in_period(
    conn: sa.Connection,
    rows: list[SymbolRow],
    *,
    since: dt.datetime | None,
    until: dt.datetime | None,
    sure: bool = False,
) -> list[SymbolRow]:
    """``rows`` with their calls in windows that meet the period. ``sure``: only windows whose
    first or last call (both calls) is in it; a period strictly between them may hold none."""
    w = hot_symbol_windows.c
    key = sa.tuple_(w.image_digest, w.module, w.function_name, w.evidence_kind)
    stmt = sa.select(
        w.image_digest,
        w.module,
        w.function_name,
        w.evidence_kind,
        exact_sum(w.invocation_count).label("calls"),
        sa.func.min(w.first_seen).label("first"),
        sa.func.max(w.last_seen).label("last"),
    ).where(w.invocation_count > 0)
    if since is not None:
        stmt = stmt.where(w.last_seen >= since)
    if until is not None:
        stmt = stmt.where(w.first_seen <= until)
    if sure and since is not None and until is not None:
        stmt = stmt.where(sa.or_(w.first_seen >= since, w.last_seen <= until))
    stmt = stmt.group_by(w.image_digest, w.module, w.function_name, w.evidence_kind)
    found: dict[tuple[Any, ...], Any] = {}
    for part in chunks([(r.image_digest, r.module, r.function_name, r.evidence_kind) for r in rows]):
        found |= {tuple(r[:4]): r for r in conn.execute(stmt.where(key.in_(part)))}
    out = []
    for r in rows:
        p = found.get((r.image_digest, r.module, r.function_name, r.evidence_kind))
        if p is not None:
            first, last = (_as_utc(p.first), _as_utc(p.last))
            out.append(
                dataclasses.replace(r, invocation_count=int(p.calls), first_seen=first, last_seen=last)
            )
    return sorted(out, key=lambda r: (-r.invocation_count, r.module, r.evidence_kind))


def _as_utc(value: Any) -> dt.datetime:
    """min()/max() of a UTC column: SQLite gives naive text back, PostgreSQL an aware datetime."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def functions(
    conn: sa.Connection,
    *,
    image: str,
    purl: str | PurlQuery | None = None,
    purl_prefix: str | None = None,
) -> list[SymbolRow]:
    """Every function row of a package in ``image`` by ``purl`` or ``purl_prefix``, sorted by function.

    A string ``purl`` matches exactly, a :class:`PurlQuery` as a package URL.

    The prefix match is case-sensitive on both backends (a ``substr`` comparison;
    PostgreSQL also uses the text_pattern_ops index for a LIKE).
    """
    if (purl is None) == (purl_prefix is None):
        raise ValueError("give exactly one of purl and purl_prefix")
    c = hot_symbols.c
    stmt = sa.select(*_ROW_COLUMNS).where(_image(conn, image), c.evidence_kind.not_in(FILE_EVIDENCE), _CALLED)
    if purl is not None:
        where = _purl_filter(conn, image=image, purl=purl)
        if where is None:
            return []
        stmt = stmt.where(where)
    else:
        assert purl_prefix is not None
        stmt = stmt.where(prefix_filter(conn, image=image, prefix=purl_prefix))
    return _rows(conn, stmt.order_by(c.function_name, c.module, c.evidence_kind))


def hot(conn: sa.Connection, *, image: str, limit: int = 20) -> list[SymbolRow]:
    """The ``limit`` most-invoked functions of ``image`` (files excluded), ties by name."""
    c = hot_symbols.c
    stmt = (
        sa.select(*_ROW_COLUMNS)
        .where(_image(conn, image), c.evidence_kind.not_in(FILE_EVIDENCE), _CALLED)
        .order_by(c.invocation_count.desc(), c.function_name, c.module, c.evidence_kind)
        .limit(limit)
    )
    return _rows(conn, stmt)


@dataclass(frozen=True, slots=True)
class SymbolCounts:
    """How many hot-symbol rows an image has: all of them, and those naming a function."""

    rows: int
    function_rows: int


def symbol_counts(conn: sa.Connection) -> dict[str, SymbolCounts]:
    """Cumulative hot-symbol row counts per image (file evidence counts in ``rows`` only). An
    ``unprobed`` fact (agent/unprobed.py) or a ``listed`` JAR (agent/listed_jars.py) is no
    observation and is not counted: an image of facts only reads watched, or known by its gaps
    (cli/query_images.py), never "observed"."""
    c = hot_symbols.c
    is_function = sa.case((c.evidence_kind.in_(FILE_EVIDENCE), 0), else_=1)
    stmt = sa.select(c.image_digest, sa.func.count(), sa.func.sum(is_function))
    stmt = stmt.where(c.evidence_kind.not_in(FACT_EVIDENCE)).group_by(c.image_digest)
    return {img: SymbolCounts(int(n), int(f or 0)) for img, n, f in conn.execute(stmt)}
