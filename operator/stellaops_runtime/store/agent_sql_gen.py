"""Generate (or check) the agent's SQL, :mod:`stellaops_runtime.store.agent_sql`, from the SQLAlchemy schema.

The schema (:mod:`stellaops_runtime.store.schema`) stays the source of truth,
and the statements the agent runs are built here with SQLAlchemy Core, then
compiled for each backend into plain SQL text, the parameter names in the
driver's positional order and each parameter's bind conversion (the column
type's: ``utc_datetime`` for :class:`~stellaops_runtime.store.schema.UtcDateTime`,
``json`` for the JSON columns). The agent runs the text over DB-API
(:mod:`stellaops_runtime.store.dbconn`) without loading SQLAlchemy (issue 13).
A column type with any other bind conversion stops the generator: dbconn
would not know how to reproduce it.

``--check`` exits 1 when the committed module differs from what the schema
gives (``make test`` runs it, as it does for the wire code).

Usage: ``python -m stellaops_runtime.store.agent_sql_gen [--check]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect, processors

from stellaops_runtime.store.marks import MARK, SEVERAL
from stellaops_runtime.store.rows import HOT_COLS, OBS_COLS, WIN_COLS
from stellaops_runtime.store.schema import (
    SQLITE_SCHEMA_MAP,
    UtcDateTime,
    flush_ledger,
    hot_symbol_windows,
    hot_symbols,
    node_fact_builds,
    observation_windows,
    quarantined_rows,
)

OUTPUT = Path(__file__).resolve().parent / "agent_sql.py"

HEADER = '''"""The agent's SQL, per backend: generated from the SQLAlchemy schema, DO NOT EDIT.

Regenerate with ``python -m stellaops_runtime.store.agent_sql_gen`` after
changing :mod:`stellaops_runtime.store.schema` or the statements in
:mod:`stellaops_runtime.store.agent_sql_gen`; ``--check`` (``make test``) fails
while this module is out of date. Each :class:`Statement` holds the SQL text
in the driver's positional style, its parameter names in order and their bind
conversions (:mod:`stellaops_runtime.store.dbconn`).
"""

# ruff: noqa: E501

from stellaops_runtime.store.dbconn import Statement
'''


# -- the statements, as SQLAlchemy Core ------------------------------------------

INT8_MAX = 2**63 - 1


def _checked_sum(stored: Any, added: Any) -> Any:
    """``stored + added`` on SQLite, NULL where the sum would pass int8 (both are >= 0).

    SQLite's ``+`` turns an overflowing integer sum into a REAL, stored silently in place of
    the count; PostgreSQL refuses it ("bigint out of range"). NULL in a NOT NULL column makes
    SQLite refuse the row too (an IntegrityError), so the ledger quarantines it on both.
    """
    return sa.case(
        (added > sa.literal_column(str(INT8_MAX), sa.BigInteger) - stored, sa.null()), else_=stored + added
    )


def _sqlite_upserts() -> dict[str, tuple[Any, tuple[str, ...]]]:
    ins = sqlite_insert(hot_symbols)
    t, x = hot_symbols.c, ins.excluded
    hot = ins.on_conflict_do_update(
        index_elements=[t.image_digest, t.module, t.function_name, t.evidence_kind],
        set_={
            "invocation_count": _checked_sum(t.invocation_count, x.invocation_count),
            "unique_callers": sa.func.max(t.unique_callers, x.unique_callers),
            "total_latency_ns": _checked_sum(t.total_latency_ns, x.total_latency_ns),
            "max_latency_ns": sa.func.max(t.max_latency_ns, x.max_latency_ns),
            "confidence": sa.func.max(t.confidence, x.confidence),
            "first_seen": sa.func.min(t.first_seen, x.first_seen),
            "last_seen": sa.func.max(t.last_seen, x.last_seen),
            "build_id": sa.case((t.build_id == "", x.build_id), else_=t.build_id),
            "purl": sa.case((t.purl == "", x.purl), else_=t.purl),
            "function_id": sa.case((t.function_id == "", x.function_id), else_=t.function_id),
            "sample": sa.func.coalesce(t.sample, x.sample),
            "node_name": sa.case((x.node_name == "", t.node_name), else_=x.node_name),
            "updated_at": x.updated_at,
        },
    )
    ins = sqlite_insert(hot_symbol_windows)
    t, x = hot_symbol_windows.c, ins.excluded
    win = ins.on_conflict_do_update(
        index_elements=[t.image_digest, t.module, t.function_name, t.evidence_kind, t.window_start],
        set_={
            "invocation_count": _checked_sum(t.invocation_count, x.invocation_count),
            "unique_callers": sa.func.max(t.unique_callers, x.unique_callers),
            "total_latency_ns": _checked_sum(t.total_latency_ns, x.total_latency_ns),
            "max_latency_ns": sa.func.max(t.max_latency_ns, x.max_latency_ns),
            "first_seen": sa.func.min(t.first_seen, x.first_seen),
            "last_seen": sa.func.max(t.last_seen, x.last_seen),
        },
    )
    ins = sqlite_insert(observation_windows)
    t, x = observation_windows.c, ins.excluded
    # A window holds a mark when its evidenced_level is the mark, or when it names a writer without
    # one: the upserts of 0013 set marked_by NULL with every clear, so only an agent before 0013 (a
    # rollback) can have cleared that writer's mark; it still counts (watched_sql.unwatched_windows).
    marked = sa.or_(t.evidenced_level == MARK.rank, t.marked_by.is_not(None))
    obs = ins.on_conflict_do_update(
        index_elements=[t.image_digest, t.node_name, t.window_start],
        set_={
            "event_count": _checked_sum(t.event_count, x.event_count),
            # SQLite's max() of a NULL is NULL: unknown (NULL) must lose to any level.
            "posture_level": sa.func.coalesce(
                sa.func.max(t.posture_level, x.posture_level), t.posture_level, x.posture_level
            ),
            "window_seconds": sa.func.coalesce(
                sa.func.max(t.window_seconds, x.window_seconds), t.window_seconds, x.window_seconds
            ),
            # both sources when they differ (contracts.hotsymbols.union_sources; readers normalise)
            "source": sa.case(
                (
                    sa.or_(x.source == "", sa.func.instr("," + t.source + ",", "," + x.source + ",") > 0),
                    t.source,
                ),
                (t.source == "", x.source),
                (t.source < x.source, t.source + "," + x.source),
                else_=x.source + "," + t.source,
            ),
            # a gap is the union of both reports; NULL (no gap) loses to any time
            "gap_start": sa.func.coalesce(sa.func.min(t.gap_start, x.gap_start), t.gap_start, x.gap_start),
            "gap_end": sa.func.coalesce(sa.func.max(t.gap_end, x.gap_end), t.gap_end, x.gap_end),
            "throttle_count": _checked_sum(t.throttle_count, x.throttle_count),
            "dropped_events": _checked_sum(t.dropped_events, x.dropped_events),
            # migration 0009: the latest row that carries it holds every container of the window so
            # far (hotsymbols/window_units.py; NULL on lifecycle and gap rows, store/rows.py); an older
            # agent's upsert leaves it alone. The unwatched-container mark (0) stays against a row with
            # events or a posture (another agent's value): only a restate row replaces it (store/marks.py)
            "evidenced_level": sa.case(
                (
                    sa.and_(
                        marked,
                        sa.or_(x.event_count > 0, x.posture_level.is_not(None)),
                    ),
                    MARK.rank,
                ),
                # migration 0013: another agent's restate row leaves the mark (its writer's) alone
                (
                    sa.and_(marked, t.marked_by.is_distinct_from(x.marked_by)),
                    MARK.rank,
                ),
                else_=sa.func.coalesce(x.evidenced_level, t.evidenced_level),
            ),
            # the mark's writer; a second agent's mark makes it several (as pg_write.UPSERT_OBS)
            "marked_by": sa.case(
                (
                    sa.and_(
                        marked,
                        x.evidenced_level == MARK.rank,
                        t.marked_by.is_distinct_from(x.marked_by),
                    ),
                    SEVERAL,
                ),
                (
                    sa.and_(
                        marked,
                        sa.or_(
                            x.evidenced_level.is_(None),
                            x.evidenced_level == MARK.rank,
                            x.event_count > 0,
                            x.posture_level.is_not(None),
                            t.marked_by.is_distinct_from(x.marked_by),
                        ),
                    ),
                    t.marked_by,
                ),
                (x.evidenced_level == MARK.rank, x.marked_by),
                else_=sa.null(),
            ),
        },
    )
    return {
        "upsert_hot": (hot, (*HOT_COLS, "updated_at")),
        "upsert_win": (win, WIN_COLS),
        "upsert_obs": (obs, OBS_COLS),
    }


_LEDGER_COLS = ("agent_id", "flush_seq", "part", "row_count", "committed_at")
_QUARANTINE_COLS = ("agent_id", "table_name", "row_json", "error", "quarantined_at")
FACT_BUILD_COLS = ("image_digest", "module", "function_name", "build_id")


def _common(insert: Any) -> dict[str, tuple[Any, tuple[str, ...] | None]]:
    c = flush_ledger.c
    claim = insert(flush_ledger).on_conflict_do_nothing().returning(c.part)
    return {
        # RETURNING, not rowcount: the psycopg dialect may report -1 for ON CONFLICT inserts.
        "ledger_claim": (claim, _LEDGER_COLS),
        "ledger_delete_below": (
            flush_ledger.delete().where(
                c.agent_id == sa.bindparam("agent_id"), c.flush_seq < sa.bindparam("floor")
            ),
            None,
        ),
        "ledger_other_parts": (
            sa.select(c.part).where(
                c.agent_id == sa.bindparam("agent_id"),
                c.flush_seq == sa.bindparam("flush_seq"),
                c.part != sa.bindparam("part"),
            ),
            None,
        ),
        "ledger_prune": (flush_ledger.delete().where(c.committed_at < sa.bindparam("before")), None),
        "quarantine": (quarantined_rows.insert(), _QUARANTINE_COLS),
        # store/fact_builds.py: a node's fact of each build it was stored of, once
        "fact_build": (insert(node_fact_builds).on_conflict_do_nothing(), FACT_BUILD_COLS),
    }


def _sqlite_retention() -> dict[str, tuple[Any, tuple[str, ...] | None]]:
    return {
        f"retention_{table.name}": (
            table.delete().where(table.c.window_start < sa.bindparam("cutoff", type_=UtcDateTime())),
            None,
        )
        for table in (hot_symbol_windows, observation_windows)
    }


# -- compiling -------------------------------------------------------------------


def _kind(type_: Any, dialect: Dialect) -> str:
    if isinstance(type_, UtcDateTime):
        return "utc_datetime"
    impl = type_.dialect_impl(dialect)
    if isinstance(impl, sa.JSON):
        return "json"
    proc = impl.bind_processor(dialect)
    if proc is None:
        return ""
    if proc is processors.to_float:  # REAL where the driver has no native decimal (SQLite)
        return "float"
    raise SystemExit(f"agent_sql_gen: no DB-API bind conversion for {type_!r} on {dialect.name}")


def compile_statement(stmt: Any, dialect: Dialect, column_keys: tuple[str, ...] | None) -> tuple[Any, ...]:
    """(sql, names, kinds, consts) of one statement on one dialect, parameters positional."""
    kw: dict[str, Any] = {"dialect": dialect}
    if column_keys is not None:
        kw["column_keys"] = list(column_keys)
    if dialect.name == "sqlite":
        kw["schema_translate_map"] = SQLITE_SCHEMA_MAP
    compiled = stmt.compile(**kw)
    sql = str(compiled)
    if dialect.name == "sqlite":  # schema_translate_map is applied at execution time
        sql = compiled.preparer._render_schema_translates(sql, SQLITE_SCHEMA_MAP)
    names = tuple(compiled.positiontup or ())
    kinds = tuple(_kind(compiled.binds[n].type, dialect) for n in names)
    # Literals of the statement ('' in a CASE, ',' in a concatenation): SQLAlchemy binds them too.
    consts = tuple(
        (n, compiled.binds[n].value)
        for n in names
        if n not in (column_keys or ()) and compiled.binds[n].value is not None
    )
    return sql, names, kinds, consts


def dialects() -> dict[str, Dialect]:
    lite = sqlite.pysqlite.dialect()
    lite.default_schema_name = "main"  # what a connected engine reads: schema None renders as main.
    return {"sqlite": lite, "postgresql": postgresql.psycopg.dialect(paramstyle="format")}


def statements() -> dict[str, dict[str, tuple[Any, ...]]]:
    """Every statement of the agent, compiled: {dialect: {name: (sql, names, kinds, consts)}}."""
    d = dialects()
    out: dict[str, dict[str, Any]] = {"sqlite": {}, "postgresql": {}}
    for name, (stmt, keys) in {**_sqlite_upserts(), **_common(sqlite_insert), **_sqlite_retention()}.items():
        out["sqlite"][name] = compile_statement(stmt, d["sqlite"], keys)
    for name, (stmt, keys) in _common(pg_insert).items():
        out["postgresql"][name] = compile_statement(stmt, d["postgresql"], keys)
    return out


def render() -> str:
    lines = [HEADER]
    table: dict[str, list[str]] = {}
    for dialect, stmts in statements().items():
        for name, (sql, names, kinds, consts) in sorted(stmts.items()):
            const = f"{dialect.upper()}_{name.upper()}"
            table.setdefault(dialect, []).append(f"        {name!r}: {const},")
            lines.append(
                f"{const} = Statement(\n    {sql!r},\n    {names!r},\n    {kinds!r},\n    {consts!r},\n)\n"
            )
    lines.append("STATEMENTS: dict[str, dict[str, Statement]] = {")
    for dialect, entries in table.items():
        lines.append(f"    {dialect!r}: {{")
        lines.extend(entries)
        lines.append("    },")
    lines.append("}\n")
    return _format("\n".join(lines))


def _format(text: str) -> str:
    """The text as ``ruff format`` leaves it (the repository's ``make lint`` checks every file)."""
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(OUTPUT), "-"],
        input=text, capture_output=True, text=True, check=True, cwd=OUTPUT.parents[3],
    )  # fmt: skip
    return out.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if the committed module is out of date")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.is_file() or OUTPUT.read_text() != text:
            print(
                f"{OUTPUT} is out of date: run python -m stellaops_runtime.store.agent_sql_gen",
                file=sys.stderr,
            )
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
