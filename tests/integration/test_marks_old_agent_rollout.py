"""An agent before migration 0013 writing windows of a 0013 store: what its upsert does to ``marked_by``.

docs/operations.md "Upgrading". An agent before 0013 runs its own upsert, which neither reads
nor writes ``marked_by``; its rule for ``evidenced_level`` is the old one (its restate rows clear
any mark), and the name it leaves beside no mark keeps that mark counted (the newer upserts and
the answers read a writer named beside no mark as a mark: only such an upsert leaves one).
:data:`OLD_UPSERT` is that upsert's rule for the columns that matter here, as it was
before 0013 (store/pg_write.py and agent_sql.py of 887c699^). SQLite: the rule is the same SQL
on PostgreSQL (tests/integration/test_window_mark_writer.py runs the newer rule on both).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import observation_windows
from stellaops_runtime.store.writer import HotSymbolStore

T0 = 1_772_452_800 * 1_000_000_000  # 2026-03-02 12:00 UTC
IMG = "sha256:" + "e8" * 32
MARK, PASSIVE = Posture.NONE, Posture.PASSIVE
X, Y = "n1/xxxx-a-newer-agent", "n1/yyyy-the-next-newer-agent"

OLD_UPSERT = """
INSERT INTO main.observation_windows (image_digest, node_name, window_start, event_count,
    posture_level, window_seconds, source, throttle_count, dropped_events, evidenced_level)
VALUES (:img, 'n1', :start, :events, :posture, 60, :source, 0, 0, :level)
ON CONFLICT (image_digest, node_name, window_start) DO UPDATE SET
    event_count = main.observation_windows.event_count + excluded.event_count,
    evidenced_level = CASE
        WHEN main.observation_windows.evidenced_level = 0
            AND (excluded.event_count > 0 OR excluded.posture_level IS NOT NULL) THEN 0
        ELSE coalesce(excluded.evidenced_level, main.observation_windows.evidenced_level) END
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HotSymbolStore]:
    s = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    s.close()


def new(store: HotSymbolStore, evidenced: Posture, by: str, events: int = 0) -> None:
    posture = PASSIVE if events else None
    source = "tetragon" if events else ""
    store.write(
        [], [ObservationWindow(IMG, "n1", T0, events, posture, 60, source, evidenced=evidenced, marked_by=by)]
    )


def old(store: HotSymbolStore, evidenced: Posture, events: int = 0) -> None:
    with store.engine.begin() as conn:  # the window's stored start, as stored (SQLite: UTC text)
        start = conn.execute(sa.text("SELECT window_start FROM main.observation_windows")).scalar()
        conn.execute(
            sa.text(OLD_UPSERT),
            {
                "img": IMG,
                "start": start,
                "events": events,
                "posture": PASSIVE.rank if events else None,
                "source": "tetragon" if events else "",
                "level": evidenced.rank,
            },
        )


def stored(store: HotSymbolStore) -> tuple[int | None, str | None]:
    o = observation_windows.c
    with store.engine.connect() as conn:
        r = conn.execute(sa.select(o.evidenced_level, o.marked_by).where(o.image_digest == IMG)).one()
    return r.evidenced_level, r.marked_by


def test_a_forward_rollout_keeps_the_older_agent_s_mark(store: HotSymbolStore) -> None:
    new(store, PASSIVE, "", events=2)  # the window's row (any writer)
    old(store, MARK)  # the agent before 0013 marks it (no writer)
    assert stored(store) == (0, None)
    new(store, PASSIVE, X)  # the newer agent after it: its restate leaves a mark without a writer
    assert stored(store) == (0, None)
    new(store, MARK, X)  # it marks the window too: several
    assert stored(store) == (0, "*")


def test_a_rollback_s_older_agent_clears_a_newer_mark_and_leaves_its_writer_which_keeps_it(
    store: HotSymbolStore,
) -> None:
    new(store, MARK, X, events=2)  # a newer agent X marked the window, then was rolled back
    old(store, MARK)  # the older agent marks it too: X's name stays (not "several")
    assert stored(store) == (0, X)
    old(store, PASSIVE)  # its restate clears the mark, as before 0013: the name is left stale
    assert stored(store) == (PASSIVE.rank, X)
    new(store, MARK, Y)  # rolled forward again: X's mark the older agent cleared still counts: several
    assert stored(store) == (0, "*")
    new(store, PASSIVE, X)  # and no restate clears it
    assert stored(store) == (0, "*")


def test_a_stale_writer_s_mark_is_cleared_only_by_that_agent(store: HotSymbolStore) -> None:
    new(store, MARK, X, events=2)
    old(store, MARK)  # the older agent's own mark under X's name
    new(store, PASSIVE, Y)  # any later agent: kept
    assert stored(store) == (0, X)
    new(store, PASSIVE, X)  # X itself, writing after the older agent (two agents of a node at once)
    assert stored(store) == (PASSIVE.rank, None)  # the older agent's mark is gone with X's


def test_a_newer_mark_an_older_agent_cleared_in_a_rollback_still_takes_the_day_out(
    store: HotSymbolStore,
) -> None:
    """The older agent's restate clears X's mark (its upsert knows no writer) and leaves X's name:
    a window whose ``marked_by`` names a writer while it holds no mark can only be that (the newer
    upserts set it NULL with every clear), so the answers still count it as marked, and the day of
    a silent container X saw stays out of the watched days. Before: the day read watched."""
    from stellaops_runtime.store.coverage_unseen import image_unseen

    deep = Posture.EBPF_DEEP
    store.write([], [ObservationWindow(IMG, "n1", T0, 5, deep, 60, "tetragon", evidenced=deep)])  # calls
    new(store, MARK, X)  # X: a silent container of the image ran in the window, unseen all day
    with store.engine.connect() as conn:
        assert [u.unwatched for u in image_unseen(conn, image=IMG)] == [1]
    old(store, deep)  # rolled back: the older agent restates the window as it knew it
    assert stored(store) == (deep.rank, X)
    with store.engine.connect() as conn:
        assert [u.unwatched for u in image_unseen(conn, image=IMG)] == [1]
    new(store, MARK, Y)  # rolled forward again: a mark of the next agent over it, several
    assert stored(store) == (0, "*")
    new(store, PASSIVE, Y)  # whose restate clears no other agent's mark
    with store.engine.connect() as conn:
        assert [u.unwatched for u in image_unseen(conn, image=IMG)] == [1]
