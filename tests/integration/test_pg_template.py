"""The migrated template behind the ``pg_url`` fixture is the schema the migrations build, and never stale.

tests/pg.py hands most store tests a copy of one database migrated once per
server instead of running every Alembic revision for each. That shortcut is
only honest if a copy is indistinguishable from a database the migrations
built now: the same tables, columns, indexes, constraints, partitions,
triggers and functions, at the same revision. The template is named by a hash
of the migration files, so an added or edited migration builds a new one
instead of handing out the old schema; and two processes sharing one server
(``STELLA_TEST_PG_URL``) that build it at once both end with the same one.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pg as pg_module
import psycopg
import pytest
from pg import PgServer, libpq_dsn, migrate_to_head, migrations_digest, template_name, with_database

from stellaops_runtime.store import engine as store_engine
from stellaops_runtime.store.engine import at_head, create_store_engine

pytestmark = pytest.mark.postgres

# Everything in schema ``signals`` a migration can create, as comparable text.
CATALOG = """
SELECT 'rel ' || c.relname::text || ' ' || c.relkind::text || ' ' || c.relispartition::text
  || coalesce(' ' || pg_get_expr(c.relpartbound, c.oid), '')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'signals'
UNION ALL
SELECT 'col ' || c.relname::text || '.' || a.attname::text || ' ' || format_type(a.atttypid, a.atttypmod)
  || ' ' || a.attnotnull::text || coalesce(' ' || pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE n.nspname = 'signals' AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'idx ' || indexdef FROM pg_indexes WHERE schemaname = 'signals'
UNION ALL
SELECT 'con ' || conname::text || ' ' || pg_get_constraintdef(co.oid)
  FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace WHERE n.nspname = 'signals'
UNION ALL
SELECT 'trg ' || pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'signals' AND NOT t.tgisinternal
UNION ALL
SELECT 'fn ' || p.proname::text || ' ' || md5(p.prosrc)
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'signals'
UNION ALL
SELECT 'ver ' || version_num FROM signals.alembic_version
"""


def catalog(url: str) -> list[str]:
    with psycopg.connect(libpq_dsn(url)) as c:
        return sorted(str(r[0]) for r in c.execute(CATALOG).fetchall())


def test_a_copy_of_the_template_is_the_schema_the_migrations_build_now(pg: PgServer, pg_url: str) -> None:
    built = pg.fresh_database()
    migrate_to_head(built)
    copy = catalog(pg_url)
    assert copy == catalog(built)
    assert any(line.startswith("rel hot_symbol_windows_") for line in copy), copy  # the day partitions
    engine = create_store_engine(pg_url)
    try:
        assert at_head(engine)
    finally:
        engine.dispose()


def test_a_changed_migration_names_another_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    day = dt.date(2026, 12, 5)
    before = template_name(day)
    assert before == template_name(day) and migrations_digest() in before  # stable while the files are
    copy = tmp_path / "migrations"
    shutil.copytree(store_engine.MIGRATIONS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(store_engine, "MIGRATIONS_DIR", copy)
    assert template_name(day) == before  # the same files elsewhere: the same template
    added = copy / "versions" / "0099_new.py"
    added.write_text('revision = "0099"\ndown_revision = "0010"\n')
    assert template_name(day) != before  # a new migration
    added.unlink()
    assert template_name(day) == before
    edited = copy / "versions" / "0001_initial.py"
    edited.write_text(edited.read_text() + "\n# edited\n")
    assert template_name(day) != before  # an edited one
    assert template_name(day + dt.timedelta(days=1)) != template_name(day)  # 0007's partitions are by day


def test_two_processes_building_the_template_at_once_end_with_one(
    pg: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process sharing the server (STELLA_TEST_PG_URL) renames its build into place while this
    one still migrates: this one drops its own build and uses that template; nothing half-built stays."""
    first, second = PgServer(external_url=pg.url), PgServer(external_url=pg.url)
    name = f"migrated_race_{os.getpid()}"
    monkeypatch.setattr(pg_module, "template_name", lambda today: name)
    migrate = pg_module.migrate_to_head
    raced: list[str] = []

    def racing(url: str) -> None:
        migrate(url)
        if not raced:  # the second's build is migrated: the first finishes its own template now
            raced.append(url)
            assert first._template() == name

    monkeypatch.setattr(pg_module, "migrate_to_head", racing)
    admin = psycopg.connect(libpq_dsn(with_database(pg.url, "postgres")), autocommit=True)
    try:
        assert second._template() == name
        assert raced  # the race did happen
        names = [r[0] for r in admin.execute("SELECT datname FROM pg_database").fetchall()]
        assert names.count(name) == 1
        assert not [n for n in names if n.startswith("build_")], names  # no half-built copy left
        row = admin.execute(
            "SELECT datistemplate, datallowconn FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        assert row == (True, False)  # nobody connects to it, so a copy never waits on a session
        expected = catalog(pg.migrated_database())
        for server in (first, second):
            assert catalog(server.migrated_database()) == expected
    finally:
        admin.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE false')
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()
