"""Migration 0010: the agent's question about its node is one index descent, not a walk of every window.

An agent with no usable watch record reads its node's latest window as the store opens
(agent/node_history.py ``last_window_ns``: ``max(window_start) WHERE node_name = ...``). Before
0010 no index led by ``node_name``: on PostgreSQL the plan walked the ``window_start`` index
backwards and filtered every row for a node with no window (a new node, the usual case): on a
fleet's store, past ``statementTimeout``, and the store stayed closed for that agent. The plans
are read here on a real PostgreSQL and on SQLite; the answers stay the same.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from stellaops_runtime.agent.node_history import _SQL, last_window_ns
from stellaops_runtime.store.dbconn import Database
from stellaops_runtime.store.engine import alembic_config, create_store_engine, migrate
from stellaops_runtime.store.store_url import parse_store_url

INDEX = "ix_observation_windows_node_window"
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@pytest.fixture
def url(empty_url: str) -> str:
    """Never migrated (tests/integration/conftest.py): these tests migrate it to the revision they test."""
    return empty_url


def _fill(conn: sa.Connection, nodes: int, windows: int) -> None:
    """``nodes`` x ``windows`` windows of 20 images (a generated series on PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text(
                "INSERT INTO signals.observation_windows "
                "(image_digest, node_name, window_start, event_count) "
                "SELECT 'sha256:' || md5(i::text), 'node-' || n, :t0 + w * interval '1 minute', 1 "
                "FROM generate_series(1, 20) i, generate_series(1, :nodes) n, generate_series(1, :windows) w"
            ),
            {"t0": T0, "nodes": nodes, "windows": windows},
        )
        conn.execute(sa.text("ANALYZE signals.observation_windows"))
        return
    rows = [
        {
            "i": f"sha256:{i:064x}",
            "n": f"node-{n}",
            "w": (T0 + dt.timedelta(minutes=w)).strftime("%Y-%m-%d %H:%M:%S"),
        }
        for i in range(20)
        for n in range(1, nodes + 1)
        for w in range(1, windows + 1)
    ]
    conn.execute(
        sa.text(
            "INSERT INTO observation_windows (image_digest, node_name, window_start, event_count) "
            "VALUES (:i, :n, :w, 1)"
        ),
        rows,
    )
    conn.execute(sa.text("ANALYZE"))


def _plan(conn: sa.Connection, node: str) -> str:
    if conn.dialect.name == "postgresql":
        sql = "EXPLAIN (ANALYZE, COSTS OFF) " + _SQL["postgresql"].replace("%s", ":n")
        return "\n".join(r[0] for r in conn.execute(sa.text(sql), {"n": node}))
    sql = "EXPLAIN QUERY PLAN " + _SQL["sqlite"].replace("?", ":n")
    return "\n".join(str(r[-1]) for r in conn.execute(sa.text(sql), {"n": node}))


def _latest(url: str, node: str, not_after_ns: int | None = None) -> int | None:
    db = Database(parse_store_url(url))  # the agent's DB-API connection, as it asks
    try:
        return last_window_ns(db, node, not_after_ns=not_after_ns)
    finally:
        db.dispose()


def test_the_latest_window_of_a_node_is_read_through_the_index(url: str) -> None:
    engine = create_store_engine(url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            _fill(conn, nodes=60 if conn.dialect.name == "postgresql" else 10, windows=40)
        with engine.connect() as conn:
            for node in ("node-new", "node-3"):
                plan = _plan(conn, node)
                assert INDEX in plan, plan
                assert "Rows Removed by Filter" not in plan, plan
    finally:
        engine.dispose()
    assert _latest(url, "node-new") is None
    assert _latest(url, "node-3") == int((T0 + dt.timedelta(minutes=40)).timestamp()) * 10**9
    # up to a bound (agent/history_days.py: a window stamped far ahead must not hide the others)
    bound = int((T0 + dt.timedelta(minutes=20, seconds=30)).timestamp()) * 10**9
    assert _latest(url, "node-3", bound) == int((T0 + dt.timedelta(minutes=20)).timestamp()) * 10**9


@pytest.mark.parametrize("revision", ["0009"])
def test_the_downgrade_drops_the_index_and_the_answer_stays(url: str, revision: str) -> None:
    engine = create_store_engine(url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            _fill(conn, nodes=3, windows=2)
        from alembic import command

        cfg = alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
        with engine.connect() as conn:
            schema = "signals" if conn.dialect.name == "postgresql" else None
            names = {i["name"] for i in sa.inspect(conn).get_indexes("observation_windows", schema=schema)}
            assert INDEX not in names and "ix_observation_windows_window_start" in names, names
    finally:
        engine.dispose()
    assert _latest(url, "node-2") == int((T0 + dt.timedelta(minutes=2)).timestamp()) * 10**9
