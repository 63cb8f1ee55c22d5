"""Lifecycle observation windows in the store, on SQLite and PostgreSQL, and the answers they give.

A lifecycle row (hotsymbols/run_windows.py) is an ordinary ``observation_windows``
row with no events and a posture. It is coverage: an image that ran with no
call is "not observed" over it when the posture can see calls, "unknown" at
Passive; gaps cut it like any window, node-wide ones included; gap-only rows
(no events, no posture) still are not coverage, and an image never seen stays unknown.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from stellaops_runtime.contracts.hotsymbols import NODE_WIDE, ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store import coverage
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from stellaops_runtime.store.writer import HotSymbolStore

S = 1_000_000_000
W = 60 * S
T0 = datetime_to_ns(dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC))
RAN = "sha256:" + "a" * 64
NEVER = "sha256:" + "b" * 64
BUSY = "sha256:" + "c" * 64


def ran(image: str, window: int, posture: Posture = Posture.EBPF_DEEP) -> ObservationWindow:
    # A row with no events carries its evidenced posture only when it counted containers (the
    # agent's lifecycle rows are Passive and carry none, store/rows.py): these rows say it.
    return ObservationWindow(image, "n1", window, 0, posture, 60, "tetragon", evidenced=posture)


@pytest.fixture
def store(url: str) -> Iterator[HotSymbolStore]:
    s = open_store(url)
    yield s
    s.close()


def verdict(store: HotSymbolStore, image: str, **period: dt.datetime) -> coverage.Verdict:
    with store.engine.connect() as conn:
        groups = coverage.image_windows(conn, image=image, **period)
        gaps = coverage.image_gaps(conn, image=image, **period)
        return coverage.absence(image, groups, gaps=gaps, **period)


def test_an_image_that_ran_without_events_is_not_observed_over_its_windows(store: HotSymbolStore) -> None:
    busy = ObservationWindow(BUSY, "n1", T0, 40, Posture.EBPF_DEEP, 60, "tetragon")
    store.write([], [busy, ran(RAN, T0), ran(RAN, T0 + W)])
    store.write([], [ran(RAN, T0 + W)])  # a second agent's row for the same window merges
    v = verdict(store, RAN)
    assert v.answer == coverage.NOT_OBSERVED and v.coverage is not None
    assert (v.coverage.windows, v.coverage.event_count, v.coverage.nodes) == (2, 0, ("n1",))
    assert v.coverage.interval == "2026-03-01T12:00:00Z/2026-03-01T12:02:00Z"
    assert verdict(store, NEVER).answer == coverage.UNKNOWN
    with store.engine.connect() as conn:
        assert RAN in coverage.all_image_windows(conn)


def test_a_passive_lifecycle_window_cannot_back_not_observed(store: HotSymbolStore) -> None:
    store.write([], [ran(RAN, T0, Posture.PASSIVE)])
    v = verdict(store, RAN)
    assert v.answer == coverage.UNKNOWN and "only at posture Passive" in v.reason
    # Nor does one at ActiveTracing: no user stack was sampled (contracts/posture.py).
    store.write([], [ran(RAN, T0 + W, Posture.ACTIVE_TRACING)])
    v = verdict(store, RAN)
    assert v.answer == coverage.UNKNOWN and "only at posture ActiveTracing" in v.reason


def test_gaps_cut_lifecycle_windows_node_wide_ones_included(store: HotSymbolStore) -> None:
    node_gap = ObservationWindow(
        NODE_WIDE, "n1", T0 + W, 0, None, 60, "tetragon", T0 + W + S, T0 + W + 2 * S, 0, 9
    )
    store.write([], [ran(RAN, T0), ran(RAN, T0 + W), node_gap])
    v = verdict(store, RAN)
    assert v.answer == coverage.UNKNOWN and [g.dropped_events for g in v.gaps] == [9]
    since = dt.datetime(2026, 3, 1, 12, 2, tzinfo=dt.UTC)
    until = dt.datetime(2026, 3, 1, 12, 0, 30, tzinfo=dt.UTC)
    assert verdict(store, RAN, until=until).answer == coverage.NOT_OBSERVED  # the first window alone
    assert verdict(store, RAN, since=since).answer == coverage.UNKNOWN  # nothing after the windows


def test_a_window_that_cannot_see_calls_still_names_its_gaps(store: HotSymbolStore) -> None:
    """Unknown for its posture, and its dropped events are named too (JSON ``gaps`` and the reason):
    a native syscall probe without stacks (ActiveTracing) that also dropped events said only the former."""
    node_gap = ObservationWindow(NODE_WIDE, "n1", T0, 0, None, 60, "tetragon", T0 + S, T0 + 2 * S, 0, 9)
    store.write([], [ran(RAN, T0, Posture.ACTIVE_TRACING), node_gap])
    v = verdict(store, RAN)
    assert v.answer == coverage.UNKNOWN and [g.dropped_events for g in v.gaps] == [9]
    assert "only at posture ActiveTracing" in v.reason and "; and events were dropped: " in v.reason


def test_gap_only_rows_still_are_not_coverage(store: HotSymbolStore) -> None:
    own_gap = ObservationWindow(NEVER, "n1", T0, 0, None, 60, "tetragon", T0 + S, T0 + 2 * S, 1, 0)
    store.write([], [own_gap])
    v = verdict(store, NEVER)
    assert v.answer == coverage.UNKNOWN and v.coverage is None
