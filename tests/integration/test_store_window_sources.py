"""A window two sources observed names both, on PostgreSQL and SQLite, whichever was written first.

The agent's source switch can move from Tetragon to its BCC probes (and
back) in the middle of an observation window. The aggregator joins both
sources when the switch falls inside one flush; when it falls between two
flushes of the same window, the store's upsert must do the same, or the
window would claim one source for events the other delivered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from stellaops_runtime.contracts.hotsymbols import ObservationWindow, normal_sources, union_sources
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store import coverage
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from stellaops_runtime.store.writer import HotSymbolStore

S = 1_000_000_000
T0 = datetime_to_ns(dt.datetime(2025, 3, 1, 12, tzinfo=dt.UTC))
IMG = "sha256:" + "d" * 64


def window(source: str, *, start: int = T0, events: int = 3) -> ObservationWindow:
    return ObservationWindow(IMG, "n1", start, events, Posture.ACTIVE_TRACING, 60, source)


@pytest.fixture
def store(url: str) -> Iterator[HotSymbolStore]:
    s = open_store(url)
    yield s
    s.close()


def _sources(store: HotSymbolStore) -> dict[int, str]:
    return {datetime_to_ns(r["window_start"]): r["source"] for r in store.read_observation_windows()}


@pytest.mark.parametrize(
    ("flushes", "expected"),
    [
        (["tetragon", "bcc"], "bcc,tetragon"),
        (["bcc", "tetragon"], "bcc,tetragon"),
        (["tetragon", "tetragon", "bcc", "bcc", "tetragon"], "bcc,tetragon"),
        (["", "bcc"], "bcc"),
        (["bcc", ""], "bcc"),
        (["bcc,tetragon", "tetragon"], "bcc,tetragon"),
        (["tetragon"], "tetragon"),
    ],
    ids=["tetragon-then-bcc", "bcc-then-tetragon", "repeated", "empty-first", "empty-later", "joined", "one"],
)
def test_flushes_of_one_window_from_two_sources_name_both(
    store: HotSymbolStore, flushes: list[str], expected: str
) -> None:
    for source in flushes:
        store.write([], [window(source)])
    stored = _sources(store)[T0]
    assert normal_sources(stored) == expected
    assert set(stored.split(",")) - {""} == set(expected.split(",")) - {""}  # each name, none invented
    with store.engine.connect() as conn:
        (group,) = coverage.image_windows(conn, image=IMG)
    assert group.source == expected
    assert group.event_count == 3 * len(flushes)  # counts still add, once per flush


def test_coverage_lists_each_source_once_over_windows_of_different_sources(store: HotSymbolStore) -> None:
    store.write([], [window("tetragon"), window("bcc", start=T0 + 60 * S)])
    store.write([], [window("bcc"), window("tetragon", start=T0 + 60 * S)])
    store.write([], [window("tetragon", start=T0 + 120 * S)])
    with store.engine.connect() as conn:
        groups = coverage.image_windows(conn, image=IMG)
    summary = coverage.summarize(groups)
    assert summary is not None
    assert summary.sources == ("bcc", "tetragon")
    assert summary.windows == 3


def test_union_sources_in_one_batch_agrees_with_the_store() -> None:
    assert union_sources("tetragon", "bcc") == "bcc,tetragon"
    assert union_sources("bcc,tetragon", "tetragon") == "bcc,tetragon"
    assert union_sources("", "bcc") == "bcc" and union_sources("bcc", "") == "bcc"
    assert window("tetragon").merged(window("bcc")).source == "bcc,tetragon"
    assert normal_sources("tetragon,bcc,,tetragon") == "bcc,tetragon"
