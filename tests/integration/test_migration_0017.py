"""Migration 0017 (the stop record's columns on ``node_liveness``): old stores and rows keep reading.

A store at 0016 has the proof of life without the stop record: the reader must not select the new
columns there (it read ``SELECT *`` before), and a row an agent before 0017 wrote reads with no stop
after the upgrade (nothing ends its open time); the downgrade drops the columns and the reader
falls back again. SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from alembic import command

from stellaops_runtime.store.coverage_live import has_stop_columns, liveness, store_now
from stellaops_runtime.store.engine import alembic_config, create_store_engine, migrate, open_store
from stellaops_runtime.store.node_stop import Stop, write_stop
from stellaops_runtime.store.schema import node_liveness


@pytest.fixture
def url(empty_url: str) -> str:
    """Never migrated (tests/integration/conftest.py): the test migrates it to the revision it tests."""
    return empty_url


def test_a_store_before_0017_reads_its_proofs_and_the_upgrade_and_downgrade_keep_them(url: str) -> None:
    engine = create_store_engine(url)
    try:
        migrate(engine, revision="0016")
        with engine.begin() as conn:  # the proof of an agent before 0017 (no stop columns named)
            now = store_now(conn)
            conn.execute(sa.insert(node_liveness).values(
                node_name="node-a", agent_id="node-a/x", started_at=now, started_node=now, alive_through=now,
                alive_node=now, written_at=now, flush_seconds=10.0, window_seconds=60,
            ))  # fmt: skip
        with engine.connect() as conn:
            assert not has_stop_columns(conn)
            assert liveness(conn, ["node-a"])["node-a"].stop is None
        migrate(engine)
        with engine.connect() as conn:
            assert has_stop_columns(conn)
            assert liveness(conn, ["node-a"])["node-a"].stop is None  # written before: no stop
        with open_store(url) as s:
            assert write_stop(s.db, Stop("node-a", "node-a/x", "sigterm", ("sha256:" + "1" * 64,), False))
        with engine.connect() as conn:
            stop = liveness(conn, ["node-a"])["node-a"].stop
        assert stop is not None and not stop.gone and not stop.uncertain
        assert stop.running == {"sha256:" + "1" * 64} and stop.at - dt.datetime.now(dt.UTC) < dt.timedelta(1)
        cfg = alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0016")
        with engine.connect() as conn:
            assert not has_stop_columns(conn)
            assert liveness(conn, ["node-a"])["node-a"].stop is None
    finally:
        engine.dispose()
