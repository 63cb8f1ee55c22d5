"""Migration 0016 (``node_fact_builds``): a store from before it keeps answering, then keeps each build.

A question on a store still at 0015 (no table yet) meets the node's facts by the build their rows
kept, as before (store/node_facts.py reads the table only where it is). The upgrade copies in each
node fact's stored build (the host image's ``unprobed`` rows with a build-id; no other image's, no
call), and from then on a flush of the node file's new build keeps that build too, so a container
showing only the new build meets its fact. The downgrade drops the table. SQLite and PostgreSQL;
no compiler needed (the facts' names are the store's strings).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import alembic_config, create_store_engine, migrate, open_store
from stellaops_runtime.store.rows import HOT_COLS, OBS_COLS, hot_tuple, obs_tuple
from stellaops_runtime.store.schema import hot_symbols, node_fact_builds, observation_windows
from tests.cli_run import cli_in_process
from tests.integration.test_answer_replaced_in_place import HOST, _delta, _windows
from tests.integration.test_vex import DAY, T0, S

MODULE = "/proc/1/root/usr/bin/stella-app"
OLD, NEW = "0a" * 20, "0b" * 20
OLDPOD = "sha256:" + "a0" * 32  # ran the node's file (old build) through a hostPath mount
POD = "sha256:" + "ab" * 32  # ran it after the upgrade: rows of the new build only


@pytest.fixture
def url(empty_url: str) -> str:
    """Never migrated (tests/integration/conftest.py): the test migrates it to the revision it tests."""
    return empty_url


def _loaded(image: str, at: int, bid: str) -> HotSymbolDelta:
    key = HotSymbolKey(image, "/host/usr/bin/stella-app", "", EvidenceKind.LOADED)
    return HotSymbolDelta(key, at, 1, at + S, at + S, build_id=bid, node_name="node-1")


def _at(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` with the columns ``table`` has at the store's revision (later ones are not
    there yet), as an agent of that revision wrote them."""
    schema = "signals" if conn.dialect.name == "postgresql" else None
    have = {c["name"] for c in sa.inspect(conn).get_columns(table.name, schema=schema)}
    conn.execute(sa.insert(table), [{k: v for k, v in r.items() if k in have} for r in rows])


def _answer(url: str, image: str) -> str:
    r = cli_in_process(
        "query", "observed", "--image", image, "--function", "split_fn", "--store", url, "--json"
    )
    assert r.stdout.strip(), r.stderr[-2000:]
    return str(json.loads(r.stdout)["answer"])


def test_a_store_from_before_0016_answers_and_the_upgrade_keeps_each_build_after(url: str) -> None:
    at = T0 + 2 * DAY
    before = [
        _delta(MODULE, "split_fn.part.0", 0, at, OLD),  # the node's fact: copied
        _delta(MODULE, "split_fn", 4, at, OLD),  # a call, not a fact
        _delta("/usr/lib/libz.so.1", "inflate.part.0", 0, at, "0c" * 20, image=OLDPOD),  # its own fact
        _loaded(OLDPOD, at, OLD),
    ]
    now = dt.datetime.now(dt.UTC)
    engine = create_store_engine(url)
    try:
        migrate(engine, revision="0015")
        with engine.begin() as conn:  # as an agent before 0016 left them
            _at(
                conn,
                hot_symbols,
                [dict(zip(HOT_COLS, hot_tuple(d), strict=True), updated_at=now) for d in before],
            )
            windows = {  # the node's record once
                (w.image_digest, w.window_start_ns): w for i in (HOST, OLDPOD, POD) for w in _windows(i)
            }
            _at(
                conn,
                observation_windows,
                [dict(zip(OBS_COLS, obs_tuple(w), strict=True)) for w in windows.values()],
            )
        assert _answer(url, OLDPOD) == "unknown"  # the fact of the build its row shows, no table read
        migrate(engine)
        with engine.connect() as conn:
            t = node_fact_builds.c
            got = conn.execute(sa.select(t.image_digest, t.module, t.function_name, t.build_id)).all()
        assert [tuple(r) for r in got] == [(HOST, MODULE, "split_fn.part.0", OLD)]
    finally:
        engine.dispose()
    with open_store(url) as s:  # the node's file upgraded in place: the agent stores the new build's fact
        assert not s.write_batch(
            Batch("node-1/new", 1, [_delta(MODULE, "split_fn.part.0", 0, at + DAY, NEW)])
        ).errors
        own = _delta("/usr/lib/libz.so.1", "inflate.part.0", 0, at + DAY, "0d" * 20, image=POD)
        s.write([_loaded(POD, at + DAY, NEW), own, _delta(MODULE, "split_fn", 2, at + DAY, NEW)], [])
        assert {r["build_id"] for r in s.read_hot_symbols() if r["image_digest"] == HOST} == {OLD}
        with s.engine.connect() as conn:  # the node's facts' builds only: no image's own fact, no call
            t = node_fact_builds.c
            got = conn.execute(sa.select(t.function_name, t.build_id).order_by(t.build_id)).all()
        assert [tuple(r) for r in got] == [("split_fn.part.0", OLD), ("split_fn.part.0", NEW)]
    assert (_answer(url, OLDPOD), _answer(url, POD)) == ("unknown", "unknown")
    engine = create_store_engine(url)
    try:  # the downgrade drops the table, and the question still answers (by the rows' builds)
        cfg = alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0015")
        with engine.connect() as conn:
            schema = "signals" if conn.dialect.name == "postgresql" else None
            assert not sa.inspect(conn).has_table("node_fact_builds", schema=schema)
    finally:
        engine.dispose()
    assert _answer(url, OLDPOD) == "unknown"
