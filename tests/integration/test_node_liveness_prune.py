"""The retention pass prunes the proofs of life of nodes not heard of for longer than the retention.

Defect (RLV's report, session 45, "Left alone" 6): ``node_liveness`` kept a row for every node name
ever seen; retention (``store.retentionDays``) never touched it. Now the retention pass
(store/writer.py ``maintain``, store/node_liveness.py ``prune_liveness``) deletes the rows whose
write and claim (on both clocks) are older than its cutoff. Pruning must never make a node read as
watched: a live or recently dead node's row is newer than the cutoff and stays, and a pruned row's
watched end is on a day whose windows retention removed, so every answer the store can still give
is the same with or without it (checked here on a stale row: a node whose proofs stopped 40 days
ago while its windows went on). Real SQLite and PostgreSQL stores, the question's own reader.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.coverage_live import liveness, store_now
from stellaops_runtime.store.coverage_open import open_days, open_gaps
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns, node_liveness, observation_windows

IMG = "sha256:" + "9" * 64
D = dt.timedelta(days=1)
M = dt.timedelta(minutes=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        put: Callable[[Path], str] = request.getfixturevalue("sqlite_at_head")
        return put(tmp_path / "hot.db")
    return str(request.getfixturevalue("pg_url"))


def row(node: str, written: dt.datetime, node_ahead: dt.timedelta = dt.timedelta()) -> dict[str, Any]:
    """A proof of life written at ``written`` (store clock) claiming a flush before it."""
    alive = written - dt.timedelta(seconds=10)
    return {
        "node_name": node, "agent_id": f"{node}/a", "started_at": written - D, "started_node": written - D,
        "alive_through": alive, "alive_node": alive + node_ahead, "written_at": written,
        "flush_seconds": 10.0, "window_seconds": 60,
    }  # fmt: skip


def answers(url: str, asked: dt.datetime) -> tuple[Any, Any]:
    with open_store(url) as s, s.engine.connect() as c:
        gaps = sorted((g.node_name, g.start, g.end) for g in open_gaps(c, image=IMG, asked=asked))
        return gaps, open_days(c, IMG, asked)


def test_rows_older_than_the_retention_are_pruned_and_no_answer_changes(url: str) -> None:
    with open_store(url) as s, s.engine.connect() as c:
        now = store_now(c)
    old = now - 40 * D  # past a 31-day retention's cutoff
    rows = [
        row("gone", old),  # scaled away 40 days ago
        row("stale", old),  # its proofs stopped 40 days ago, its windows go on (below)
        row("live", now),
        row("dead-yesterday", now - D),
        row("clock-ahead", old, node_ahead=39 * D),  # its claim on its node's clock is recent: kept
    ]
    win = ObservationWindow(IMG, "stale", datetime_to_ns(now - 5 * M), 3, Posture.EBPF_DEEP, 60, "tetragon")
    with open_store(url, retention_days=31) as s:
        with s.engine.begin() as c:
            c.execute(sa.insert(node_liveness), rows)
        s.write([], [win])
        asked = now + 10 * M  # the stale node's windows stopped: its day reads open
        before = answers(url, asked)
        s.maintain(retention=True)
        with s.engine.connect() as c:
            left = sorted(liveness(c, [r["node_name"] for r in rows]))
            windows = c.execute(sa.select(observation_windows.c.node_name)).scalars().all()
    assert left == ["clock-ahead", "dead-yesterday", "live"]  # before: all five kept for ever
    assert windows == ["stale"]  # the pruned nodes have no window in retention but the stale node's
    after = answers(url, asked)
    assert after == before and after[0] != [], (before, after)  # the stale node's open time as before
