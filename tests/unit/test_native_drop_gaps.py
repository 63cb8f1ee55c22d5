"""What the native probes drop in the kernel becomes an observation gap (issue 14).

Pure parts with hand-made counter readings (the real kernel's are in
tests/e2e/test_native_drop_gaps.py): the increase between two reads, the
queue of drops the source hands to the switch, the episode log, the gap rows;
and ``bpf_prog_info.recursion_misses`` read from a real loaded program.
"""

from __future__ import annotations

import logging
import os

import pytest

from stellaops_runtime.contracts.hotsymbols import NODE_WIDE
from stellaops_runtime.hotsymbols.gaps import GapTracker
from stellaops_runtime.native import bpfsys
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.drop_counters import (
    MAX_PENDING,
    NativeDrop,
    add_pending,
    describe,
    drop_values,
    increases,
)
from stellaops_runtime.native.source import NativeProbeSource
from stellaops_runtime.sources.queue import EventQueue

S = 1_000_000_000


def reading(rate: int = 0, sampled: int = 0, lost: int = 0, perf: int | None = None, rec: int | None = None):
    """A ProbeSet.counters() reading: the syscall probe's counters, plus the optional entries."""
    out: dict = {
        "syscall": {"seen": 10_000, "emitted": 5, "rate_limited": rate, "sampled_out": sampled, "lost": lost,
                    "cgroup_filtered": 77, "period_limited": 9, "stack_lost": 4},
        "exec": {"seen": 3, "emitted": 3, "rate_limited": 0, "sampled_out": 0, "lost": 0},
    }  # fmt: skip
    if perf is not None:
        out["perf_buffer"] = {"lost": perf}
    if rec is not None:
        out["programs"] = {"recursion_missed": rec}
    return out


# -- the increase computation ------------------------------------------------------


def test_only_the_counters_of_events_not_delivered_are_drops() -> None:
    v = drop_values(reading(rate=5, sampled=6, lost=7, perf=8, rec=9))
    assert v == {
        ("syscall", "rate_limited"): 5, ("syscall", "sampled_out"): 6, ("syscall", "lost"): 7,
        ("perf_buffer", "lost"): 1, ("programs", "recursion_missed"): 9,
    }  # fmt: skip  # seen, emitted, filtered, a policy's period limit and a missing stack are not


def test_the_perf_rings_lost_records_are_the_kinds_lost_ones_not_more_drops() -> None:
    """perf_submit found no room: the probe counted the record lost, and the perf ring counted it too."""
    both = reading(lost=13_000, perf=12_900)  # the ring's count is read later: at most the probes'
    assert drop_values(both) == {("syscall", "lost"): 13_000}
    assert sum(increases({}, drop_values(both)).values()) == 13_000  # not 25,900
    same = reading(lost=13_000, perf=13_000)
    assert increases(drop_values(both), drop_values(same)) == {}
    # a kernel whose perf_submit does not report the failure: the perf ring's count is all there is
    assert drop_values(reading(perf=40)) == {("perf_buffer", "lost"): 40}
    tcp = reading(lost=10, perf=25)
    tcp["tcp"] = {"lost": 5}
    assert drop_values(tcp) == {("syscall", "lost"): 10, ("tcp", "lost"): 5, ("perf_buffer", "lost"): 10}


def test_hostile_counter_values_are_ignored_not_a_crash() -> None:
    bad = {"syscall": {"rate_limited": "12", "lost": -3, "sampled_out": True}, "tcp": None, "usdt": [1, 2]}
    assert drop_values(bad) == {}  # type: ignore[arg-type]


def test_the_first_read_compares_with_zero() -> None:
    assert increases({}, drop_values(reading(rate=40))) == {("syscall", "rate_limited"): 40}


def test_no_increase_is_no_drop_and_an_increase_is_the_difference() -> None:
    a = drop_values(reading(rate=40, perf=2))
    assert increases(a, a) == {}
    b = drop_values(reading(rate=55, perf=2, rec=1))
    assert increases(a, b) == {("syscall", "rate_limited"): 15, ("programs", "recursion_missed"): 1}


def test_a_lower_value_is_a_new_program_counted_from_zero() -> None:
    before = drop_values(reading(rate=1_000))
    assert increases(before, drop_values(reading(rate=30))) == {("syscall", "rate_limited"): 30}


def test_describe_names_the_counters_largest_first() -> None:
    assert describe({("syscall", "lost"): 3, ("syscall", "rate_limited"): 120}) == (
        "syscall rate_limited 120, syscall lost 3"
    )


def test_the_pending_queue_is_bounded_without_losing_a_count() -> None:
    pending: list[NativeDrop] = []
    for i in range(MAX_PENDING + 50):
        add_pending(pending, NativeDrop(i * S, (i + 1) * S, {("tcp", "lost"): 2}))
    assert len(pending) == MAX_PENDING
    assert sum(d.total for d in pending) == 2 * (MAX_PENDING + 50)
    assert pending[0].start_ns == 0 and pending[0].end_ns == 51 * S  # the oldest widened over the merged


# -- the source: reads -> queued drops -> the switch takes them -----------------------------


def source() -> NativeProbeSource:
    return NativeProbeSource(NativeConfig(), queue=EventQueue(10), kernel_source="")


def test_the_source_queues_a_drop_per_read_that_saw_one(caplog: pytest.LogCaptureFixture) -> None:
    src = source()
    src._drop_read_ns = 100 * S  # the load
    caplog.set_level(logging.INFO, logger="stellaops_runtime.native.source")
    src._note_drops(reading(), 101 * S)  # nothing dropped
    src._note_drops(reading(rate=7, perf=1), 102 * S)
    src._note_drops(reading(rate=7, perf=1), 103 * S)  # no increase: the episode ends
    src._note_drops(reading(rate=20, perf=1, rec=2), 104 * S)
    src._note_drops(reading(rate=25, perf=1, rec=2), 105 * S)
    drops = src.take_drops()
    assert [(d.start_ns // S, d.end_ns // S, d.counts) for d in drops] == [
        (101, 102, {("syscall", "rate_limited"): 7, ("perf_buffer", "lost"): 1}),
        (103, 104, {("syscall", "rate_limited"): 13, ("programs", "recursion_missed"): 2}),
        (104, 105, {("syscall", "rate_limited"): 5}),
    ]
    assert src.take_drops() == [] and src.stats.dropped_total == 28
    lines = [r.getMessage() for r in caplog.records if "native probes" in r.getMessage()]
    assert lines == [  # one line when an episode starts and one with its totals when it ends, not per read
        "native probes dropped events in the kernel (syscall rate_limited 7, perf_buffer lost 1): "
        "recorded as observation gaps",
        "native probes stopped dropping events: 8 in this episode "
        "(syscall rate_limited 7, perf_buffer lost 1), recorded as observation gaps",
        "native probes dropped events in the kernel (syscall rate_limited 13, programs recursion_missed 2): "
        "recorded as observation gaps",
    ]


def test_a_long_episode_is_logged_again_at_most_every_minute(caplog: pytest.LogCaptureFixture) -> None:
    src = source()
    caplog.set_level(logging.INFO, logger="stellaops_runtime.native.source")
    for i in range(1, 30):
        src._note_drops(reading(lost=i), i * S)
    src._episode_logged -= 61  # a minute later
    src._note_drops(reading(lost=40), 40 * S)
    src._note_drops(reading(lost=41), 41 * S)
    src._end_episode()
    assert [r.getMessage() for r in caplog.records] == [
        "native probes dropped events in the kernel (syscall lost 1): recorded as observation gaps",
        "native probes still dropping events in the kernel (so far: syscall lost 40)",
        "native probes stopped dropping events: 41 in this episode (syscall lost 41), "
        "recorded as observation gaps",
    ]


# -- the gap rows ---------------------------------------------------------------------


def test_a_native_drop_is_a_node_wide_gap_carrying_the_count() -> None:
    g = GapTracker(window_seconds=60)
    g.native_drop("n1", 125 * S, 185 * S, 42, "bcc")  # spans two windows: the count goes to the last
    rows = sorted(g.drain([]), key=lambda w: w.window_start_ns)
    assert [(w.image_digest, w.node_name, w.window_start_ns // S, w.source, w.gap_start_ns // S,
             w.gap_end_ns // S, w.dropped_events, w.event_count) for w in rows] == [
        (NODE_WIDE, "n1", 120, "bcc", 125, 180, 0, 0),
        (NODE_WIDE, "n1", 180, "bcc", 180, 185, 42, 0),
    ]  # fmt: skip
    assert g.stats.native_dropped["n1"] == 42 and g.stats.gap_windows["node"] == 2


def test_drops_in_one_window_add_up_and_nothing_dropped_marks_nothing() -> None:
    g = GapTracker(window_seconds=60)
    g.native_drop("n1", 121 * S, 122 * S, 5, "bcc")
    g.native_drop("n1", 122 * S, 123 * S, 6, "bcc")
    g.native_drop("n1", 123 * S, 124 * S, 0, "bcc")
    (row,) = g.drain([])
    assert (row.dropped_events, row.gap_start_ns // S, row.gap_end_ns // S) == (11, 121, 123)
    assert g.drain([]) == []


# -- bpf_prog_info.recursion_misses on the real kernel ---------------------------------------


@pytest.fixture()
def prog_fd():  # type: ignore[no-untyped-def]
    fd, why = bpfsys.load_counting_tracepoint_program()
    if fd < 0:
        pytest.skip(f"cannot load a BPF program here: {why}")
    yield fd
    os.close(fd)


def test_prog_info_of_a_real_program_reports_its_recursion_misses(prog_fd: int) -> None:
    info, why = bpfsys.prog_info(prog_fd)
    assert why == "" and len(info) > bpfsys.RECURSION_MISSES_AT
    assert int.from_bytes(info[0:4], "little") == bpfsys.PROG_TYPE_TRACEPOINT
    assert info[bpfsys.PROG_INFO_NAME_AT :].split(b"\0", 1)[0] == b"stella_info"  # the layout is right
    major, minor = (int("".join(c for c in x if c.isdigit()) or 0) for x in os.uname().release.split(".")[:2])
    if (major, minor) < (5, 12):
        pytest.skip("kernel before 5.12: no recursion_misses")
    assert bpfsys.recursion_misses(info) == 0  # a program never attached never ran


def test_a_kernel_without_the_field_reports_none(prog_fd: int) -> None:
    # The kernel fills only what we ask for and says so, as an older kernel fills only what it has.
    info, why = bpfsys.prog_info(prog_fd, size=bpfsys.RECURSION_MISSES_AT)
    assert why == "" and len(info) == bpfsys.RECURSION_MISSES_AT
    assert bpfsys.recursion_misses(info) is None
    assert bpfsys.recursion_misses(b"") is None


def test_prog_info_of_a_bad_fd_says_why() -> None:
    r, w = os.pipe()  # an fd that is not a BPF program
    try:
        info, why = bpfsys.prog_info(r)
    finally:
        os.close(r)
        os.close(w)
    assert info == b"" and "BPF_OBJ_GET_INFO_BY_FD" in why and "EINVAL" in why
