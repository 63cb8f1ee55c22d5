"""Rows of the wrong type, read back from a spool file, on real SQLite and PostgreSQL.

A spool file is JSON on disk, read back after a restart (possibly by another
version of the agent), so its rows hold whatever types the file holds.
Before store/rowcheck.py:

- SQLite stored a count of ``7.5`` as it was, and ``"abc"`` as text that the
  next sum turned into nothing: wrong answers, no error;
- a window start given as text raised a ``TypeError`` (not a database error),
  so the whole batch was retried for ever and every later flush waited
  behind it.

Now each such row is quarantined with what is wrong with it, every other row
of its batch is stored with its exact count, and the batch is never retried.
The same holds for rows the aggregator built (no check, for speed) whose
values a conversion cannot take: a sample that is no JSON is stored cleaned,
a row that cannot be converted is quarantined. A spool file of any shape
gives a SpoolError (the agent moves it aside), never another exception.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.spool import SpoolError, parse_spool, read_spool, write_spool
from stellaops_runtime.store.writer import HotSymbolStore
from tests.integration.test_flush_ledger import T0, S, counts, quarantined

IMG = "sha256:" + "d" * 64

# (field, value, what the quarantined row's error says)
BAD_DELTA_FIELDS: list[tuple[str, Any, str]] = [
    ("invocation_count", 7.5, "invocation_count is not a non-negative integer"),
    ("invocation_count", "abc", "invocation_count is not a non-negative integer"),
    ("invocation_count", True, "invocation_count is not a non-negative integer"),
    ("invocation_count", -3, "invocation_count is not a non-negative integer"),
    ("window_start_ns", "zz", "window_start_ns is not an integer"),
    ("last_seen_ns", None, "last_seen_ns is not an integer"),
    ("unique_callers", [1], "unique_callers is not a non-negative integer"),
    ("confidence", "x", "confidence is not a number from 0 to 1"),
    ("confidence", 7.0, "confidence is not a number from 0 to 1"),
    ("build_id", 12, "build_id is not text"),
    ("sample", [1, 2], "sample is not an object"),
]


def delta(fn: str, count: int, **changes: Any) -> HotSymbolDelta:
    d = HotSymbolDelta(
        key=HotSymbolKey(IMG, "/lib/libz.so.1", fn, EvidenceKind.INVOKED),
        window_start_ns=T0,
        invocation_count=count,
        first_seen_ns=T0 + S,
        last_seen_ns=T0 + 2 * S,
        node_name="node-1",
        sample={"binary": "/bin/z"},
    )
    for k, v in changes.items():
        setattr(d, k, v)
    return d


@pytest.fixture
def store(url: str) -> Iterator[HotSymbolStore]:
    s = open_store(url)
    yield s
    s.close()


def spooled(tmp_path: Path, units: list[HotSymbolDelta | ObservationWindow | None]) -> Batch:
    """``units`` as one batch written to a spool file and read back (as the agent does at start)."""
    path = tmp_path / "hot.spool"
    write_spool(path, [Batch("node-1/old", 9, units)])
    [back] = read_spool(path) or []
    assert back.from_spool
    return back


def test_wrong_types_read_from_a_spool_are_quarantined_and_the_rest_stored(
    store: HotSymbolStore, tmp_path: Path
) -> None:
    units: list[HotSymbolDelta | ObservationWindow | None] = []
    for i, (field, value, _) in enumerate(BAD_DELTA_FIELDS):
        units.append(delta(f"good_{i}", 10 + i))
        units.append(delta(f"bad_{i}", 100 + i, **{field: value}))
    units.append(ObservationWindow(IMG, "node-1", T0, 5, Posture.EBPF_DEEP, 60, "tetragon"))
    units.append(ObservationWindow(IMG, "node-2", T0, "5", Posture.EBPF_DEEP, 60, "tetragon"))  # type: ignore[arg-type]
    batch = spooled(tmp_path, units)

    result = store.write_batch(batch)

    n = len(BAD_DELTA_FIELDS)
    assert (result.written, result.quarantined, result.duplicate) == (n + 1, n + 1, 0)
    assert counts(store) == {f"good_{i}": 10 + i for i in range(n)}
    # Integers where integers belong, nothing else: a count of 7.5 or "abc" would be a wrong answer.
    assert all(type(c) is int for c in counts(store).values())
    q = quarantined(store)
    assert len(q) == n + 1
    errors = [r["error"] for r in q]
    for (_, _, why), err in zip(BAD_DELTA_FIELDS, errors, strict=False):
        assert err == f"not stored as read from the spool: {why}"
    assert errors[-1] == "not stored as read from the spool: event_count is not a non-negative integer"
    assert [json.loads(r["row_json"])["function_name"] for r in q[:n]] == [f"bad_{i}" for i in range(n)]
    # Only counts that are counts are reported as quarantined invocations (not 7.5, "abc", True, -3).
    assert result.quarantined_invocations == sum(
        100 + i for i, (f, _, _) in enumerate(BAD_DELTA_FIELDS) if f != "invocation_count"
    )

    # Written once: the same batch again (a lost acknowledgement) adds nothing.
    again = store.write_batch(batch)
    assert (again.written, again.quarantined, again.duplicate) == (0, 0, 2 * n + 2)
    assert counts(store) == {f"good_{i}": 10 + i for i in range(n)}


def test_rows_the_agent_built_that_no_conversion_takes_never_block_the_batch(store: HotSymbolStore) -> None:
    deep: list[Any] = []
    inner = deep
    for _ in range(5_000):
        inner.append([])
        inner = inner[0]
    units: list[HotSymbolDelta | ObservationWindow | None] = [
        delta("a", 1),
        delta("set_in_sample", 2, sample={"args": {1, 2}}),
        delta("b", 3),
        delta("deep_sample", 4, sample={"stack": deep}),
        delta("text_window", 5, window_start_ns="zz"),
        delta("c", 6),
    ]
    result = store.write_batch(Batch("node-1/x", 1, units))
    # The samples are illustrations: stored cleaned, with their counts. The window start cannot
    # be converted: that row is quarantined, the others stored.
    assert counts(store) == {"a": 1, "set_in_sample": 2, "b": 3, "deep_sample": 4, "c": 6}
    assert (result.written, result.quarantined) == (5, 1)
    [q] = quarantined(store)
    assert json.loads(q["row_json"])["function_name"] == "text_window"
    samples = {r["function_name"]: r["sample"] for r in store.read_hot_symbols()}
    assert samples["set_in_sample"] == {"args": None}
    depth, s = 0, samples["deep_sample"]["stack"]
    while isinstance(s, list) and s:
        depth, s = depth + 1, s[0]
    assert depth < 100


def _signed(lines: list[bytes]) -> bytes:
    body = b"".join(ln + b"\n" for ln in lines)
    return body + json.dumps({"sha256": hashlib.sha256(body).hexdigest()}).encode() + b"\n"


HEADER = json.dumps({"format": "stellaops-runtime-spool", "version": 1, "batches": 1, "rows": 1}).encode()


@pytest.mark.parametrize(
    "lines",
    [
        [b"[1, 2]"],  # a header that is no object
        [HEADER, b'{"agent_id": "a", "seq": 1, "units": [[1]]}'],  # a row that is no object
        [HEADER, b'{"agent_id": "a", "seq": 1, "units": [{"t": "delta"}]}'],  # a row without its key
        [HEADER, b"[" * 100_000 + b"]" * 100_000],  # nesting deeper than the parser goes
        [HEADER, b'{"agent_id": "a", "seq": 1, "units": [{"t": "observation", "posture": "Z"}]}'],
    ],
    ids=["header-list", "row-list", "row-no-key", "deep", "bad-posture"],
)
def test_a_spool_of_any_shape_gives_a_spool_error_never_another_exception(lines: list[bytes]) -> None:
    with pytest.raises(SpoolError):
        parse_spool(_signed(lines))
