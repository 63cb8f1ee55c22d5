"""The open gap on a store not yet migrated past 0002 (no ``window_seconds``): answered, never an error.

Readers never migrate (docs/operations.md, "Upgrading"). store/coverage_open.py read each node's
latest row with its ``window_seconds``, a column of migration 0003: wired into ``query observed``
(088180bf), every answer on a store at 0002 was an internal error, exit 2 ("no such column:
observation_windows.window_seconds"; tests/e2e/test_query_answers.py
``test_store_at_migration_0002_answers_with_posture_unknown``). Seen failing before the fix
(OperationalError). Such a row's length is unknown: the grace is three minutes (``grace(0)``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa

from stellaops_runtime.store.coverage_open import last_records, open_gaps
from stellaops_runtime.store.engine import create_store_engine, migrate
from stellaops_runtime.store.schema import observation_windows

IMG = "sha256:" + "a" * 64
T = dt.datetime(2026, 3, 10, 9, tzinfo=dt.UTC)


def test_an_old_store_s_latest_row_is_read_without_its_length(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path}/old.db")
    try:
        migrate(engine, revision="0002")
        with engine.begin() as conn:
            conn.execute(
                sa.insert(observation_windows).values(
                    image_digest=IMG, node_name="n", window_start=T, event_count=9
                )
            )
        with engine.connect() as conn:
            assert last_records(conn, ["n"], T + dt.timedelta(days=1)) == {"n": (T, 0)}
            [gap] = open_gaps(conn, image=IMG, asked=T + dt.timedelta(minutes=4))
            assert (gap.node_name, gap.start, gap.end) == ("n", T, T + dt.timedelta(minutes=4))
            assert open_gaps(conn, image=IMG, asked=T + dt.timedelta(minutes=3)) == []  # within grace(0)
    finally:
        engine.dispose()
