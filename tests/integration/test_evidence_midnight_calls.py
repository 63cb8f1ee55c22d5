"""Calls of a window that crosses midnight are no proof of "more than 1,000 calls in one UTC day".

With ``aggregationWindowSeconds`` that does not divide a day (5000 s), a window starts before
midnight and ends after it. The evidence summed calls per UTC day by each window's start, so 600
calls before midnight and 500 after it, in one window, were 1,100 calls on the first day: RTS
1.00 "High frequency observation" where no UTC day can be shown to have had more than 1,000 (the
seed's table: 0.80). A window's calls now count toward one day only when its first and last call
lie in that day; a window whose calls span midnight still makes both days days with calls.
SQLite and PostgreSQL, through the store (evidence/store_facts.py is where the days are counted).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.evidence.reachability import rts
from stellaops_runtime.evidence.store_facts import observe
from stellaops_runtime.store.engine import create_store_engine, open_store
from stellaops_runtime.store.function_refs import function_query
from stellaops_runtime.store.refs import PurlQuery
from stellaops_runtime.store.schema import datetime_to_ns
from tests.node_alive import alive_after

S = 1_000_000_000
IMG = "sha256:" + "d" * 64
PURL = "pkg:deb/debian/zlib1g@1.2.13"


def ns(*a: int) -> int:
    return datetime_to_ns(dt.datetime(*a, tzinfo=dt.UTC))


def _facts(url: str, first: int, last: int, calls: int) -> tuple[int, float, int]:
    """(busiest day's calls, RTS, days without calls): one window of ``calls`` from ``first`` to ``last``."""
    w1, w2 = ns(2026, 6, 1, 23, 50), ns(2026, 6, 2, 12, 0)  # 5000 s: June 1 23:50 to June 2 01:13:20
    key = HotSymbolKey(IMG, "/usr/lib/libz.so.1", "crc32", EvidenceKind.ON_STACK)
    deep = Posture.EBPF_DEEP
    with open_store(url) as s:
        s.write(
            [HotSymbolDelta(key, w1, calls, first, last, purl=PURL)],
            [ObservationWindow(IMG, "a", w, 5, deep, 5000, "tetragon") for w in (w1, w2)]
            + alive_after("a", ns(2026, 6, 3)),  # node a's agent ran on: June 2 is watched whole
        )
    engine: sa.Engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            purl, fn = PurlQuery.parse("pkg:deb/debian/zlib1g"), function_query("crc32")
            f = observe(conn, image=IMG, purl=purl, function=fn, today=dt.date(2026, 6, 3)).facts
    finally:
        engine.dispose()
    return f.max_calls_in_a_day, rts(f).score, f.days_without_calls


def test_calls_of_a_window_across_midnight_are_no_busy_day(url: str) -> None:
    busiest, score, without = _facts(url, ns(2026, 6, 1, 23, 55), ns(2026, 6, 2, 0, 30), 1100)
    assert (score, without) == (0.80, 0), (busiest, score, without)
    assert busiest <= 1000


def test_calls_of_a_window_all_before_midnight_are_that_days(url: str) -> None:
    busiest, score, without = _facts(url, ns(2026, 6, 1, 23, 51), ns(2026, 6, 1, 23, 59), 1100)
    assert (busiest, score, without) == (1100, 1.00, 1)


def test_a_window_across_midnight_with_more_than_two_days_worth_proves_a_busy_day(url: str) -> None:
    """2,500 calls in one window across midnight lie on two UTC days, so one of them had at least
    1,250: "more than 1,000 calls in one day" holds whatever the split (RTS 1.00, as before the
    midnight rule), where counting the window toward no day said 0.80."""
    busiest, score, without = _facts(url, ns(2026, 6, 1, 23, 55), ns(2026, 6, 2, 0, 30), 2500)
    assert (busiest, score, without) == (1250, 1.00, 0)


def test_a_window_whose_last_call_is_stamped_before_its_first_is_counted_as_spanning(url: str) -> None:
    """A hostile or skewed row (last call stamped a day before the first) spans those days all the same."""
    busiest, score, without = _facts(url, ns(2026, 6, 2, 0, 30), ns(2026, 6, 1, 23, 55), 2500)
    assert (busiest, score, without) == (1250, 1.00, 0)
