"""A node-wide gap after midnight touches an image first watched on that node after midnight.

With a window that does not divide a day (5000 s: stores written before the configuration refused
it, test_config_window_divides_day.py), a window starts at 23:50 and ends at 01:13:20. A node-wide
gap (Tetragon's rate limit, the agent's own drops, an outage) from 00:10 to 00:20 is on that
window's row, dated June 1. The image ran on the node only from June 2 (its first window at
12:00): a node-wide gap touched an image only on the days of the gap rows' window starts, so this
one touched nothing of it, and ``evidence`` counted June 2 a gap-free watched day:
PotentiallyReachable, exit 1, a "not observed" over a day whose events may be among those
dropped. A node-wide gap now touches the image on every day it reaches (its window's start day
and its end's), and June 2 is out; a gap ending at midnight still leaves the next day watched.
SQLite and PostgreSQL, through the CLI.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from stellaops_runtime.contracts.hotsymbols import (
    NODE_WIDE,
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
IMG = "sha256:" + "c" * 64
PURL = "pkg:deb/debian/zlib1g@1.2.13"


def ns(*a: int) -> int:
    return datetime_to_ns(dt.datetime(*a, tzinfo=dt.UTC))


def fill(url: str, gap_start: int, gap_end: int) -> None:
    w1, w2 = ns(2026, 6, 1, 23, 50), ns(2026, 6, 2, 12, 0)  # 5000 s: June 1 23:50 to June 2 01:13:20
    loaded = HotSymbolDelta(
        HotSymbolKey(IMG, "/l", "", EvidenceKind.LOADED), w2, 1, w2 + S, w2 + S, purl=PURL
    )
    with open_store(url) as s:
        s.write([loaded], [
            ObservationWindow(NODE_WIDE, "a", w1, 0, None, 5000, "tetragon", gap_start, gap_end, 0, 40),
            ObservationWindow(IMG, "a", w2, 5, Posture.EBPF_DEEP, 5000, "tetragon"),
            *alive_after("a", ns(2026, 6, 3)),  # node a's agent ran on: June 2 is watched whole
        ])  # fmt: skip


def evidence(url: str) -> tuple[int, Any]:
    return cli_json("evidence", "--store", url, "--image", IMG, "--purl", "pkg:deb/debian/zlib1g",
                    "--function", "crc32", "--json")  # fmt: skip


def test_a_node_wide_gap_after_midnight_takes_the_day_out_of_an_image_first_seen_after_it(url: str) -> None:
    fill(url, ns(2026, 6, 2, 0, 10), ns(2026, 6, 2, 0, 20))
    code, doc = evidence(url)
    assert (code, doc["reachability_state"], doc["data"]["watched_days"]) == (3, None, 0), doc
    assert [g["node"] for g in doc["data"]["gaps"]] == ["a"], doc["data"]["gaps"]
    code, _ = cli_json("query", "observed", "--store", url, "--image", IMG, "--function", "crc32", "--json",
                       "--since", "2026-06-02T00:00:00Z", "--until", "2026-06-02T23:59:59Z")  # fmt: skip
    assert code == 3  # the same day, the same answer: unknown


def test_a_node_wide_gap_that_ends_at_midnight_leaves_the_next_day_watched(url: str) -> None:
    fill(url, ns(2026, 6, 1, 23, 55), ns(2026, 6, 2))
    code, doc = evidence(url)
    assert (code, doc["reachability_state"], doc["data"]["watched_days"]) == (1, "PotentiallyReachable", 1)
