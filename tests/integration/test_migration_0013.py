"""Migration 0013: a mark names its writer (``marked_by``); rows from before keep the old rule.

A mark stored before 0013 has no writer (NULL): after the upgrade a newer agent's restate row
does not clear it (it cannot know the mark was its own), an agent before 0013's restate (no
writer either) does, as before. The downgrade drops the column and keeps the rows. SQLite and
PostgreSQL (store/marks.py; the rule itself: tests/integration/test_window_mark_writer.py).
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import alembic_config, create_store_engine, migrate, open_store
from stellaops_runtime.store.schema import datetime_to_ns

T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
IMG = "sha256:" + "d3" * 32


@pytest.fixture
def url(empty_url: str) -> str:
    """Never migrated (tests/integration/conftest.py): these tests migrate it to the revision they test."""
    return empty_url


def _table(conn: sa.Connection) -> str:
    return "signals.observation_windows" if conn.dialect.name == "postgresql" else "observation_windows"


def _level(engine: sa.Engine) -> int | None:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT evidenced_level FROM {_table(conn)}")).scalar_one()


def restate(evidenced: Posture, by: str) -> ObservationWindow:
    return ObservationWindow(
        IMG, "n1", datetime_to_ns(T0), 0, None, 60, "", evidenced=evidenced, marked_by=by
    )


def test_a_mark_from_before_0013_keeps_the_old_rule_and_the_downgrade_drops_the_writer(url: str) -> None:
    engine = create_store_engine(url)
    try:
        migrate(engine, revision="0012")
        with engine.begin() as conn:  # an agent before 0013 marked the window
            pg = conn.dialect.name == "postgresql"
            cols = (
                "image_digest, node_name, window_start, event_count, posture_level, source, evidenced_level"
            )
            insert = f"INSERT INTO {_table(conn)} ({cols}) VALUES (:i, 'n1', :t, 3, 3, 't', 0)"
            conn.execute(sa.text(insert), {"i": IMG, "t": T0 if pg else T0.strftime("%Y-%m-%d %H:%M:%S.%f")})
        migrate(engine)
        with open_store(url) as store:
            store.write([], [restate(Posture.PASSIVE, "n1/newer-agent")])
            assert _level(engine) == 0  # not its mark to clear
            store.write([], [restate(Posture.PASSIVE, "")])  # an older agent's spooled restate
            assert _level(engine) == Posture.PASSIVE.rank
            store.write([], [restate(Posture.NONE, "n1/newer-agent")])
        from alembic import command

        cfg = alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0012")
        with engine.connect() as conn:
            schema = "signals" if conn.dialect.name == "postgresql" else None
            names = {c["name"] for c in sa.inspect(conn).get_columns("observation_windows", schema=schema)}
            assert "marked_by" not in names and "evidenced_level" in names
        assert _level(engine) == 0  # the row kept
    finally:
        engine.dispose()
