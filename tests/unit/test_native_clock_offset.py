"""The native probes' event times follow the wall clock after a suspend or a clock step.

The probes stamp events with the kernel's monotonic clock (bpf_ktime_get_ns), which stops
while the node is suspended and never steps; the agent turns it into wall-clock time with an
offset. Read once, when the first native batch came, the offset went stale: after an hour of
suspend (or the wall clock set an hour forward) every later event was filed an hour in the past,
in windows where the gaps the agent marks on the wall clock are not, and a question about the
time since the resume met no call. The offset is read again for every batch.
"""

from __future__ import annotations

import time

import pytest

from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.native import records
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.events import encode_trailer

HOUR = 3600 * 1_000_000_000
SECOND = 1_000_000_000


def exec_record(binary: str) -> bytes:
    head = (records.KIND_EXEC, 0, 0, 4242, 4242, 0, time.monotonic_ns(), 0, b"worker")
    return records.STRUCTS[records.KIND_EXEC].pack(*head, 1, 0, binary.encode()) + encode_trailer(
        binary, 0, []
    )


def first_seen(p: Pipeline) -> dict[str, int]:
    deltas, _ = p.drain()
    return {d.key.module: d.first_seen_ns for d in deltas}


def test_native_event_times_follow_the_wall_clock_after_it_jumps(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}})
    p = Pipeline(cfg, node_name="n1")
    native = NativeConfig()
    p.process_native([(exec_record("/opt/a"), 0)], native)
    before = time.time_ns()
    assert abs(first_seen(p)["/opt/a"] - before) < 5 * SECOND
    real = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real() + HOUR)  # an hour suspended (monotonic stood still)
    p.process_native([(exec_record("/opt/b"), 0)], native)
    seen = first_seen(p)["/opt/b"]
    assert abs(seen - time.time_ns()) < 5 * SECOND, (seen - time.time_ns()) / SECOND
