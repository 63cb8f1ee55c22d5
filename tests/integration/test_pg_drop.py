"""A test's PostgreSQL database is dropped when the test ends, and the cluster is in memory only with room.

tests/conftest.py's ``pg_url`` and ``pg_empty_url`` drop their database after the test
(tests/pg.py ``drop_database``): hundreds left in place were ~3 GB per worker, deleted in the
session's last seconds. ``drop_database`` must end the sessions still open on it (an engine a
test did not dispose), and ``memory_dir`` must fall back to the temporary directory when
``/dev/shm`` has no room for a cluster.
"""

from __future__ import annotations

import pg as pg_module
import psycopg
import pytest
from pg import PgServer, libpq_dsn, with_database

pytestmark = pytest.mark.postgres


def _databases(pg: PgServer) -> set[str]:
    with psycopg.connect(libpq_dsn(with_database(pg.url, "postgres")), autocommit=True) as c:
        return {r[0] for r in c.execute("SELECT datname FROM pg_database").fetchall()}


def test_a_dropped_database_is_gone_even_with_a_session_open_on_it(pg: PgServer) -> None:
    url = pg.migrated_database()
    name = url.rpartition("/")[2]
    held = psycopg.connect(libpq_dsn(url), autocommit=True)  # a session the test never closed
    try:
        assert name in _databases(pg)
        pg.drop_database(url)
        assert name not in _databases(pg)
        pg.drop_database(url)  # twice: nothing to drop, no error
    finally:
        held.close()


def test_no_memory_directory_without_room(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_module, "SHM_FREE_BYTES", 1 << 62)
    assert pg_module.memory_dir() is None
