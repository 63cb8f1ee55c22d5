"""Fixtures the store tests share: every store test runs on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL: a SQLite file, or a fresh empty database on the test PostgreSQL (tests/pg.py).

    Empty on both, never migrated: tests of the migrations (0007 .. 0010, old schemas) share it.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/hot.db"
    return str(request.getfixturevalue("pg_empty_url"))
