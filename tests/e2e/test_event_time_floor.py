"""A bogus old event time never files a watched window in 1970: it is the arrival time, counted.

Before the fix the adapter accepted any time from 1970 on: a message whose time was 1 ns (or
a boot-relative clock read as wall time: a day in January 1970) filed its counts, and an
observation window, in 1970. An event time before ``validate.MIN_EVENT_NS`` (2020-01-01,
before Tetragon or our probes produced any event) is replaced by the arrival time and counted
``events_repaired_total{reason="time_clamped"}``, like a time more than a day ahead, and every
good count around it is kept exactly (through the real agent, a gRPC replay, PostgreSQL).
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from stellaops_runtime.replay.events import ReplayEvent
from stellaops_runtime.wire.tetragon import events_pb2
from tests.e2e import harness as h
from tests.e2e.test_poison_events import POISON_NODE, _assert_good_counts, _rows

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

OLD = {  # binary -> (seconds, nanos) of the message's time
    "/bin/one-ns": (0, 1),
    "/bin/boot-relative": (30 * 86_400 + 17, 0),  # 1970-01-31: uptime read as wall time
    "/bin/year-2019": (1_546_300_800, 5),  # 2019-01-01
}


def _old(binary: str, seconds: int, nanos: int) -> events_pb2.GetEventsResponse:
    m = events_pb2.GetEventsResponse(node_name=POISON_NODE)
    m.time.seconds, m.time.nanos = seconds, nanos
    m.process_exec.process.pid.value = 9
    m.process_exec.process.binary = binary
    return m


async def test_old_times_are_the_arrival_time_and_counted(tmp_path, pg_url) -> None:
    events = h.stream_events()
    old = [ReplayEvent.from_message(_old(b, s, n)) for b, (s, n) in OLD.items()]
    stream = events[:500] + old[:1] + events[500:1500] + old[1:] + events[1500:]
    code, out, m = await h.run_replay_agent(tmp_path, pg_url, stream)
    assert code == 0, out
    _assert_good_counts(pg_url)
    assert h.metric_sum(m, "stellaops_runtime_events_total") == len(stream)
    assert h.metric(m, "stellaops_runtime_events_repaired_total", reason="time_clamped") == len(OLD)
    rows = {r["module"]: r for r in _rows(pg_url, f"WHERE image_digest = 'host:{POISON_NODE}'")}
    year = dt.datetime.now(dt.UTC).year
    for binary in OLD:  # counted once, at the arrival time
        assert rows[binary]["invocation_count"] == 1 and rows[binary]["first_seen"].year == year, rows
    eng = sa.create_engine(pg_url)
    with eng.connect() as c:
        first = c.execute(sa.text("SELECT min(window_start) FROM signals.observation_windows")).scalar()
        early = c.execute(sa.text("SELECT min(first_seen) FROM signals.hot_symbols")).scalar()
    eng.dispose()
    assert first is not None and early is not None
    assert first.year >= 2020 and early.year >= 2020, (first, early)
