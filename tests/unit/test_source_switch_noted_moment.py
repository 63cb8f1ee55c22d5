"""The probes' watching moment waits for the look at the targets' files (RSW4, s43).

The native source reads the probes' drop counters, then looks at the uprobe
targets' files on the probes' thread (native/source.py ``_stream``): a file
replaced since the previous look was run unprobed by its new processes, and the
span since that look is noted as unwatched (native/source_gaps.py
``_note_followed``). The switch's tick can run during that look. It marked the
probes' gaps through the counters' read alone (``drops_read_ns``), so the
watching moment (agent/source_switch_gaps.py), and with it the watch record and
the cut of the probe loads for a restarted agent, passed the start of a span
not noted yet. Killed then, the next agent skipped Tetragon's cached calls of
that span as the probes' own (their only count: lost), and the span was in no
gap. Likewise while the load's former-file scan has processes left: one found
later was run unprobed since the load.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from stellaops_runtime.agent.source_switch import BCC
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.follow_files import Followed
from stellaops_runtime.native.source import NativeProbeSource
from stellaops_runtime.sources.queue import EventQueue
from tests.unit.test_source_switch_overlap import CRC32, S, assert_counted_without, stamped
from tests.unit.test_source_switch_overlap_attach import restarted, switch


@pytest.mark.parametrize("case", ["file_replaced", "scan_open"])
def test_a_span_the_probes_note_after_the_tick_is_not_claimed(tmp_path: Any, case: str) -> None:
    """Agent A's probes (the real source) loaded at t0 - 4 s, last looked at their files at t0 + 1 s,
    queued a poll whole from t0 + 8 s and read their counters at t0 + 9 s; the switch's tick runs
    while the look at the files goes on, which then finds libz replaced since t0 + 1 s (or, with the
    load's scan open, a former file run unprobed since the load). A is killed. Seen failing before
    the fix: the moment was t0 + 8 s, and B skipped Tetragon's cached crc32 calls of the unwatched
    span, their only count."""
    events = stamped()
    t0 = min(t for _, t, _ in events)
    spool = str(tmp_path / "spool")
    a = switch(spool)
    a._reload_check_at = a._next_check = float("inf")
    src = NativeProbeSource(NativeConfig(uprobes=(CRC32,)), queue=EventQueue(10), kernel_source="")
    st = src.stats
    st.connected, st.attached_ns, st.attached = True, t0 - 4 * S, [f"uprobe {CRC32.label()}"]
    src._load_ns, src._follow_ns, src._in_flight_ns = t0 - 4 * S, t0 + 1 * S, t0 + 30 * S
    src._scan_open = case == "scan_open"
    src._deliver([], t0 + 8 * S)  # a poll started then queued all it read
    src._note_drops({}, t0 + 9 * S)  # the counters read then, no drop; the look at the files goes on
    a.bcc, a.mode, a._bcc_since_ns = src, BCC, t0 - 5 * S
    a._boundary(BCC, NativeConfig(uprobes=(CRC32,)))
    asyncio.run(a._tick_bcc(time.monotonic()))  # the switch's tick meanwhile: the loads on disk
    alive = a.watching_ns()  # what agent/watch_record.py samples, and a flush records
    assert alive is not None
    found = Followed(unwatched=True) if case == "file_replaced" else Followed(since_load=True)
    src._note_followed(found, t0 + 9 * S + S // 2, looked_ns=t0 + 9 * S)  # the look returns
    start = src.stats.unwatched[0][0]
    assert start == (t0 + 1 * S if case == "file_replaced" else t0 - 4 * S)
    # A is killed before the next tick marks that span: B counts Tetragon's copies from its start
    twice = [x for x in events if x[2] == "crc32" and x[1] < start]
    assert len([x for x in events if x[2] == "crc32" and start <= x[1] < t0 + 8 * S]) > 5
    assert_counted_without(restarted(spool, alive, events), events, twice)
    assert alive <= start, (alive - t0) / S
