"""Check a real store schema against the Citus plan, from PostgreSQL's catalog.

Citus is not something the tests can run, so the schema is kept
Citus-compatible by rule, and this module checks the rules on the schema the
migrations really built (read from ``pg_catalog``), not on the SQLAlchemy
metadata. :func:`read_facts` is the I/O: one snapshot of the tables, columns,
unique keys (primary keys, unique constraints and indexes, exclusion
constraints, on each table and each of its partitions), foreign keys and
partitioning of a schema. :func:`problems` is pure and returns one clear
sentence per broken rule, given the plan of :mod:`stellaops_runtime.store.citus`:

- every table has a placement (distributed, reference, or local), and every
  placement names a table that exists;
- a distributed table's distribution column exists and is NOT NULL, every
  unique key of the table and of its partitions includes it as a plain
  column, and a partitioned table has one level of partitions;
- a co-location group's members come after its anchor and distribute by a
  column of the same type;
- a column filled from a sequence (identity or ``nextval``) is ``bigint``:
  Citus numbers rows inserted on workers from a bigint range per node;
- foreign keys: between distributed tables only in one co-location group and
  through the distribution column on both sides; none from a reference or
  local table to a distributed one; none from a distributed table to a local
  one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from stellaops_runtime.store.citus import LOCAL, PLAN, Placement
from stellaops_runtime.store.schema import SCHEMA


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # format_type(), e.g. "text", "bigint"
    not_null: bool
    from_sequence: bool  # an identity column or a nextval() default


@dataclass(frozen=True, slots=True)
class UniqueKey:
    name: str  # the index's name
    relation: str  # the table, or the partition it was found on
    kind: str  # "primary key", "unique" or "exclusion"
    columns: tuple[str | None, ...]  # None: an expression


@dataclass(frozen=True, slots=True)
class ForeignKey:
    name: str
    table: str  # the referencing table (a partition's root table)
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TableFacts:
    name: str
    columns: dict[str, Column]
    keys: tuple[UniqueKey, ...]
    partition_key: tuple[str | None, ...] = ()  # empty: not partitioned
    partitions: tuple[str, ...] = ()
    sub_partitioned: tuple[str, ...] = ()  # partitions that are partitioned themselves


@dataclass(frozen=True, slots=True)
class SchemaFacts:
    tables: dict[str, TableFacts]
    foreign_keys: tuple[ForeignKey, ...]


# -- the rules (pure) ----------------------------------------------------------


def _key_text(key: UniqueKey) -> str:
    cols = ", ".join(c if c is not None else "<expression>" for c in key.columns)
    where = "" if key.relation == "" else f" on {key.relation}"
    return f"{key.kind} {key.name} ({cols}){where}"


def _table_problems(p: Placement, t: TableFacts) -> list[str]:
    out: list[str] = []
    q = p.qualified
    if p.kind == "distributed":
        col = t.columns.get(p.column)
        if col is None:
            return [f"{q}: distribution column {p.column} does not exist"]
        if not col.not_null:
            out.append(f"{q}: distribution column {p.column} may be NULL (Citus refuses NULL there)")
        for key in t.keys:
            if p.column not in key.columns:
                out.append(f"{q}: {_key_text(key)} does not include the distribution column {p.column}")
        for part in t.sub_partitioned:
            out.append(f"{q}: partition {part} is partitioned again (Citus distributes one level only)")
    for c in t.columns.values():
        if c.from_sequence and c.type != "bigint":
            out.append(f"{q}: column {c.name} is filled from a sequence but is {c.type}, not bigint")
    return out


def _colocation_problems(plan: Iterable[Placement], facts: SchemaFacts) -> list[str]:
    out: list[str] = []
    seen: dict[str, Placement] = {}
    for p in plan:
        if p.kind == "distributed" and p.colocate_with != "none":
            anchor = seen.get(p.colocate_with)
            if anchor is None or anchor.kind != "distributed":
                out.append(
                    f"{p.qualified}: co-located with {p.colocate_with}, which is not a distributed "
                    "table placed before it"
                )
            else:
                mine = facts.tables.get(p.table)
                theirs = facts.tables.get(anchor.table)
                a = mine.columns.get(p.column) if mine else None
                b = theirs.columns.get(anchor.column) if theirs else None
                if a is not None and b is not None and a.type != b.type:
                    out.append(
                        f"{p.qualified}: distribution column {p.column} is {a.type}, but "
                        f"{anchor.qualified}.{anchor.column}, its co-location anchor, is {b.type}"
                    )
        seen[p.table] = p
    return out


def _group(p: Placement, by_table: dict[str, Placement]) -> str:
    """The anchor of ``p``'s co-location group (a cycle, already reported, ends the walk)."""
    seen = {p.table}
    while p.colocate_with not in ("", "none") and p.colocate_with in by_table:
        p = by_table[p.colocate_with]
        if p.table in seen:
            break
        seen.add(p.table)
    return p.table


def _fk_problems(facts: SchemaFacts, by_table: dict[str, Placement]) -> list[str]:
    out: list[str] = []
    for fk in facts.foreign_keys:
        src, dst = by_table.get(fk.table), by_table.get(fk.ref_table)
        src_kind = src.kind if src else "local"
        dst_kind = dst.kind if dst else "local"
        what = f"foreign key {fk.name} ({fk.table} -> {fk.ref_table})"
        if dst_kind == "distributed" and src_kind != "distributed":
            out.append(f"{what}: a {src_kind} table cannot reference a distributed one")
        elif src_kind == "distributed" and dst_kind == "local":
            out.append(f"{what}: a distributed table cannot reference a local one")
        elif src is not None and dst is not None and src_kind == dst_kind == "distributed":
            if _group(src, by_table) != _group(dst, by_table):
                out.append(f"{what}: the tables are in different co-location groups")
            pairs = set(zip(fk.columns, fk.ref_columns, strict=True))
            if (src.column, dst.column) not in pairs:
                out.append(f"{what}: does not pair the distribution columns ({src.column} -> {dst.column})")
    return out


def problems(facts: SchemaFacts, plan: Iterable[Placement] = PLAN, local: Iterable[str] = LOCAL) -> list[str]:
    """Every broken rule, one sentence each; empty when the schema fits the plan."""
    plan = tuple(plan)
    local = frozenset(local)
    by_table = {p.table: p for p in plan}
    out: list[str] = []
    for name in sorted(facts.tables):
        if name not in by_table and name not in local:
            out.append(f"{SCHEMA}.{name}: no Citus placement (add it to PLAN or LOCAL in store/citus.py)")
    for p in plan:
        t = facts.tables.get(p.table)
        if t is None:
            out.append(f"{p.qualified}: placed by the Citus plan but not in the schema")
        else:
            out.extend(_table_problems(p, t))
    out.extend(_colocation_problems(plan, facts))
    out.extend(_fk_problems(facts, by_table))
    return out


# -- the catalog (I/O) ---------------------------------------------------------

_TABLES = """
SELECT c.oid, c.relname, c.relkind = 'p' AS partitioned
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :schema AND c.relkind IN ('r', 'p') AND NOT c.relispartition
"""
_PARTITIONS = """
WITH RECURSIVE tree(root, child) AS (
    SELECT inhparent, inhrelid FROM pg_inherits WHERE inhparent = ANY(CAST(:oids AS oid[]))
    UNION ALL
    SELECT tree.root, i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.child
)
SELECT tree.root, tree.child, c.oid::regclass::text, c.relkind = 'p'
FROM tree JOIN pg_class c ON c.oid = tree.child
"""
_COLUMNS = """
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
    a.attidentity <> '' OR coalesce(pg_get_expr(d.adbin, d.adrelid), '') LIKE 'nextval(%'
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = ANY(CAST(:oids AS oid[])) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""
# Unique indexes (primary keys, unique constraints, unique indexes) and exclusion constraints,
# key columns only (not INCLUDE), on tables and partitions alike.
_KEYS = """
SELECT i.indrelid, i.indrelid::regclass::text, ic.relname,
    CASE WHEN i.indisprimary THEN 'primary key' WHEN i.indisunique THEN 'unique' ELSE 'exclusion' END,
    k.ord, a.attname
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
CROSS JOIN LATERAL unnest(CAST(i.indkey AS int2[])) WITH ORDINALITY AS k(attnum, ord)
LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0
WHERE i.indrelid = ANY(CAST(:oids AS oid[])) AND k.ord <= i.indnkeyatts
    AND (i.indisunique OR EXISTS (
        SELECT 1 FROM pg_constraint x WHERE x.conindid = i.indexrelid AND x.contype = 'x'))
ORDER BY i.indrelid, ic.relname, k.ord
"""
_FOREIGN_KEYS = """
SELECT c.conname, c.conrelid, c.confrelid, c.confrelid::regclass::text,
    ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(n, o)
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
    ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k(n, o)
          JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o)
FROM pg_constraint c
WHERE c.contype = 'f' AND c.conparentid = 0
    AND (c.conrelid = ANY(CAST(:oids AS oid[])) OR c.confrelid = ANY(CAST(:oids AS oid[])))
"""
_PARTITION_KEY = """
SELECT p.partrelid, k.ord, a.attname
FROM pg_partitioned_table p
CROSS JOIN LATERAL unnest(CAST(p.partattrs AS int2[])) WITH ORDINALITY AS k(attnum, ord)
LEFT JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = k.attnum AND k.attnum > 0
WHERE p.partrelid = ANY(CAST(:oids AS oid[]))
ORDER BY p.partrelid, k.ord
"""


def read_facts(conn: sa.Connection, schema: str = SCHEMA) -> SchemaFacts:
    """One snapshot of ``schema``'s tables from PostgreSQL's catalog."""
    roots = {
        int(oid): (str(name), bool(part))
        for oid, name, part in conn.execute(sa.text(_TABLES), {"schema": schema})
    }
    root_oids = list(roots)
    root_of = {oid: oid for oid in roots}
    partitions: dict[int, list[str]] = {oid: [] for oid in roots}
    sub: dict[int, list[str]] = {oid: [] for oid in roots}
    for root, child, name, part in conn.execute(sa.text(_PARTITIONS), {"oids": root_oids}):
        root_of[int(child)] = int(root)
        partitions[int(root)].append(str(name))
        if part:
            sub[int(root)].append(str(name))
    all_oids = list(root_of)
    columns: dict[int, dict[str, Column]] = {oid: {} for oid in roots}
    for rel, name, typ, not_null, seq in conn.execute(sa.text(_COLUMNS), {"oids": root_oids}):
        columns[int(rel)][str(name)] = Column(str(name), str(typ), bool(not_null), bool(seq))
    keys: dict[int, list[UniqueKey]] = {oid: [] for oid in roots}
    building: dict[tuple[int, str], tuple[str, str, list[str | None]]] = {}
    for rel, rel_name, index, kind, _ord, col in conn.execute(sa.text(_KEYS), {"oids": all_oids}):
        entry = building.setdefault((int(rel), str(index)), (str(rel_name), str(kind), []))
        entry[2].append(None if col is None else str(col))
    for (rel, index), (rel_name, kind, cols) in building.items():
        root = root_of[rel]
        relation = "" if rel == root else rel_name
        keys[root].append(UniqueKey(index, relation, kind, tuple(cols)))
    pkey: dict[int, list[str | None]] = {}
    for rel, _ord, col in conn.execute(sa.text(_PARTITION_KEY), {"oids": root_oids}):
        pkey.setdefault(int(rel), []).append(None if col is None else str(col))
    fks: list[ForeignKey] = []
    for name, src, dst, dst_name, cols, ref_cols in conn.execute(sa.text(_FOREIGN_KEYS), {"oids": all_oids}):
        src_root, dst_root = root_of.get(int(src)), root_of.get(int(dst))
        fks.append(
            ForeignKey(
                str(name),
                roots[src_root][0] if src_root is not None else "",
                tuple(cols),
                roots[dst_root][0] if dst_root is not None else str(dst_name),
                tuple(ref_cols),
            )
        )
    tables = {
        name: TableFacts(
            name=name,
            columns=columns[oid],
            keys=tuple(sorted(keys[oid], key=lambda k: (k.relation, k.name))),
            partition_key=tuple(pkey.get(oid, ())) if part else (),
            partitions=tuple(sorted(partitions[oid])),
            sub_partitioned=tuple(sorted(sub[oid])),
        )
        for oid, (name, part) in roots.items()
    }
    return SchemaFacts(tables, tuple(sorted(fks, key=lambda f: f.name)))


def check(conn: sa.Connection) -> list[str]:
    """The broken rules of the store schema ``conn`` points at (empty: fits the Citus plan)."""
    return problems(read_facts(conn))
