"""A gap of more than MAX_GAP_WINDOWS windows leaves no day inside it "watched, no gap".

hotsymbols/gaps.py marks a gap on every window it touches, but past MAX_GAP_WINDOWS windows (clock
trouble: a throttle stamped 1970) only the first and the latest halves: an agent down for 12 days
with 10 s windows (the hole between two agents, agent/watch_record.py) left days 6 to 8 without a
gap row, and an image window there (a delayed or replayed stream's events) made a "gap-free
watched day": ``evidence`` said PotentiallyReachable, exit 1, over a day inside the hole. The
middle of a capped gap now has one row a UTC day whose gap spans the day, so every day of the hole
is a gap day and every period in it meets a gap.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from stellaops_runtime.contracts.hotsymbols import (
    NODE_WIDE,
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.hotsymbols import gaps
from stellaops_runtime.hotsymbols.gaps import MAX_GAP_WINDOWS, GapTracker
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from tests.cli_run import cli_json

ROOT = Path(__file__).resolve().parents[2]
S = 1_000_000_000
WS = 10  # window seconds: 100,000 windows are 11.6 days
IMG = "sha256:" + "a" * 64


def ns(*a: int) -> int:
    return datetime_to_ns(dt.datetime(*a, tzinfo=dt.UTC))


START, END = ns(2026, 6, 1, 6), ns(2026, 6, 13, 18)  # 12.5 days: more than MAX_GAP_WINDOWS windows


def the_hole(ws: int = WS) -> tuple[GapTracker, list[ObservationWindow]]:
    g = GapTracker(window_seconds=ws)
    g.source_gap("a", START, END)  # the time between two agents, or an outage
    return g, g.drain([])


def test_every_utc_day_of_a_capped_gap_has_a_gap_row() -> None:
    g, rows = the_hole()
    assert (END - START) // (WS * S) > MAX_GAP_WINDOWS and g.stats.capped == 1
    assert len(rows) <= MAX_GAP_WINDOWS  # still bounded: the halves shrink by the rows a day
    assert {r.image_digest for r in rows} == {NODE_WIDE}
    day, covered = dt.date(2026, 6, 1), {}
    for r in rows:
        covered.setdefault(dt.datetime.fromtimestamp(r.window_start_ns / S, dt.UTC).date(), []).append(r)
    while day <= dt.date(2026, 6, 13):
        assert day in covered, day
        day += dt.timedelta(days=1)
    # every instant of the hole lies in some row's gap
    spans = sorted((r.gap_start_ns, r.gap_end_ns) for r in rows)
    reach = START
    for a, b in spans:
        assert a <= reach, (dt.datetime.fromtimestamp(reach / S, dt.UTC), a, b)
        reach = max(reach, b)
    assert reach >= END


@pytest.mark.parametrize("at", [(2026, 6, 7, 15, 0), (2026, 6, 8, 0, 0, 10), (2026, 6, 9, 23, 59)])
def test_an_image_window_inside_the_hole_is_no_gap_free_watched_day(
    url: str, at: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the CLI; the cap lowered to 2,000 windows of a minute, so the store holds few rows
    (a day's row, whose gap runs past its window, is stored as it is on both backends)."""
    monkeypatch.setattr(gaps, "MAX_GAP_WINDOWS", 2_000)
    g, rows = the_hole(60)
    assert g.stats.capped == 1 and len(rows) <= 2_000
    w = ns(*at)
    loaded = HotSymbolDelta(HotSymbolKey(IMG, "/l", "", EvidenceKind.LOADED), w, 1, w + S, w + S,
                            purl="pkg:deb/debian/zlib1g@1")  # fmt: skip
    with open_store(url) as s:
        s.write([loaded], [*rows, ObservationWindow(IMG, "a", w, 5, Posture.EBPF_DEEP, 60, "tetragon")])
    code, doc = cli_json("evidence", "--store", url, "--image", IMG, "--purl", "pkg:deb/debian/zlib1g",
                         "--function", "crc32", "--json", real=False)  # fmt: skip
    assert (code, doc["reachability_state"], doc["data"]["watched_days"]) == (3, None, 0), doc["reason"]
    since = dt.datetime.fromtimestamp(w / S, dt.UTC)
    until = since + dt.timedelta(seconds=10)
    code, _ = cli_json("query", "observed", "--store", url, "--image", IMG, "--function", "crc32", "--json",
                       "--since", since.isoformat(), "--until", until.isoformat(), timeout=300)  # fmt: skip
    assert code == 3  # the period meets the gap: unknown, never "not observed"
