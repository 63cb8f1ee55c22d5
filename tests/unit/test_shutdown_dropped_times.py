"""The shutdown's read of the dropped payloads' event times is bounded (agent/shutdown.py
``note_dropped``): queueSize may be 10,000,000, ~30 s of reading on the pipeline thread ahead of
the last drain. Cut short, the gap still spans the times read and a WARNING says how many were not."""

from __future__ import annotations

import logging
import time

import pytest

from stellaops_runtime.agent.shutdown import note_dropped
from stellaops_runtime.sources.payload_times import MIN_READ
from stellaops_runtime.wire.tetragon import events_pb2

NOW = 1_796_515_200 * 10**9
S = 10**9


class _Pipeline:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int, tuple[int, int] | None]] = []

    def note_own_drops(
        self, first_ns: int, last_ns: int, count: int, event_span: tuple[int, int] | None = None
    ) -> None:
        self.calls.append((first_ns, last_ns, count, event_span))


def _queue(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        msg = events_pb2.GetEventsResponse(node_name="n")
        msg.time.FromNanoseconds(NOW - (n - i) * S)
        out.append(msg.SerializeToString())
    return out


def test_no_time_left_reads_only_the_ends_and_warns_how_many_times_were_not_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    payloads = _queue(5_000)
    p = _Pipeline()
    with caplog.at_level(logging.WARNING):
        note_dropped(p, (1, 2, 5_000), payloads, json_lines=False, drain_deadline=time.monotonic() - 1)
    assert p.calls == [(1, 2, 5_000, (NOW - 5_000 * S, NOW - S))]  # the count whole; the ends' span
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and f"{5_000 - MIN_READ} of 5000" in warned[0], warned


def test_with_time_left_every_time_is_read_and_nothing_is_warned(caplog: pytest.LogCaptureFixture) -> None:
    payloads = _queue(300)
    p = _Pipeline()
    with caplog.at_level(logging.WARNING):
        note_dropped(p, (1, 2, 300), payloads, json_lines=False, drain_deadline=time.monotonic() + 3600)
    assert p.calls == [(1, 2, 300, (NOW - 300 * S, NOW - S))]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
