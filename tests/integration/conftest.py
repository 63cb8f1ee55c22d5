"""Fixtures the store tests share: every store test runs on SQLite and on the real PostgreSQL.

``url`` gives a store already at the newest schema, since most store tests test what is
stored, not how the schema got there: on PostgreSQL ``pg_url`` (a copy of a template migrated
once, tests/pg.py), on SQLite a copy of a file migrated once per worker (tests/conftest.py
``sqlite_at_head``). Migrating every test's store from empty ran every Alembic revision in each
(~0.1 s CPU, more with the fsyncs of a busy disk). ``empty_url`` gives one never migrated, for
the tests of the migrations themselves (upgrades from old revisions, downgrades, readers of an
old schema).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_at_head: Callable[[Path], str]) -> str:
    """A fresh store URL at the newest schema: a SQLite file, or a database on the test PostgreSQL."""
    if request.param == "sqlite":
        return sqlite_at_head(tmp_path / "hot.db")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL never migrated (no table at all), for the tests of the migrations."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/hot.db"
    return str(request.getfixturevalue("pg_empty_url"))
