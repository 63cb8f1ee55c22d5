"""Fixtures the store tests share: every store test runs on SQLite and on the real PostgreSQL.

``url`` gives a store already at the newest schema, since most store tests test what is
stored, not how the schema got there: on PostgreSQL ``pg_url`` (a copy of a template migrated
once, tests/pg.py), on SQLite a copy of a file migrated once per worker (:func:`sqlite_template`).
Migrating every test's store from empty cost each one ~0.1 s (every Alembic revision run).
``empty_url`` gives one never migrated, for the tests of the migrations themselves (upgrades
from old revisions, downgrades, readers of an old schema).
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from pg import migrate_to_head, migrations_digest

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def sqlite_templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """SQLite files at the newest schema, by :func:`template_key`; built on first use."""
    return {}


def template_key() -> str:
    """As tests/pg.py names its template: the migrations' hash (an edited migration builds another)
    and the UTC date (migration 0007 creates partitions around "today")."""
    return f"{migrations_digest()}_{dt.datetime.now(dt.UTC):%Y%m%d}"


def sqlite_template(templates: dict[str, Path], root: Path) -> Path:
    key = template_key()
    if key not in templates:
        path = root / f"migrated_{key}.db"
        migrate_to_head(f"sqlite:///{path}")  # disposes its engine: nothing left in a journal
        templates[key] = path
    return templates[key]


@pytest.fixture(params=BACKENDS)
def url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_templates: dict[str, Path],
) -> str:
    """A fresh store URL at the newest schema: a SQLite file, or a database on the test PostgreSQL."""
    if request.param == "sqlite":
        db = tmp_path / "hot.db"
        shutil.copyfile(sqlite_template(sqlite_templates, tmp_path_factory.getbasetemp()), db)
        return f"sqlite:///{db}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL never migrated (no table at all), for the tests of the migrations."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/hot.db"
    return str(request.getfixturevalue("pg_empty_url"))
