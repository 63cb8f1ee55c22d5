"""Shared fixtures: the real PostgreSQL server the store tests run against.

``pg`` (session) starts one private cluster (tests/pg.py) the first time a
test asks for it; ``pg_url`` (function) gives each test its own fresh
database on it so tests never share rows, already at the newest schema (a
copy of a template migrated once, tests/pg.py); ``pg_empty_url`` gives an
empty one, for the tests of the migrations themselves (their order, upgrades
from old revisions, an agent or CLI that must migrate a new store). Both drop
the database when the test ends: the cluster is in memory where there is room
(tests/pg.py ``memory_dir``), and a worker's hundreds of databases left in
place were ~3 GB, seconds to delete at the session's end.

``sqlite_at_head`` (session) puts a SQLite store already at the newest schema
at a path: a copy of a file migrated once per worker, keyed like tests/pg.py's
template (the migrations' hash and the UTC date). A new SQLite store runs every
Alembic revision, each committed with an fsync: ~0.2 s on a quiet disk, seconds
on a busy one, in every test or agent that opens one; tests that do not test
the migrations start from the copy instead.

Compiled modules are cached while the tests run, though the checkouts set
``PYTHONDONTWRITEBYTECODE=1``: every CLI and agent subprocess of the suite
(hundreds of each) otherwise compiles the ~200 package modules it imports
from source (0.26 s CPU of an agent's 0.6 s start, 0.1 s of a query's 0.5 s),
and each xdist worker rewrites every test module's asserts anew. The
``.pyc`` files go to ``__pycache__`` beside the sources (git ignores them,
the image build drops them), and Python checks each against its source.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pg import SETUP_HINT, PgServer, make_server, migrate_to_head, migrations_digest
from xdist_scopes import configure_node, make_scheduler

# Before xdist starts its workers (this file is read first): they and every subprocess inherit it.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``--dist loadfile`` with tests/realkube as one work unit (tests/xdist_scopes.py)."""
    return make_scheduler(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: object) -> None:
    """Each worker learns the run's --dist (tests/xdist_scopes.py ``one_worker_scope``)."""
    configure_node(node)


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
def pg_url(pg: PgServer) -> Iterator[str]:
    if not pg.running:  # an outage test that failed half-way left it down
        pg.start()
    url = pg.migrated_database()
    yield url
    _drop(pg, url)


@pytest.fixture
def pg_empty_url(pg: PgServer) -> Iterator[str]:
    if not pg.running:
        pg.start()
    url = pg.fresh_database()
    yield url
    _drop(pg, url)


def _drop(pg: PgServer, url: str) -> None:
    """The test's database, dropped once it ended (a test that left the server down keeps it: the
    session's teardown removes the cluster)."""
    if pg.running:
        pg.drop_database(url)


@pytest.fixture(scope="session")
def sqlite_at_head(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], str]:
    """``put(path)``: a SQLite store at the newest schema at ``path`` (a copy); returns its URL."""
    templates: dict[str, Path] = {}

    def put(path: Path) -> str:
        key = f"{migrations_digest()}_{dt.datetime.now(dt.UTC):%Y%m%d}"
        if key not in templates:
            template = tmp_path_factory.getbasetemp() / f"migrated_{key}.db"
            migrate_to_head(f"sqlite:///{template}")  # disposes its engine: nothing left in a journal
            templates[key] = template
        shutil.copyfile(templates[key], path)
        return f"sqlite:///{path}"

    return put
