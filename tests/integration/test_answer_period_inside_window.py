"""A period inside one aggregation window is "observed" only when a call is known to be in it.

The history keeps, per window, the number of calls and the times of the first and the last.
Those two are calls; the others lie anywhere between them. A period that contains the first or
the last call certainly holds a call. A period strictly between them may hold none: before the
fix ``query observed --since 00:00:20 --until 00:00:40`` answered "observed" (exit 0, 2 calls)
for calls at 00:00:01 and 00:00:59 only. Now it is unknown (exit 3), naming the window; a
period that holds the first or the last call is still observed, one outside both not observed.
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
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from tests.integration.test_answer_unattributed import cli
from tests.node_alive import alive_after

S = 1_000_000_000
IMG = "sha256:" + "f" * 64
T = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def at(second: int) -> str:
    return (T + dt.timedelta(seconds=second)).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("since", "until", "code", "answer"),
    [
        (20, 40, 3, "unknown"),  # strictly between the first and the last call (was 0, "observed")
        (0, 1, 0, "observed"),  # holds the first call
        (59, 59, 0, "observed"),  # holds the last call, a period of zero length
        (30, 120, 0, "observed"),
        (60, 120, 1, "not_observed"),  # after the last call: the next window is watched
    ],
)
def test_a_period_between_the_first_and_last_call_of_a_window(
    url: str, since: int, until: int, code: int, answer: str
) -> None:
    start = datetime_to_ns(T)
    key = HotSymbolKey(IMG, "/usr/lib/libz.so.1", "crc32", EvidenceKind.INVOKED)
    windows = [
        ObservationWindow(IMG, "node-1", start + m * 60 * S, 5, Posture.EBPF_DEEP, 60, "tetragon")
        for m in (0, 1)
    ]
    # node-1's agent ran on (a record of it the next day): the window of 12:01 is watched, not open
    windows += alive_after("node-1", datetime_to_ns(T + dt.timedelta(days=1)))
    with open_store(url) as s:
        s.write([HotSymbolDelta(key, start, 2, start + 1 * S, start + 59 * S)], windows)
    got, doc = cli(
        url,
        "query",
        "observed",
        "--image",
        IMG,
        "--function",
        "crc32",
        "--since",
        at(since),
        "--until",
        at(until),
    )
    assert (got, doc["answer"]) == (code, answer), doc["reason"]
    if answer == "unknown":
        [w] = doc["window_spans_period"]
        assert (w["first_seen"], w["last_seen"], w["invocation_count"]) == (at(1), at(59), 2)
