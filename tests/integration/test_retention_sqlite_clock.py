"""SQLite's retention runs on the local clock: a clock stepped ahead removes nothing early.

PostgreSQL's retention takes the database's clock; a SQLite store has only the agents'. A wall
clock stepped 30 days ahead while the agent ran made the next hourly retention (31 days kept)
delete the 30 days before the true cutoff, windows and history alike (seen failing before the
fix: the cut 30 days later, 30 windows deleted). Now the local clock a store's retention reads is
bounded by the time counted since boot since the store was opened (store/retention_clock.py), so
the cut stays where the true clock puts it; a day later by both clocks it moves a day, as before.
"""

from __future__ import annotations

import datetime as dt
import time
import types
from pathlib import Path

import pytest

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store import partitions
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.partitions import retention_cutoff
from stellaops_runtime.store.retention_clock import SLACK
from stellaops_runtime.store.schema import datetime_to_ns

DAY = 86_400
IMG = "sha256:" + "d" * 64


def midnight(days_ago: int) -> dt.datetime:
    today = dt.datetime.now(dt.UTC).date()
    return dt.datetime.combine(today - dt.timedelta(days=days_ago), dt.time(), dt.UTC)


def window(node: str, days_ago: int) -> ObservationWindow:
    start = datetime_to_ns(midnight(days_ago) + dt.timedelta(hours=9))
    return ObservationWindow(IMG, node, start, 5, Posture.EBPF_DEEP, 60, "tetragon")


class _Wall(dt.datetime):
    """datetime whose ``now`` is ``time.time``'s, as patched (the clock store/partitions.py read)."""

    @classmethod
    def now(cls, tz: dt.tzinfo | None = None) -> _Wall:
        return cls.fromtimestamp(time.time(), tz)


def _clocks(
    monkeypatch: pytest.MonkeyPatch, real: tuple[float, float], wall_days: float, boot_days: float
) -> None:
    """The wall clock ``wall_days`` ahead of ``real``'s and the clock since boot ``boot_days`` ahead."""
    wall, boot = real
    monkeypatch.setattr(time, "time", lambda: wall + wall_days * DAY)
    monkeypatch.setattr(time, "clock_gettime", lambda clock: boot + boot_days * DAY)
    names = {n: getattr(dt, n) for n in ("UTC", "date", "time", "timedelta", "timezone", "tzinfo")}
    monkeypatch.setattr(partitions, "dt", types.SimpleNamespace(datetime=_Wall, **names))


def test_a_wall_clock_stepped_ahead_removes_no_day_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = (time.time(), time.clock_gettime(time.CLOCK_BOOTTIME))
    with open_store(f"sqlite:///{tmp_path / 'store.db'}", retention_days=31) as s:
        s.write([], [window("node-1", d) for d in range(1, 41)])  # watched the 40 days up to yesterday
        assert s.maintain().cutoff == midnight(32)  # the hourly run on the true clock
        kept = sorted(o["window_start"] for o in s.read_observation_windows())
        assert kept[0] == midnight(32) + dt.timedelta(hours=9) and len(kept) == 32

        _clocks(monkeypatch, real, wall_days=30, boot_days=1 / 24)  # an hour on, the wall clock 30 days ahead
        true_now = dt.datetime.fromtimestamp(real[0], dt.UTC) + dt.timedelta(hours=1)
        done = s.maintain()
        assert done.cutoff == retention_cutoff(true_now + SLACK, 31), done.cutoff  # not 30 days later
        left = sorted(o["window_start"] for o in s.read_observation_windows())
        assert left == [k for k in kept if k >= done.cutoff] and len(left) >= 31
        assert "ahead of the time counted since the store was opened" in caplog.text

        _clocks(monkeypatch, real, wall_days=1, boot_days=1)  # a day on by both clocks: the cut moves a day
        moved = s.maintain().cutoff
        assert moved == retention_cutoff(dt.datetime.fromtimestamp(time.time(), dt.UTC), 31)
        assert moved is not None and moved > midnight(32)
        assert sorted(o["window_start"] for o in s.read_observation_windows()) == [
            k for k in kept if k >= moved
        ]
