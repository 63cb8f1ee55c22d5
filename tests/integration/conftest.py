"""Fixtures the store tests share: every store test runs on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL: a SQLite file, or a fresh database on the test PostgreSQL (tests/pg.py)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/hot.db"
    return str(request.getfixturevalue("pg_url"))
