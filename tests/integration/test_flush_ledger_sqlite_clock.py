"""SQLite's flush ledger is pruned by the store's bounded local clock: a step ahead doubles nothing.

On PostgreSQL the ledger runs on the server's clock (test_flush_ledger_clock.py). A SQLite store
has only the local one, and its prune (each store's first batch, then every 1,000th) read the
wall clock as it was: stepped 31 days ahead while the agents ran, the next prune by any agent of
the store deleted every ledger row, and a batch whose COMMIT went through but whose
acknowledgement was lost, retried, was stored a second time (seen failing before the fix: 2 where
1 is right). The prune now reads the clock the store's retention reads (store/retention_clock.py:
at most the time counted since the store was opened, plus an hour).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stellaops_runtime.store import ledger
from stellaops_runtime.store.engine import open_store
from tests.integration.test_flush_ledger import batch, counts

DAY = 86_400.0


def test_a_wall_clock_stepped_ahead_prunes_no_fresh_ledger_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_at_head: Callable[[Path], str]
) -> None:
    url = sqlite_at_head(tmp_path / "store.db")  # a copy of the migrated template
    wall, boot = time.time(), time.clock_gettime(time.CLOCK_BOOTTIME)
    with open_store(url) as a, open_store(url) as b:  # two agents of the node (a surge rollout)
        first = batch(1, n=2, agent="node-1/a")
        assert a.write_batch(first).written == 3  # committed; its acknowledgement lost
        # An hour on, the wall clock stepped 31 days ahead (a bad NTP source, a hand-set date).
        monkeypatch.setattr(time, "time", lambda: wall + 31 * DAY)
        monkeypatch.setattr(time, "clock_gettime", lambda clock: boot + 3_600)
        real_now = ledger._now
        monkeypatch.setattr(ledger, "_now", lambda: real_now() + dt.timedelta(days=31))
        assert b.write_batch(batch(1, n=1, agent="node-1/b")).written == 2  # its first batch prunes
        again = a.write_batch(first)  # agent a's retry
        assert (again.written, again.duplicate) == (0, 3)
        assert counts(a) == {"fn_0": 2, "fn_1": 2}  # fn_0: 1 from each agent; never 3
