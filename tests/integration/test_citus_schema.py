"""The real store schema fits the Citus plan (issue 13, "Past one PostgreSQL").

Citus cannot run here, so its rules are checked on the schema the project's
own migrations build in a real PostgreSQL database, read back from
``pg_catalog`` (store/citus_check.py): every primary and unique key of a
distributed table, and of each of its partitions, includes the distribution
column; foreign keys stay inside a co-location group and pair the
distribution columns; sequence-filled columns are bigint; every table has a
placement. The same check names every rule revision 0007 broke (so it is
not vacuous) and every hostile change made to a head schema. The upserts'
ON CONFLICT targets are keys of that schema, and docs/operations.md shows
the plan's calls verbatim.
"""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from stellaops_runtime.store import citus, citus_check, pg_write
from stellaops_runtime.store.engine import create_store_engine, migrate

pytestmark = pytest.mark.postgres


def _facts(url: str, revision: str = "head", *ddl: str) -> citus_check.SchemaFacts:
    engine = create_store_engine(url)
    try:
        migrate(engine, revision=revision)
        with engine.begin() as conn:
            for stmt in ddl:
                conn.execute(sa.text(stmt))
        with engine.connect() as conn:
            return citus_check.read_facts(conn)
    finally:
        engine.dispose()


def test_head_schema_fits_the_citus_plan(pg_empty_url: str) -> None:
    facts = _facts(pg_empty_url)
    assert citus_check.problems(facts) == []
    # every table of the schema is placed, exactly once
    assert set(facts.tables) == {p.table for p in citus.PLAN} | set(citus.LOCAL)
    windows = facts.tables["hot_symbol_windows"]
    assert windows.partition_key == ("window_start",) and len(windows.partitions) >= 5  # days + DEFAULT
    keys = {name: {k.columns for k in t.keys} for name, t in facts.tables.items()}
    assert keys["hot_symbols"] == {("image_digest", "module", "function_name", "evidence_kind")}
    assert keys["observation_windows"] == {("image_digest", "node_name", "window_start")}
    assert keys["runtime_witnesses"] == {("id", "image_digest"), ("envelope_sha256", "image_digest")}
    assert keys["quarantined_rows"] == {("agent_id", "id")}
    assert keys["hot_symbol_windows"] == set()  # append-only: no unique key at all
    assert facts.foreign_keys == ()


def test_the_check_names_every_rule_revision_0007_broke(pg_empty_url: str) -> None:
    assert citus_check.problems(_facts(pg_empty_url, "0007")) == [
        "signals.hot_symbols: primary key hot_symbols_pkey (id) does not include the distribution column "
        "image_digest",
        "signals.observation_windows: primary key observation_windows_pkey (id) does not include the "
        "distribution column image_digest",
        "signals.runtime_witnesses: primary key runtime_witnesses_pkey (id) does not include the "
        "distribution column image_digest",
        "signals.runtime_witnesses: unique uq_runtime_witnesses_envelope (envelope_sha256) does not include "
        "the distribution column image_digest",
        "signals.image_pairs: placed by the Citus plan but not in the schema",  # made at 0014
        "signals.node_fact_builds: placed by the Citus plan but not in the schema",  # made at 0016
        "signals.quarantined_rows: primary key quarantined_rows_pkey (id) does not include the distribution "
        "column agent_id",
        "signals.export_positions: placed by the Citus plan but not in the schema",  # made at 0011
        "signals.export_spans: placed by the Citus plan but not in the schema",  # made at 0012
        "signals.node_liveness: placed by the Citus plan but not in the schema",  # made at 0015
    ]


def test_the_check_names_each_hostile_change_to_a_head_schema(pg_empty_url: str) -> None:
    hot_key = "(image_digest, module, function_name, evidence_kind)"
    facts = _facts(
        pg_empty_url,
        "head",
        "CREATE UNIQUE INDEX ux_fid ON signals.hot_symbols (function_id)",
        "CREATE UNIQUE INDEX ux_expr ON signals.observation_windows (lower(image_digest), node_name)",
        "CREATE UNIQUE INDEX ux_part ON signals.hot_symbol_windows_default (module, window_start)",
        "CREATE TABLE signals.hot_symbol_windows_sub PARTITION OF signals.hot_symbol_windows "
        "FOR VALUES FROM ('2001-01-01 00:00:00+00') TO ('2001-01-02 00:00:00+00') PARTITION BY LIST (module)",
        "ALTER TABLE signals.flush_ledger ADD COLUMN n serial",
        "CREATE TABLE signals.extra (k text PRIMARY KEY, image_digest text, module text, "
        "function_name text, evidence_kind text)",
        f"ALTER TABLE signals.extra ADD CONSTRAINT fk_local FOREIGN KEY {hot_key} "
        "REFERENCES signals.hot_symbols",
        # same group, distribution columns paired: allowed
        "ALTER TABLE signals.runtime_witnesses ADD CONSTRAINT fk_ok FOREIGN KEY "
        f"(image_digest, purl, function, claim_id) REFERENCES signals.hot_symbols {hot_key}",
        # another group, agent_id paired with module: refused twice
        "ALTER TABLE signals.quarantined_rows ADD CONSTRAINT fk_cross FOREIGN KEY "
        f"(table_name, agent_id, row_json, error) REFERENCES signals.hot_symbols {hot_key}",
        "ALTER TABLE signals.hot_symbols ADD CONSTRAINT fk_to_local FOREIGN KEY (image_digest) "
        "REFERENCES signals.extra (k)",
    )
    found = citus_check.problems(facts)
    assert sorted(found) == sorted(
        [
            "signals.extra: no Citus placement (add it to PLAN or LOCAL in store/citus.py)",
            "signals.hot_symbols: unique ux_fid (function_id) does not include the distribution column "
            "image_digest",
            "signals.observation_windows: unique ux_expr (<expression>, node_name) does not include the "
            "distribution column image_digest",
            "signals.hot_symbol_windows: unique ux_part (module, window_start) on "
            "signals.hot_symbol_windows_default does not include the distribution column image_digest",
            "signals.hot_symbol_windows: partition signals.hot_symbol_windows_sub is partitioned again "
            "(Citus distributes one level only)",
            "signals.flush_ledger: column n is filled from a sequence but is integer, not bigint",
            "foreign key fk_local (extra -> hot_symbols): a local table cannot reference a distributed one",
            "foreign key fk_cross (quarantined_rows -> hot_symbols): the tables are in different "
            "co-location groups",
            "foreign key fk_cross (quarantined_rows -> hot_symbols): does not pair the distribution columns "
            "(agent_id -> image_digest)",
            "foreign key fk_to_local (hot_symbols -> extra): a distributed table cannot reference a "
            "local one",
        ]
    )


def _conflict_targets() -> dict[str, list[tuple[str, ...]]]:
    out: dict[str, list[tuple[str, ...]]] = {}
    for sql in (pg_write.ROLLUP_HOT, pg_write.ROLLUP_HOT_UNIQUE_KEYS, pg_write.UPSERT_OBS):
        table = re.search(r"INSERT INTO signals\.(\w+)", sql)
        target = re.search(r"ON CONFLICT \(([^)]*)\)", sql)
        assert table and target, sql
        cols = tuple(c.strip() for c in target.group(1).split(","))
        out.setdefault(table.group(1), []).append(cols)
    return out


def test_every_on_conflict_target_is_a_key_holding_the_distribution_column(pg_empty_url: str) -> None:
    facts = _facts(pg_empty_url)
    targets = _conflict_targets()
    assert set(targets) == {"hot_symbols", "observation_windows"}
    for table, cols_list in targets.items():
        placed = citus.placement(table)
        assert placed is not None
        keys = {frozenset(k.columns) for k in facts.tables[table].keys}
        for cols in cols_list:
            # PostgreSQL infers the arbiter from the column set: it must be exactly one key's columns
            assert frozenset(cols) in keys, (table, cols)
            assert placed.column in cols
