"""Code that ran under no name before a retention cut still forbids a "no" in a period reaching back to it.

A stack frame no symbol named is stored under its offset (``0x…``, store/unnamed.py); while such
rows of the package asked about fall in the period, ``query observed`` answers unknown, because
the function may be that code. Retention removes the per-window history older than
``store.retentionDays`` and keeps the cumulative rows. An unnamed row of libz that ran 40 to 59
days ago then left no window in a period starting 50 days ago, and ``query observed --since``
answered "not observed" (exit 1) from the windows left, though the cumulative row says that code
last ran 40 days ago, inside the period. Now the row counts as unnamed code of the period. The
real CLI as a subprocess, the writer's own retention, SQLite and PostgreSQL.
"""

from __future__ import annotations

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
from tests.integration.test_answer_retention import IMG, LIB, NOW, S, midnight
from tests.node_alive import alive_after

PURL = "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64"


def fill(url: str) -> None:
    """Watched every day of the 59 before today; libz loaded on each; an unnamed offset of libz on
    stacks 40..59 days ago, and the named ``crc32`` of libz every day; a record of node-1 today
    (tests/node_alive.py): its agent ran on, so its last day is watched whole, not open
    (store/coverage_open.py), whatever the hour this runs."""
    deltas, windows = [], alive_after("node-1", datetime_to_ns(midnight(0)))
    for d in range(1, 60):
        start = datetime_to_ns(midnight(d))
        windows.append(ObservationWindow(IMG, "node-1", start, 5, Posture.EBPF_DEEP, 60, "tetragon"))
        for fn, kind, ran in (("", EvidenceKind.LOADED, True), ("crc32", EvidenceKind.INVOKED, True),
                              ("0x1a2b0", EvidenceKind.ON_STACK, d >= 40)):  # fmt: skip
            if ran:
                key = HotSymbolKey(IMG, LIB, fn, kind)
                deltas.append(
                    HotSymbolDelta(key, start, 3, start + S, start + 2 * S, node_name="node-1", purl=PURL)
                )
    with open_store(url) as s:
        s.write(deltas, windows)


def observed(url: str, *period: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    return observed_json(url, IMG, "inflateGetHeader", "--purl", "pkg:deb/debian/zlib1g", *period)


def test_unnamed_code_whose_history_retention_removed_still_makes_a_period_unknown(url: str) -> None:
    fill(url)
    back = ("--since", rfc3339(midnight(50)))
    code, doc = observed(url, *back)
    assert (code, doc["answer"]) == (3, "unknown")
    assert doc["unnamed"] == [{"module": LIB, "offsets": 1, "calls": 33}]  # days 40..50
    with open_store(url, retention_days=31) as s:
        assert s.maintain(now=NOW).ran
    code, doc = observed(url, *back)
    assert (code, doc["answer"]) == (3, "unknown"), doc["reason"]  # was (1, "not_observed")
    assert doc["unnamed"] == [{"module": LIB, "offsets": 1, "calls": 60}]  # the whole row: its days are gone
    # a period after the unnamed code's last frame: the windows left back a "not observed", from the
    # first day retention left (before it, its windows and gaps are gone: test_answer_before_first_record.py)
    code, doc = observed(url, "--since", rfc3339(midnight(32)))
    assert (code, doc["answer"]) == (1, "not_observed") and not doc.get("unnamed"), doc["reason"]
