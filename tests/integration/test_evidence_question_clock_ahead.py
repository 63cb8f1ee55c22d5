"""A question asked on a node whose clock runs ahead no longer counts that clock's future days.

Days after the question's UTC day are never watched days (9877622): a node whose clock runs
ahead stamps its windows days ahead, and 28 days watched up to today plus 3 stamped after it read
31 days without a call, "more than 30", RTS 0.20 where 28 days give 0.50. But the question's
clock was the wall clock of whoever asked, and the agent's witness bridge (witness/bridge.py)
asks on the node itself: the node whose clock runs ahead, the very one that stamped those days.
Its ``today`` was three days ahead, so its signed witnesses counted the three days again (seen
failing before the fix: watched_days 31). The question's day is now the earlier of its own clock's
and the store's (``now()`` of the PostgreSQL server; SQLite's is the same machine's clock): a
clock ahead on one side never adds a day. SQLite and PostgreSQL, as the bridge and the CLI call
it (evidence/store_facts.py ``observe``), with the asker's clock three days ahead.
"""

from __future__ import annotations

import datetime as dt

import pytest

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.evidence import store_facts
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.function_refs import function_query
from stellaops_runtime.store.refs import PurlQuery
from stellaops_runtime.store.schema import datetime_to_ns
from tests.node_alive import alive_now

S = 1_000_000_000
IMG = "sha256:" + "e" * 64
PURL = "pkg:deb/debian/zlib1g@1.2.13"


def test_an_asker_whose_clock_runs_ahead_counts_no_day_after_the_store_s(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    # 28 days up to today, 3 from the day after tomorrow (the same answer past midnight)
    days = [today - dt.timedelta(days=n) for n in range(28)] + [
        today + dt.timedelta(days=n) for n in (2, 3, 4)
    ]
    starts = [datetime_to_ns(d) for d in days]
    loaded = HotSymbolDelta(HotSymbolKey(IMG, "/l", "", EvidenceKind.LOADED), starts[0], 1, starts[0] + S,
                            starts[0] + S, purl=PURL)  # fmt: skip
    deep = Posture.EBPF_DEEP
    with open_store(url) as s:
        windows = [ObservationWindow(IMG, "ahead", t, 5, deep, 60, "tetragon") for t in starts]
        # the node's agent is running as the question comes (whatever the hour): today is watched, not
        # open (store/coverage_open.py); its rows stamped ahead are no later record of it
        s.write([loaded], windows + alive_now("ahead"))
        monkeypatch.setattr(store_facts, "_today", lambda: (today + dt.timedelta(days=4)).date())
        with s.engine.connect() as conn:
            obs = store_facts.observe(
                conn,
                image=IMG,
                purl=PurlQuery.parse("pkg:deb/debian/zlib1g"),
                function=function_query("crc32"),
            )
    assert (obs.facts.watched_days, obs.facts.days_without_calls) == (28, 28)
