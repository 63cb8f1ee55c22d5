"""A gap after midnight in a window that began the day before takes that day out of the watch.

With ``aggregationWindowSeconds`` that does not divide a day (5000 s), a window starts before
midnight and ends after it; a gap (dropped events) at 00:10 is on the row of the day before.
The evidence counted watched days by each gap row's window start, so the day the events were
dropped on stayed a gap-free watched day: ``evidence`` (and a witness) said PotentiallyReachable,
exit 1, over one "gap-free" day, while ``query observed`` for that very day said unknown. Now the
day a gap reaches is out; a gap that ends at midnight (a window's end is exclusive) does not reach
the next day. SQLite and PostgreSQL, through the CLI.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from tests.cli_run import cli_json
from tests.node_alive import alive_after

ROOT = Path(__file__).resolve().parents[2]
S = 1_000_000_000
IMG = "sha256:" + "d" * 64
PURL = "pkg:deb/debian/zlib1g@1.2.13"


def ns(*a: int) -> int:
    return datetime_to_ns(dt.datetime(*a, tzinfo=dt.UTC))


def evidence(url: str) -> tuple[int, Any]:
    return cli_json("evidence", "--store", url, "--image", IMG, "--purl", "pkg:deb/debian/zlib1g",
                    "--function", "crc32", "--json")  # fmt: skip


def fill(url: str, gap_start: int, gap_end: int) -> None:
    w1, w2 = ns(2026, 6, 1, 23, 50), ns(2026, 6, 2, 12, 0)  # 5000 s: June 1 23:50 to June 2 01:13:20
    loaded = HotSymbolDelta(
        HotSymbolKey(IMG, "/l", "", EvidenceKind.LOADED), w1, 1, w1 + S, w1 + S, purl=PURL
    )
    deep = Posture.EBPF_DEEP
    with open_store(url) as s:
        s.write([loaded], [
            ObservationWindow(IMG, "a", w1, 5, deep, 5000, "tetragon", gap_start, gap_end, 1, 0),
            ObservationWindow(IMG, "a", w2, 5, deep, 5000, "tetragon"),
            *alive_after("a", ns(2026, 6, 3)),  # node a's agent ran on: June 2 is watched whole
        ])  # fmt: skip


def test_a_gap_after_midnight_takes_its_day_out_as_query_observed_does(url: str) -> None:
    fill(url, ns(2026, 6, 2, 0, 10), ns(2026, 6, 2, 0, 20))
    code, doc = evidence(url)
    assert (code, doc["reachability_state"], doc["data"]["watched_days"]) == (3, None, 0)
    assert doc["defer_to_static_analysis"] is True
    code, _ = cli_json("query", "observed", "--store", url, "--image", IMG, "--function", "crc32", "--json",
                       "--since", "2026-06-02T00:00:00Z", "--until", "2026-06-02T23:59:59Z")  # fmt: skip
    assert code == 3  # the same day, the same answer: unknown


def test_a_gap_that_ends_at_midnight_leaves_the_next_day_watched(url: str) -> None:
    fill(url, ns(2026, 6, 1, 23, 55), ns(2026, 6, 2))
    code, doc = evidence(url)
    assert (code, doc["reachability_state"], doc["data"]["watched_days"]) == (1, "PotentiallyReachable", 1)
