"""A period that reaches back past ``store.retentionDays`` is never "not observed" for old calls.

Retention removes the per-window history and the observation windows older than its cutoff,
and keeps the cumulative row (store/partitions.py). ``crc32`` ran 40 to 59 days ago; with 31
days kept, ``query observed --since <50 days ago>`` found no call in the history left and
answered "not observed" (exit 1) on the windows left, though the cumulative row says crc32 last
ran 40 days ago, inside the period. Now it is unknown (exit 3), naming the row and the
retention. A period after the last call, and a question without a period, keep their answers.
The real CLI (in this process, tests/cli_run.py ``cli_in_process``; the answer the fix changed also
as a subprocess), the writer's own retention, SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.queries import rfc3339
from stellaops_runtime.store.schema import datetime_to_ns
from tests.cli_run import observed_json
from tests.node_alive import alive_now

S = 1_000_000_000
IMG = "sha256:" + "e" * 64
LIB = "/usr/lib/libz.so.1"
NOW = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)


def midnight(days_ago: int) -> dt.datetime:
    return dt.datetime.combine(NOW.date() - dt.timedelta(days=days_ago), dt.time(), dt.UTC)


def fill(url: str) -> None:
    """Watched at EbpfDeep every day of the last 60; crc32 called 7 times a day 40..59 days ago."""
    deltas, windows = [], []
    for d in range(60):
        start = datetime_to_ns(midnight(d))
        windows.append(ObservationWindow(IMG, "node-1", start, 5, Posture.EBPF_DEEP, 60, "tetragon"))
        if d >= 40:
            key = HotSymbolKey(IMG, LIB, "crc32", EvidenceKind.INVOKED)
            deltas.append(HotSymbolDelta(key, start, 7, start + S, start + 2 * S, node_name="node-1"))
    with open_store(url) as s:
        s.write(deltas, windows)


def observed(url: str, *period: str, real: bool = False) -> tuple[int, dict]:  # type: ignore[type-arg]
    return observed_json(url, IMG, "crc32", *period, real=real)


def test_calls_whose_history_retention_removed_are_unknown_in_a_period(url: str) -> None:
    fill(url)
    back = ("--since", rfc3339(midnight(50)))
    code, doc = observed(url, *back)
    assert (code, doc["answer"], doc["records"][0]["invocation_count"]) == (0, "observed", 77)  # days 40..50
    with open_store(url, retention_days=31) as s:
        done = s.maintain(now=NOW)
    assert done.ran and done.cutoff == midnight(32)
    code, doc = observed(url, *back, real=True)
    assert (code, doc["answer"], doc["observed"]) == (3, "unknown", None)  # was (1, "not_observed")
    [row] = doc["history_removed"]
    assert (row["module"], row["invocation_count"]) == (LIB, 140)
    assert row["last_seen"] == rfc3339(midnight(40) + dt.timedelta(seconds=2))
    assert "store.retentionDays" in doc["reason"] and doc["coverage"]["start"] == rfc3339(midnight(32))
    # a period that starts after the last call: the windows left back a "not observed" from the first
    # day retention left; before it (days 39..33), its windows and gaps are gone: unknown
    # (test_answer_before_first_record.py); node-1's agent is running as the question comes, so today
    # is watched, not open (store/coverage_open.py), whatever the hour
    with open_store(url) as s:
        s.write([], alive_now("node-1"))
    code, doc = observed(url, "--since", rfc3339(midnight(32)))
    assert (code, doc["answer"], doc.get("history_removed")) == (1, "not_observed", None)
    code, doc = observed(url, "--since", rfc3339(midnight(39)))
    assert (code, doc["answer"], doc.get("history_removed")) == (3, "unknown", None)
    code, doc = observed(url, "--until", rfc3339(midnight(35)), "--since", rfc3339(midnight(45)))
    assert (code, doc["answer"]) == (3, "unknown")  # entirely in the removed days: nothing watched
    # the question without a period rests on the cumulative row: observed
    code, doc = observed(url)
    assert (code, doc["answer"], doc["records"][0]["invocation_count"]) == (0, "observed", 140)
