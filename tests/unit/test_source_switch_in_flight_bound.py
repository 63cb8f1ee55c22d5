"""Calls that never return pile up in the probes' in-flight map: a gap, never a loss (SW4, s43).

The probes record a uprobe call at its return, stamped at its entry; its entry
waits in ``stella_up_starts`` (an LRU map of 65,536) meanwhile. A thread that
exits inside a probed function (a C program calling ``exit()`` in a probed
``main``) leaves its entry there for good. The watch record's moment must not
pass the entry of a call still running (a killed agent never counted it, and the
next agent would skip Tetragon's copy, its only count), so each look (about once
a second) reads the map, at most ``IN_FLIGHT_LIMIT`` (1024) entries; past that it
does not know the oldest, and the moment is held at the load's start. This
checks that the hold is honest: the look stays bounded, the next agent after a
kill counts every cached call from the load's start (none lost) and the time
since the load's start is its restart gap. What it costs (a gap back to the load
after a kill; stored calls in Tetragon's cache counted again inside that gap) is
in docs/operations.md.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.loader import IN_FLIGHT_LIMIT, ProbeSet
from stellaops_runtime.native.source import NativeProbeSource
from stellaops_runtime.sources.queue import EventQueue
from tests.unit.test_source_switch_overlap import CRC32, S, assert_counted_without, stamped
from tests.unit.test_source_switch_overlap_attach import on_bcc, restarted


def test_more_calls_in_flight_than_the_look_reads_hold_the_moment_at_the_load_and_lose_nothing(
    tmp_path: Any,
) -> None:
    mono = time.monotonic_ns()
    read = [0]

    def entries() -> Any:  # 3 x the limit: live threads, entered a second ago (none returned)
        for tid in range(3 * IN_FLIGHT_LIMIT):
            read[0] += 1
            yield SimpleNamespace(pid_tgid=7 << 32 | tid), SimpleNamespace(ts=mono - S)

    ps = ProbeSet(
        {b"stella_up_starts": SimpleNamespace(iteritems=entries)}, NativeConfig(uprobes=(CRC32,)), False
    )
    src = NativeProbeSource(NativeConfig(), queue=EventQueue(10), kernel_source="")
    src.procs = SimpleNamespace(thread_since=lambda pid, tid, ts: True)  # type: ignore[assignment]
    src._load_ns = load = time.time_ns() - 3600 * S
    assert src._in_flight_since(ps) == load  # the oldest is not known: any call since the load
    assert read[0] == IN_FLIGHT_LIMIT + 1  # bounded: the rest of the map is not read

    # the switch's watching moment (the record's, and the next agent's cut) holds there ...
    events = stamped()
    t0 = min(t for _, t, _ in events)
    spool = str(tmp_path / "spool")
    # in flight since t0 - 4 s: _in_flight_since's answer, the load's start
    a, _ = on_bcc(spool, t0, queued_ns=t0 + 10 * S, noted_ns=t0 + 20 * S, in_flight_ns=t0 - 4 * S)
    alive = a.watching_ns()
    assert alive == t0 - 4 * S
    # ... so after a kill the next agent skips none of Tetragon's cached calls (none lost); its
    # restart gap runs from that moment (resume_outage: tests/unit/test_watch_record.py)
    b = restarted(spool, alive, events)
    assert_counted_without(b, events, [])
