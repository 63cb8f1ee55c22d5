"""The limit of SQLite's bounded retention clock: an agent started with its clock behind stays late.

store/retention_clock.py anchors the clock a SQLite store's retention (and its flush ledger's
prune) reads at the wall clock when the store was opened, and bounds every later reading by the
time since boot counted since. A wall clock stepped ahead while the agent runs removes nothing
early (tests/integration/test_retention_sqlite_clock.py); the price is that a node whose clock was
behind when the agent started (no RTC, NTP not yet synced) and is corrected later keeps the late
anchor: the retention runs that much late, and removes that much less, until the agent restarts,
logged at each reading. docs/configuration.md says so.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from stellaops_runtime.store.retention_clock import SLACK, LocalClock

DAY = 86_400.0


def test_a_clock_corrected_forward_after_the_start_is_read_as_late_as_the_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wall, boot = time.time(), time.clock_gettime(time.CLOCK_BOOTTIME)
    monkeypatch.setattr(time, "time", lambda: wall - 10 * DAY)  # 10 days behind at the start
    monkeypatch.setattr(time, "clock_gettime", lambda clock: boot)
    clock = LocalClock()
    monkeypatch.setattr(time, "time", lambda: wall + 2 * 3_600)  # NTP set it right; 2 h on
    monkeypatch.setattr(time, "clock_gettime", lambda clock: boot + 2 * 3_600)
    read = clock.now()
    late = dt.datetime.fromtimestamp(wall + 2 * 3_600, dt.UTC) - read
    assert abs(late - (dt.timedelta(days=10) - SLACK)) < dt.timedelta(seconds=1)  # ~10 days late
    assert "ahead of the time counted since the store was opened" in caplog.text
