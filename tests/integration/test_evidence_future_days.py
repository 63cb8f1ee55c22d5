"""A day that has not happened yet is never a watched day, whatever a node's clock stamped on it.

A node whose clock runs ahead stamps its windows days ahead (the adapter clamps an event's time
to the agent's own clock plus a day, and that clock is the one ahead), and the store keeps them:
their calls were seen, so a call stamped in the future still answers "observed". The evidence
counted every stamped day as watched: 28 days watched up to today and 3 stamped after it made
31 days without a call, "more than 30", RTS 0.20 (``evidence``, ``witness``, ``vex`` rest on it)
where 28 days give 0.50. Days after the question's UTC day (its clock, not the node's) are not
counted now. SQLite and PostgreSQL, through the CLI.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.day_counts import observed_days_without_calls
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from tests.cli_run import cli_json
from tests.node_alive import alive_now

S = 1_000_000_000
IMG = "sha256:" + "f" * 64
PURL = "pkg:deb/debian/zlib1g@1.2.13"


def evidence(url: str) -> tuple[int, Any]:
    return cli_json("evidence", "--store", url, "--image", IMG, "--purl", "pkg:deb/debian/zlib1g",
                    "--function", "crc32", "--json")  # fmt: skip


def test_days_stamped_after_today_are_not_watched_days(url: str) -> None:
    today = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    # 28 days up to and including today (the question's clock), 3 after it (a clock ahead), from the
    # day after tomorrow: the same answer if the CLI's clock has passed midnight since
    ahead = [today + dt.timedelta(days=n) for n in (2, 3, 4)]
    days = [today - dt.timedelta(days=n) for n in range(28)] + ahead
    starts = [datetime_to_ns(d) for d in days]
    loaded = HotSymbolDelta(
        HotSymbolKey(IMG, "/l", "", EvidenceKind.LOADED),
        starts[0],
        1,
        starts[0] + S,
        starts[0] + S,
        purl=PURL,
    )
    deep = Posture.EBPF_DEEP
    with open_store(url) as s:
        windows = [ObservationWindow(IMG, "a", t, 5, deep, 60, "tetragon") for t in starts]
        # node a's agent is running as the question comes (whatever the hour): today is watched, not
        # open (store/coverage_open.py); its rows stamped ahead are no later record of it
        s.write([loaded], windows + alive_now("a"))
    code, doc = evidence(url)
    assert (doc["data"]["watched_days"], doc["data"]["days_without_calls"]) == (28, 28)
    assert (code, doc["reachability_state"], doc["rts"]["score"]) == (1, "PotentiallyReachable", 0.5)
    with open_store(url) as s, s.engine.connect() as conn:
        assert observed_days_without_calls(conn, image=IMG, function="crc32", today=today.date()) == 28
        assert observed_days_without_calls(conn, image=IMG, function="crc32", today=ahead[-1].date()) == 31
