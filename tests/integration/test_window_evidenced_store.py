"""The store keeps a window's latest evidenced posture (the weakest container's), on SQLite and PostgreSQL.

The agent's count is cumulative over a window's drains (hotsymbols/window_units.py), so
the latest row with events holds every container of the window: a later flush that met
a container traced without stacks lowers the window even though an earlier flush said
EbpfDeep; a row without events (lifecycle, gap) changes nothing of it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store import coverage
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from stellaops_runtime.store.writer import HotSymbolStore

T0 = datetime_to_ns(dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC))
IMG = "sha256:" + "e5" * 32


def row(
    events: int, posture: Posture | None, evidenced: Posture | None = None, **kw: int
) -> ObservationWindow:
    return ObservationWindow(IMG, "n1", T0, events, posture, 60, "tetragon", evidenced=evidenced, **kw)


@pytest.fixture
def store(url: str) -> Iterator[HotSymbolStore]:
    s = open_store(url)
    yield s
    s.close()


def answer(store: HotSymbolStore) -> coverage.Verdict:
    with store.engine.connect() as conn:
        return coverage.absence(IMG, coverage.image_windows(conn, image=IMG))


def test_the_latest_count_of_a_window_is_kept(store: HotSymbolStore) -> None:
    store.write([], [row(10, Posture.EBPF_DEEP, Posture.EBPF_DEEP)])  # one pod, with stacks
    assert answer(store).answer == coverage.NOT_OBSERVED
    store.write([], [row(3, Posture.ACTIVE_TRACING, Posture.ACTIVE_TRACING)])  # then a pod without
    v = answer(store)
    assert v.answer == coverage.UNKNOWN and v.coverage is not None, v.reason
    assert v.coverage.highest is Posture.ACTIVE_TRACING and v.coverage.event_count == 13
    store.write([], [row(0, Posture.PASSIVE)])  # a lifecycle row: no say
    store.write([], [row(0, None, gap_start_ns=T0 + 1, gap_end_ns=T0 + 2)])  # nor a gap row's
    with store.engine.connect() as conn:
        (g,) = coverage.image_windows(conn, image=IMG)
        assert g.posture is Posture.ACTIVE_TRACING
    store.write([], [row(4, Posture.EBPF_DEEP, Posture.EBPF_DEEP)])  # both pods now with stacks
    with store.engine.connect() as conn:
        (g,) = coverage.image_windows(conn, image=IMG)
        assert g.posture is Posture.EBPF_DEEP and g.event_count == 17
