"""A row with no events that carries ``evidenced`` restates a window, on SQLite and PostgreSQL.

A container of the image that ran in a window without sending it an event counts at
Passive (hotsymbols/container_runs.py); when the agent learns of it after the window's rows
were written, a later drain writes the window's value again in a row with no events, no
posture and no source (hotsymbols/window_units.py ``restated``). The store takes that value
and keeps every count, the posture shown and the source; lifecycle and gap rows (no
``evidenced``) still leave it alone, and a lifecycle row stored alone reads Passive.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store import coverage
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns, observation_windows
from stellaops_runtime.store.writer import HotSymbolStore

T0 = datetime_to_ns(dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC))
IMG = "sha256:" + "f7" * 32
IDLE = "sha256:" + "c8" * 32


def row(
    events: int,
    posture: Posture | None,
    evidenced: Posture | None = None,
    *,
    image: str = IMG,
    source: str = "tetragon",
) -> ObservationWindow:
    return ObservationWindow(image, "n1", T0, events, posture, 60, source, evidenced=evidenced)


@pytest.fixture
def store(url: str) -> Iterator[HotSymbolStore]:
    s = open_store(url)
    yield s
    s.close()


def stored(store: HotSymbolStore, image: str = IMG) -> tuple[int, int | None, str, int | None]:
    o = observation_windows.c
    with store.engine.connect() as conn:
        r = conn.execute(
            sa.select(o.event_count, o.posture_level, o.source, o.evidenced_level).where(
                o.image_digest == image
            )
        ).one()
    return int(r.event_count), r.posture_level, r.source, r.evidenced_level


def answer(store: HotSymbolStore, image: str = IMG) -> coverage.Verdict:
    with store.engine.connect() as conn:
        return coverage.absence(image, coverage.image_windows(conn, image=image))


def test_a_restatement_lowers_the_window_and_keeps_its_counts(store: HotSymbolStore) -> None:
    store.write([], [row(10, Posture.EBPF_DEEP, Posture.EBPF_DEEP)])  # the traced container's stacks
    assert answer(store).answer == coverage.NOT_OBSERVED
    store.write([], [row(0, None, Posture.PASSIVE, source="")])  # then a silent container is known
    assert stored(store) == (10, Posture.EBPF_DEEP.rank, "tetragon", Posture.PASSIVE.rank)
    v = answer(store)
    assert v.answer == coverage.UNKNOWN, v.reason
    assert "a running container that sent none counts at Passive" in v.reason, v.reason
    store.write([], [row(0, Posture.PASSIVE)])  # the window's lifecycle row: no say
    assert stored(store)[3] == Posture.PASSIVE.rank
    store.write([], [row(2, Posture.EBPF_DEEP, Posture.PASSIVE)])  # more events: the count holds it
    assert stored(store) == (12, Posture.EBPF_DEEP.rank, "tetragon", Posture.PASSIVE.rank)


def test_a_lifecycle_row_alone_reads_passive(store: HotSymbolStore) -> None:
    store.write([], [row(0, Posture.PASSIVE, image=IDLE)])
    assert stored(store, IDLE) == (0, Posture.PASSIVE.rank, "tetragon", None)
    v = answer(store, IDLE)
    assert v.answer == coverage.UNKNOWN and "only at posture Passive" in v.reason, v.reason
