"""A doubt's rows in an answer's JSON: at most MAX_ROWS, with their count and whether cut (doubt.py).

Every doubt goes through :meth:`Doubt.to_json` (``query observed``, ``functions``, ``hot``), so a
``refused`` doubt of any function (a quarantine of many rows) is bounded as ``unattributed`` is
(tests/integration/test_answer_doubt_bound.py, through the CLI).
"""

from __future__ import annotations

import datetime as dt

from stellaops_runtime.evidence.doubt import MAX_LISTED, MAX_ROWS, Doubt, listed
from stellaops_runtime.store.queries import SymbolRow

AT = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def rows(n: int) -> tuple[SymbolRow, ...]:
    return tuple(
        SymbolRow(
            "sha256:" + "a" * 64, "/x.so", f"0x{i:x}", "on_stack", "", "", "", 1, 1, 1.0, AT, AT, "n", None
        )
        for i in range(n)
    )


def test_a_doubt_of_many_rows_lists_the_first_and_counts_them_all() -> None:
    doc = Doubt("refused", "why", rows(MAX_ROWS + 50)).to_json()
    assert (len(doc["refused"]), doc["refused_count"], doc["refused_truncated"]) == (
        MAX_ROWS,
        MAX_ROWS + 50,
        True,
    )
    assert doc["refused"][0]["function_name"] == "0x0"


def test_a_doubt_counted_by_the_database_says_how_many_it_did_not_read() -> None:
    doc = Doubt("unattributed", "why", rows(3), count=200_000).to_json()
    assert (len(doc["unattributed"]), doc["unattributed_count"], doc["unattributed_truncated"]) == (
        3,
        200_000,
        True,
    )


def test_a_doubt_of_few_or_no_rows_is_whole() -> None:
    assert Doubt("refused", "why", rows(MAX_ROWS)).to_json()["refused_truncated"] is False
    assert Doubt("interpreted", "why", ()).to_json() == {
        "interpreted": [],
        "interpreted_count": 0,
        "interpreted_truncated": False,
    }


def test_listed_counts_the_items_it_was_not_given() -> None:
    shown = listed({"/a", "/b"}, "files", total=MAX_LISTED + 5)
    assert shown == f"/a, /b, and {MAX_LISTED + 3} more files"
    assert listed({f"/{i:02}" for i in range(MAX_LISTED + 1)}, "files").endswith("/19, and 1 more files")
