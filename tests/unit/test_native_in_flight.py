"""The probes' last read turns uprobe calls still in flight into events, after the uprobes are detached.

Stand-ins for BCC: the order (detach, then the buffer's last records, then the
map of calls entered and not returned) is what keeps a call from being counted
twice (its return emitted by a uretprobe still attached, and again from the
map) or not at all. The real kernel: tests/integration/test_native_in_flight_calls.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from stellaops_runtime.contracts.events import ContainerInfo, EventKind
from stellaops_runtime.native import records
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.events import Decoder
from stellaops_runtime.native.loader import ProbeSet
from stellaops_runtime.native.source import NativeProbeSource
from stellaops_runtime.sources.queue import EventQueue

TARGET = UprobeTarget("/usr/bin/app", "serve_forever")
ENTRY = time.monotonic_ns() - 60 * 10**9  # entered a minute ago (kernel monotonic clock)
OFFSET = time.time_ns() - time.monotonic_ns()


class _Starts:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def items(self) -> list[tuple[Any, Any]]:
        self.log.append("map read")
        key = SimpleNamespace(pid_tgid=(4242 << 32) | 4243, target=0, depth=0)
        gone = SimpleNamespace(pid_tgid=(5000 << 32) | 5000, target=0, depth=0)  # exited inside it
        zombie = SimpleNamespace(pid_tgid=(6000 << 32) | 6000, target=0, depth=0)  # _exit inside it
        start = SimpleNamespace(ts=ENTRY, cg=77, uid=1000)
        return [(key, start), (gone, start), (zombie, start)]


class _Zeros:
    def __getitem__(self, key: Any) -> list[int]:
        return [0]


class _BPF:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.uprobe_fds = {b"p_app_0x1139": 3, b"r_app_0x1139": 4}
        self.funcs: dict[str, Any] = {}

    def detach_uprobe_event(self, name: bytes) -> None:
        self.log.append(f"detach {name.decode()}")
        del self.uprobe_fds[name]

    def ring_buffer_poll(self, timeout_ms: int) -> None:
        self.log.append("poll")

    def __getitem__(self, name: bytes) -> Any:
        if name == b"stella_up_starts":
            return _Starts(self.log)
        return _Zeros()  # the counters


def test_the_last_read_detaches_then_reads_the_buffer_then_the_calls_in_flight(tmp_path: Path) -> None:
    """Thread 4243 of 4242 lives (it started before its entry); 5000's is gone and 6000 a zombie: a
    call of a thread that exited inside the function never returned and is not counted (as before)."""
    task = tmp_path / "4242" / "task" / "4243"
    task.mkdir(parents=True)
    (task / "stat").write_text("4243 (app) S " + " ".join(["0"] * 19 + ["1", "0"]))  # started 1 tick in
    zombie = tmp_path / "6000" / "task" / "6000"
    zombie.mkdir(parents=True)
    (zombie / "stat").write_text("6000 (app) Z " + " ".join(["0"] * 19 + ["1", "0"]))
    cfg = NativeConfig(exec_events=False, uprobes=(TARGET,))
    bpf = _BPF()
    ps = ProbeSet(bpf=bpf, cfg=cfg, ring_buffer=True)
    src = NativeProbeSource(cfg, queue=EventQueue(10), kernel_source="", proc_root=str(tmp_path))
    tail = src._final_counters(ps)
    assert bpf.log == ["detach p_app_0x1139", "detach r_app_0x1139", "poll", "map read"]
    assert len(tail) == 1
    ctr = ContainerInfo(id="c0ffee", cgroup_id=77)
    dec = Decoder(
        node_name="n", targets=cfg.uprobes, wall_minus_monotonic_ns=OFFSET,
        containers=lambda cg: ctr if cg == 77 else None,
    )  # fmt: skip
    ev = dec.decode(tail[0], received_ns=1)
    assert ev is not None and ev.kind is EventKind.UPROBE
    assert (ev.process.pid, ev.process.tid, ev.process.uid) == (4242, 4243, 1000)
    assert ev.timestamp_ns == ENTRY + OFFSET  # the entry's time, not the stop's
    assert ev.latency_ns is None and ev.function_name == "serve_forever" and ev.module == "/usr/bin/app"
    assert ev.container == ctr  # the entry's cgroup: its container


def test_a_returned_call_keeps_its_latency() -> None:
    rec = records.STRUCTS[records.KIND_UPROBE].pack(records.KIND_UPROBE, 0, 0, 1, 1, 0, 9, 0, b"x", 0, 0, 123)
    from stellaops_runtime.native.events import encode_trailer

    ev = Decoder(node_name="n", targets=(TARGET,), wall_minus_monotonic_ns=0).decode(
        rec + encode_trailer("/usr/bin/app", 0, []), received_ns=1
    )
    assert ev is not None and ev.latency_ns == 123


def test_without_uprobes_there_is_no_map_to_read() -> None:
    ps = ProbeSet(bpf=_BPF(), cfg=NativeConfig(), ring_buffer=True)
    assert ps.in_flight(lambda pid, tid, ktime: True) == []
