"""The Citus plan (store/citus.py): its calls, the rules no real schema here breaks, and the doc.

The real schema is checked in tests/integration/test_citus_schema.py. Here:
the calls are the exact SQL the operations doc shows (in order, anchors
before their groups), and the rules that the migrated schema cannot exercise
(a nullable distribution column, a co-location anchor placed after its
member or of another type, a plan naming a missing table, foreign keys from
or to reference tables) each give their sentence.
"""

from __future__ import annotations

import re
from pathlib import Path

from stellaops_runtime.store import citus
from stellaops_runtime.store.citus import Placement
from stellaops_runtime.store.citus_check import (
    Column,
    ForeignKey,
    SchemaFacts,
    TableFacts,
    UniqueKey,
    problems,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def _doc_section() -> str:
    text = DOC.read_text()
    start = text.index("\n## Running the store on Citus\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_operations_doc_shows_the_plans_calls_verbatim_and_explains_every_table() -> None:
    section = _doc_section()
    blocks = [
        [line.strip() for line in block.splitlines() if line.strip()]  # indented inside a list item
        for block in re.findall(r"```sql\n(.*?)```", section, flags=re.S)
    ]
    assert blocks == [citus.statements(), citus.truncate_statements()]
    for p in citus.PLAN:
        assert f"`{p.table}`" in section, p.table
    for table in citus.LOCAL:
        assert f"`{table}`" in section, table


def test_the_calls_are_exact_and_anchors_come_first() -> None:
    assert citus.statements()[:2] == [
        "SELECT create_distributed_table('signals.hot_symbols', 'image_digest', colocate_with => 'none');",
        "SELECT create_distributed_table('signals.hot_symbol_windows', 'image_digest', "
        "colocate_with => 'signals.hot_symbols');",
    ]
    assert Placement("t", "reference").statement() == "SELECT create_reference_table('signals.t');"
    placed: set[str] = set()
    for p in citus.PLAN:
        assert p.colocate_with == "none" or p.colocate_with in placed, p.table
        placed.add(p.table)


def _col(name: str, typ: str = "text", not_null: bool = True) -> Column:
    return Column(name, typ, not_null, False)


def _table(name: str, *cols: Column, keys: tuple[UniqueKey, ...] = ()) -> TableFacts:
    return TableFacts(name, {c.name: c for c in cols}, keys)


def test_rules_no_migrated_schema_here_breaks() -> None:
    facts = SchemaFacts(
        {
            "a": _table(
                "a", _col("img", not_null=False), keys=(UniqueKey("pk_a", "", "primary key", ("img",)),)
            ),
            "b": _table("b", _col("img", "bigint")),
            "r": _table("r", _col("k")),
            "local": _table("local", _col("k")),
        },
        (
            ForeignKey("fk_ref_dist", "r", ("k",), "a", ("img",)),
            ForeignKey("fk_dist_ref", "a", ("img",), "r", ("k",)),  # allowed
            ForeignKey("fk_local_ref", "local", ("k",), "r", ("k",)),  # allowed
        ),
    )
    plan = (
        Placement("b", "distributed", "img", "a"),  # its anchor comes later
        Placement("a", "distributed", "img", "none"),
        Placement("c", "distributed", "img", "a"),  # no such table
        Placement("r", "reference"),
        Placement("d", "distributed", "img", "b"),  # anchored on b, not in the schema either
    )
    assert problems(facts, plan, local=("local",)) == [
        "signals.a: distribution column img may be NULL (Citus refuses NULL there)",
        "signals.c: placed by the Citus plan but not in the schema",
        "signals.d: placed by the Citus plan but not in the schema",
        "signals.b: co-located with a, which is not a distributed table placed before it",
        "foreign key fk_ref_dist (r -> a): a reference table cannot reference a distributed one",
    ]
    # b anchored after a: the column types are compared
    plan2 = (Placement("a", "distributed", "img", "none"), Placement("b", "distributed", "img", "a"))
    facts2 = SchemaFacts({"a": facts.tables["a"], "b": facts.tables["b"]}, ())
    assert problems(facts2, plan2, local=()) == [
        "signals.a: distribution column img may be NULL (Citus refuses NULL there)",
        "signals.b: distribution column img is bigint, but signals.a.img, its co-location anchor, is text",
    ]


def test_a_missing_distribution_column_is_named_not_a_crash() -> None:
    facts = SchemaFacts({"a": _table("a", _col("x"))}, ())
    assert problems(facts, (Placement("a", "distributed", "img", "none"),), local=()) == [
        "signals.a: distribution column img does not exist"
    ]


def test_a_colocation_cycle_is_named_and_ends() -> None:
    facts = SchemaFacts(
        {"a": _table("a", _col("img")), "b": _table("b", _col("img"))},
        (ForeignKey("fk_ab", "a", ("img",), "b", ("img",)),),
    )
    plan = (Placement("a", "distributed", "img", "b"), Placement("b", "distributed", "img", "a"))
    assert problems(facts, plan, local=()) == [
        "signals.a: co-located with b, which is not a distributed table placed before it",
        "foreign key fk_ab (a -> b): the tables are in different co-location groups",  # no valid group
    ]
