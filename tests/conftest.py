"""Shared fixtures: the real PostgreSQL server the store tests run against.

``pg`` (session) starts one private cluster (tests/pg.py) the first time a
test asks for it; ``pg_url`` (function) gives each test its own fresh
database on it so tests never share rows, already at the newest schema (a
copy of a template migrated once, tests/pg.py); ``pg_empty_url`` gives an
empty one, for the tests of the migrations themselves (their order, upgrades
from old revisions, an agent or CLI that must migrate a new store).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pg import SETUP_HINT, PgServer, make_server


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    server = make_server()
    try:
        server.setup()
    except RuntimeError as e:
        server.teardown()
        if str(e) == SETUP_HINT:
            pytest.fail(SETUP_HINT, pytrace=False)
        raise
    try:
        yield server
    finally:
        server.teardown()


@pytest.fixture
def pg_url(pg: PgServer) -> str:
    if not pg.running:  # an outage test that failed half-way left it down
        pg.start()
    return pg.migrated_database()


@pytest.fixture
def pg_empty_url(pg: PgServer) -> str:
    if not pg.running:
        pg.start()
    return pg.fresh_database()
