"""A live agent whose node sends no event never reads as down (store/coverage_open.py's grace).

With ``lifecycle`` on (its default is "auto": on wherever the runtime's socket exists), an agent
whose node sends no event writes only lifecycle rows: window W's row once W is over, its
``windowSettleSeconds`` (5 s) have passed and the next flush (``flushIntervalSeconds``, 10 s) runs.
So just after a window ends, the latest stored row is still the one of the window before it,
two windows and up to settle + flush interval old. With a grace of two windows, a question
asked in those seconds found the node "open" (its agent may be down): 7 to 22 % of the seconds
of a healthy, idle node, depending on the flushes' phase (seen failing before the fix: 72 to 234
open seconds of these 20 minutes), and on every idle node at once, since windows start on the
clock's minute. Every image watched there that day lost the day (vex ``under_investigation``) and
``query observed`` over today answered unknown, at random.

The agent's own schedule drives this test: the real :class:`RunWindows` sampled every second and
drained at each flush, as agent/lifecycle_part.py does, with the default settle and flush interval.
"""

from __future__ import annotations

import datetime as dt

import pytest

from stellaops_runtime.hotsymbols.run_windows import Run, RunWindows
from stellaops_runtime.store.coverage_open import open_span

S = 1_000_000_000
T0 = int(dt.datetime(2026, 3, 10, 10, tzinfo=dt.UTC).timestamp()) * S
FLUSH_SECONDS = 10  # hotSymbols.flushIntervalSeconds' default


def _utc(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns / S, dt.UTC)


@pytest.mark.parametrize("phase", range(FLUSH_SECONDS))
def test_an_idle_node_s_live_agent_is_never_open(phase: int) -> None:
    runs = RunWindows(window_seconds=60, node_name="n1")  # the default settle (5 s)
    image = Run("sha256:" + "a" * 64, T0 - 3600 * S, 0, True)  # a container running, sending nothing
    latest: int | None = None
    opened = []
    for second in range(20 * 60):
        now = T0 + second * S
        runs.tick(now, True, [image])
        if second % FLUSH_SECONDS == phase:  # a flush stores what the lifecycle rows drained
            for row in runs.drain([], "tetragon"):
                latest = row.window_start_ns if latest is None else max(latest, row.window_start_ns)
        if latest is not None and open_span(_utc(latest), _utc(now), 60) is not None:
            opened.append(second)
    assert latest is not None and latest >= T0 + 17 * 60 * S  # the rows kept coming
    assert opened == [], f"{len(opened)} seconds of a live agent read as open, first {opened[:3]}"
