"""Migration 0009: a window's posture written by an agent of the old rule never backs a "not observed".

Agents before 0009 recorded uprobe events as EbpfDeep and USDT events as
FullInstrumentation (``posture_level`` 3, 4), though uprobes and USDT show no
function but the one they probe; the store cannot tell whether such a window's
events carried user stacks. Those windows read as ActiveTracing (unknown, with
the reason), on a store not yet migrated and after 0009 alike, on SQLite and
PostgreSQL; every answer that rests on a window's posture agrees (``query
observed``'s absence, days without calls, the evidence's watched days). Agents
of two versions write to one store during a rollout (docs/operations.md,
"Upgrading"): an older agent's upsert after the migration leaves
``evidenced_level`` alone, so it cannot raise a window above what the new
agent's events evidenced. The rows written before are kept as they are.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.evidence import store_facts
from stellaops_runtime.store import coverage, day_counts
from stellaops_runtime.store.engine import create_store_engine, head_revision, migrate, open_store
from stellaops_runtime.store.schema import UtcDateTime, datetime_to_ns
from tests.node_alive import alive_after

T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
UPROBED = "sha256:" + "c3" * 32  # an old agent's uprobe window: posture_level 3
USDT = "sha256:" + "d4" * 32  # an old agent's USDT window: posture_level 4
STACKED = "sha256:" + "b2" * 32  # a new agent's window with counted user stacks


@pytest.fixture
def url(empty_url: str) -> str:
    """Never migrated (tests/integration/conftest.py): these tests migrate it to the revision they test."""
    return empty_url


def _engine(url: str) -> sa.Engine:
    return create_store_engine(url)


def _table(conn: sa.Connection) -> str:
    return "signals.observation_windows" if conn.dialect.name == "postgresql" else "observation_windows"


def old_agent_upsert(conn: sa.Connection, image: str, start: dt.datetime, events: int, level: int) -> None:
    """The observation upsert of an agent before 0009, reduced to the columns it wrote that matter here
    (store/agent_sql.py and store/pg_write.py at 0008: no ``evidenced_level``; posture merged by max)."""
    t = _table(conn)
    merged = "GREATEST" if conn.dialect.name == "postgresql" else "max"
    conn.execute(
        sa.text(
            f"INSERT INTO {t} (image_digest, node_name, window_start, event_count, posture_level, "
            "window_seconds, source) VALUES (:i, 'n1', :w, :e, :p, 60, 'tetragon') "
            "ON CONFLICT (image_digest, node_name, window_start) DO UPDATE SET "
            f"event_count = {t}.event_count + excluded.event_count, "
            f"posture_level = {merged}({t}.posture_level, excluded.posture_level)"
        ).bindparams(sa.bindparam("w", type_=UtcDateTime())),  # stored as the agents store it
        {"i": image, "w": start, "e": events, "p": level},
    )


def answers(url: str, image: str) -> tuple[coverage.Verdict, int, set[dt.date]]:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            v = coverage.absence(image, coverage.image_windows(conn, image=image))
            days = day_counts.observed_days_without_calls(conn, image=image, function="inflateGetHeader")
            return v, days, store_facts._watched_days(conn, image)
    finally:
        engine.dispose()


def _old_store(url: str) -> None:
    engine = _engine(url)
    try:
        migrate(engine, revision="0008")
        with engine.begin() as conn:
            old_agent_upsert(conn, UPROBED, T0, 30, 3)
            old_agent_upsert(conn, UPROBED, T0 + dt.timedelta(minutes=1), 20, 3)
            old_agent_upsert(conn, USDT, T0, 5, 4)
    finally:
        engine.dispose()


def test_old_windows_read_as_active_tracing_before_and_after_the_migration(url: str) -> None:
    _old_store(url)
    for migrated in (False, True):  # readers never migrate: an unmigrated store answers the same
        if migrated:
            engine = _engine(url)
            migrate(engine)
            engine.dispose()
        for image, recorded, windows in ((UPROBED, "EbpfDeep", 2), (USDT, "FullInstrumentation", 1)):
            v, days, watched = answers(url, image)
            assert v.answer == coverage.UNKNOWN, v.reason
            assert v.coverage is not None and v.coverage.highest is Posture.ACTIVE_TRACING
            assert f"{windows} window{'s' * (windows != 1)} recorded at posture {recorded}" in v.reason
            assert "before store migration 0009 read as ActiveTracing" in v.reason
            assert days == 0 and not watched, (days, watched)
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            t = _table(conn)
            version = "signals.alembic_version" if conn.dialect.name == "postgresql" else "alembic_version"
            assert conn.execute(sa.text(f"SELECT version_num FROM {version}")).scalar() == head_revision()
            rows = conn.execute(sa.text(f"SELECT posture_level, evidenced_level, event_count FROM {t}")).all()
            assert sorted(map(tuple, rows)) == [(3, None, 20), (3, None, 30), (4, None, 5)]  # kept as written
    finally:
        engine.dispose()


def test_a_new_agents_stacks_count_and_an_old_agents_uprobes_after_the_migration_do_not(url: str) -> None:
    _old_store(url)
    w0 = datetime_to_ns(T0)
    with open_store(url) as store:  # the new agent migrates the store and writes by today's rule
        store.write([], [ObservationWindow(STACKED, "n1", w0, 40, Posture.EBPF_DEEP, 60, "tetragon")])
        # the new agent's uprobe events in the old agent's window: ActiveTracing by today's rule
        store.write([], [ObservationWindow(UPROBED, "n1", w0, 10, Posture.ACTIVE_TRACING, 60, "tetragon")])
        # n1's agent ran on after T0's day (a record of it the next day): that day is watched whole,
        # not left open as an agent that may be down since (store/coverage_open.py)
        store.write([], alive_after("n1", datetime_to_ns(T0 + dt.timedelta(days=1))))
    v, days, watched = answers(url, STACKED)
    assert v.answer == coverage.NOT_OBSERVED and v.coverage is not None, v.reason
    assert v.coverage.highest is Posture.EBPF_DEEP and days == 1 and len(watched) == 1
    engine = _engine(url)
    try:  # a rollout: agents before 0009 still write, with the old rule, to the migrated store
        with engine.begin() as conn:
            old_agent_upsert(conn, STACKED, T0, 7, 4)  # over a new agent's window: stays EbpfDeep
            old_agent_upsert(conn, UPROBED, T0, 5, 3)  # over both: stays ActiveTracing
            old_agent_upsert(conn, USDT, T0 + dt.timedelta(minutes=5), 5, 4)  # a new row of its own
    finally:
        engine.dispose()
    v, days, _ = answers(url, STACKED)
    assert v.answer == coverage.NOT_OBSERVED and v.coverage is not None and v.coverage.event_count == 47
    assert v.coverage.highest is Posture.EBPF_DEEP and days == 1
    for image in (UPROBED, USDT):
        v, days, watched = answers(url, image)
        assert v.answer == coverage.UNKNOWN and v.coverage is not None, v.reason
        assert v.coverage.highest is Posture.ACTIVE_TRACING and days == 0 and not watched
        assert "before store migration 0009" in v.reason
    v, _, _ = answers(url, UPROBED)
    assert v.coverage is not None and v.coverage.event_count == 65  # 30 + 20 + 10 + 5: every count kept


@pytest.mark.parametrize("revision", ["0008"])
def test_the_downgrade_drops_the_column_and_keeps_the_rows(url: str, revision: str) -> None:
    with open_store(url) as store:
        store.write([], [ObservationWindow(STACKED, "n1", datetime_to_ns(T0), 4, Posture.EBPF_DEEP, 60, "t")])
    engine = _engine(url)
    try:
        from alembic import command

        from stellaops_runtime.store.engine import alembic_config

        cfg = alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT posture_level, event_count FROM {_table(conn)}")).all()
            assert [tuple(r) for r in rows] == [(3, 4)]
        # and the answers of a store at 0008 hold: the window reads as ActiveTracing (not trusted)
        v, _, _ = answers(url, STACKED)
        assert v.answer == coverage.UNKNOWN and "before store migration 0009" in v.reason
    finally:
        engine.dispose()
