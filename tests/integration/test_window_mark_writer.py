"""A restate row clears only the unwatched-container mark its own agent wrote, on SQLite and PostgreSQL.

Agent A marked a window (a container c1 of the image ran silent that day on the node while
another container called: hotsymbols/day_calls.py). A was replaced (a restart, a rollout) and
agent B, replaying the export file, knew the window with c3 only; c3 called later that day and B
wrote a restate row for the window (hotsymbols/window_units.py ``restated``). The store let any
restate row replace the mark, so c1's mark was gone and the day read watched: a "not observed"
could be said about a container nobody watched (seen failing before the fix: evidenced_level 1, Passive).

Now a mark remembers its writer (``marked_by``, the agent's ``agent_id``; migration 0013): a
restate row clears it only when it comes from that same agent, a mark written by a second agent
makes it "several" (no restate clears it), and rows of agents before 0013 (no writer, NULL) keep
the old rule between themselves. Rows merged before the store sees them (one batch, the outage
buffer: store/marks.py ``fold``) follow the same rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns, observation_windows
from stellaops_runtime.store.writer import HotSymbolStore

T0 = datetime_to_ns(dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC))
IMG = "sha256:" + "e8" * 32
MARK, DEEP, ACTIVE, PASSIVE = Posture.NONE, Posture.EBPF_DEEP, Posture.ACTIVE_TRACING, Posture.PASSIVE
A, B = "n1/aaaa-agent-before-the-restart", "n1/bbbb-agent-after-it"


def row(events: int, evidenced: Posture | None, by: str = "") -> ObservationWindow:
    posture = DEEP if events else PASSIVE
    return ObservationWindow(
        IMG, "n1", T0, events, posture, 60, "tetragon", evidenced=evidenced, marked_by=by
    )


def restate(evidenced: Posture, by: str = "") -> ObservationWindow:
    return ObservationWindow(IMG, "n1", T0, 0, None, 60, "", evidenced=evidenced, marked_by=by)


@pytest.fixture
def store(url: str) -> Iterator[HotSymbolStore]:
    s = open_store(url)
    yield s
    s.close()


def stored(store: HotSymbolStore) -> tuple[int | None, str | None]:
    o = observation_windows.c
    with store.engine.connect() as conn:
        r = conn.execute(sa.select(o.evidenced_level, o.marked_by).where(o.image_digest == IMG)).one()
    return r.evidenced_level, r.marked_by


def test_another_agent_s_restate_keeps_the_mark_its_writer_s_clears_it(store: HotSymbolStore) -> None:
    store.write([], [row(0, MARK, A)])  # A: c1 ran silent in the window
    store.write([], [row(4, DEEP, B)])  # B replayed the export file: c3's events (a mark stays, as before)
    store.write([], [restate(PASSIVE, B)])  # B: c3 called later that day
    assert stored(store) == (0, A)  # B never knew c1: the day stays out
    store.write([], [restate(ACTIVE, A)])  # A itself saw c1 call (before it stopped)
    assert stored(store) == (ACTIVE.rank, None)


def test_a_mark_two_agents_wrote_is_cleared_by_neither(store: HotSymbolStore) -> None:
    store.write([], [row(0, MARK, A)])
    store.write([], [restate(MARK, B)])  # B, blind on its start day, marks the window too
    assert stored(store) == (0, "*")
    store.write([], [restate(PASSIVE, B)])  # B's container called: B's own reason is gone, A's is not
    store.write([], [restate(PASSIVE, A)])
    assert stored(store) == (0, "*")
    store.write([], [row(2, MARK, A)])  # a mark again by one of them: still several
    assert stored(store) == (0, "*")


def test_the_writer_s_own_marks_and_restates(store: HotSymbolStore) -> None:
    store.write([], [row(2, MARK, B)])
    store.write([], [row(0, MARK, B)])  # the same agent marks again: still its own
    assert stored(store) == (0, B)
    store.write([], [restate(DEEP, B)])
    assert stored(store) == (DEEP.rank, None)
    store.write([], [restate(MARK, A)])  # marked again, by another agent: now A's
    assert stored(store) == (0, A)


def test_rows_of_agents_before_the_writer_keep_the_old_rule(store: HotSymbolStore) -> None:
    store.write([], [row(0, MARK)])  # an older agent (no writer) marked
    store.write([], [restate(ACTIVE, B)])  # a newer agent cannot know it was its own
    assert stored(store) == (0, None)
    store.write([], [restate(ACTIVE)])  # older agents between themselves: as before
    assert stored(store) == (ACTIVE.rank, None)
    store.write([], [row(1, MARK, B)])
    store.write([], [restate(PASSIVE)])  # an older agent's restate does not clear a newer agent's mark
    assert stored(store) == (0, B)
    store.write([], [row(1, MARK)])  # and an older agent's mark beside it makes it several
    assert stored(store) == (0, "*")


def test_one_batch_follows_the_same_rule(store: HotSymbolStore) -> None:
    store.write([], [row(0, MARK, A), restate(PASSIVE, B)])  # an outage buffer, a spool replay
    assert stored(store) == (0, A)
    store.write([], [restate(PASSIVE, A), restate(MARK, B)])  # A's clear, then B's mark
    assert stored(store) == (0, "*")  # one restate row cannot say both: a kept mark, never a clear
    store.write([], [restate(MARK, A), restate(DEEP, B)])  # several in one batch: B's clear is not A's
    assert stored(store) == (0, "*")


def test_a_mark_an_agent_before_0013_cleared_still_holds_against_the_newer_rule(
    store: HotSymbolStore,
) -> None:
    """A rollback: the older agent's upsert (no writer) cleared A's mark and left A's name; a name
    beside no mark is only ever that (these upserts set it NULL with every clear), so the newer
    rule keeps it a mark: another agent's rows keep it, A's own restate still clears it."""
    store.write([], [row(3, DEEP)])
    store.write([], [row(0, MARK, A)])
    with store.engine.begin() as conn:  # what the older upsert's restate did: a value, the name left
        conn.execute(sa.update(observation_windows).values(evidenced_level=DEEP.rank))
    assert stored(store) == (DEEP.rank, A)
    store.write([], [row(2, DEEP)])  # events of another agent: the mark comes back, A's
    assert stored(store) == (0, A)
    store.write([], [restate(PASSIVE, B)])  # B's restate clears no mark of A's
    assert stored(store) == (0, A)
    store.write([], [row(0, MARK, B)])  # B marks it too: several
    assert stored(store) == (0, "*")
    with store.engine.begin() as conn:
        conn.execute(sa.update(observation_windows).values(evidenced_level=DEEP.rank, marked_by=A))
    store.write([], [restate(PASSIVE, A)])  # A's own restate clears what A wrote
    assert stored(store) == (PASSIVE.rank, None)
