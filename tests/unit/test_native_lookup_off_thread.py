"""A uprobe's address lookup never stops the probes' buffer from being read (native/lookup.py).

A lookup reads the probed file within 1 GiB and 120 s (native/symaddr.py);
a container's hostile symbol table makes it take a minute. On the probes'
``bcc`` thread that minute was a minute nobody read the output buffer:
records waited, what did not fit was refused in the kernel (counted lost) and
the node's events of that minute were gone. Now:

- a new file at a target's path is looked up on a thread of its own while
  the ``bcc`` thread keeps reading the buffer and queueing the records; the
  attach itself stays on the ``bcc`` thread;
- a stop during such a lookup is not held up by it: the target is reported
  and the time is unwatched;
- the load looks its targets up before BCC compiles and attaches anything
  (the tracepoint probes attach with the program and would write into a
  buffer not read yet).

The file looked up is a hostile ELF built here (a symbol table of 200,000
decoys, then the probed name): the real chain (TargetWatch.follow ->
follow_attach.uprobe -> find_address -> symscan) is held inside the scan
until the test lets it go. Stand-ins for BCC; no compiler, no BPF.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.native import loader, source, symaddr
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.follow import TargetWatch
from stellaops_runtime.native.follow_files import Followed
from stellaops_runtime.native.probes import uprobes
from stellaops_runtime.native.source import NativeProbeSource
from stellaops_runtime.sources.queue import EventQueue
from tests.unit.test_native_symaddr_bounds import _elf

WAIT = 30.0
DECOYS = 200_000


def _hostile(path: Path) -> int:
    """A symbol table of DECOYS functions named like the target but one byte longer, then the target:
    every record read and compared. Returns the target's address."""
    names = [b"stella_addX"] * DECOYS + [b"stella_add"]
    offsets, at, strtab = [], 1, b"\0"
    for n in names[:1] + names[-1:]:
        offsets.append(at)
        strtab += n + b"\0"
        at += len(n) + 1
    _elf(path, strtab, [offsets[0]] * DECOYS + [offsets[1]])
    return 0x1001 + DECOYS


class _Bpf:
    def __init__(self) -> None:
        self.addrs: list[tuple[int, str]] = []

    def attach_uprobe(self, *, name: bytes, addr: int, fn_name: bytes) -> None:
        self.addrs.append((addr, threading.current_thread().name))

    def attach_uretprobe(self, *, name: bytes, addr: int, fn_name: bytes) -> None:
        pass


class _Probes:
    """What NativeProbeSource reads of a ProbeSet; ``follow`` is the real TargetWatch's."""

    def __init__(self, watch: TargetWatch) -> None:
        self.watch, self.bpf = watch, _Bpf()
        self.attached: list[str] = []
        self.failed: list[tuple[str, str]] = []
        self.former = Followed()
        self.polled = 0

    def poll(self, timeout_ms: int) -> list[bytes]:
        time.sleep(min(timeout_ms, 5) / 1000)
        self.polled += 1
        return [b"r%d" % self.polled]  # shorter than a header: queued as they are

    def counters(self) -> dict[str, dict[str, int]]:
        return {}

    def detach_uprobes(self) -> None:
        pass

    def in_flight(self, alive: Any) -> list[bytes]:
        return []

    def oldest_in_flight(self, alive: Any) -> int | None:  # native/loader.py ProbeSet
        return None  # no uprobe call is running

    def follow(self) -> Followed:
        return self.watch.follow(self.bpf)

    def close(self) -> None:
        self.watch.close()


async def _until(cond: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < deadline, f"no {what} within {WAIT} s"
        await asyncio.sleep(0.01)


def _setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, UprobeTarget, _Probes]:
    app = tmp_path / "app"
    _elf(app, b"\0stella_add\0", [1])  # the file probed at the load
    target = UprobeTarget(str(app), "stella_add")
    watch = TargetWatch.before_attach((target,))
    watch.attached({target.label()})
    probes = _Probes(watch)
    monkeypatch.setattr(source, "load", lambda *a, **kw: probes)
    return app, target, probes


def _hold(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event, list[str]]:
    """Hold every lookup's table scan until released; the threads it ran on."""
    entered, release = threading.Event(), threading.Event()
    threads: list[str] = []
    real = symaddr.first_function

    def held(*args: Any) -> int:
        threads.append(threading.current_thread().name)
        entered.set()
        assert release.wait(WAIT)
        return real(*args)

    monkeypatch.setattr(symaddr, "first_function", held)
    return entered, release, threads


def test_records_are_read_while_a_hostile_file_is_looked_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, _, probes = _setup(tmp_path, monkeypatch)
    entered, release, threads = _hold(monkeypatch)
    queue = EventQueue(100_000)
    src = NativeProbeSource(NativeConfig(), queue=queue, kernel_source="")

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(src.run(stop))
        await _until(lambda: src.stats.connected, "load")
        new = tmp_path / "app.new"
        addr = _hostile(new)
        os.replace(new, app)  # an upgrade puts a hostile file at the path
        await _until(entered.is_set, "lookup")
        before = len(queue)
        await _until(lambda: len(queue) >= before + 20, "records read during the lookup")
        assert not probes.bpf.addrs  # still looking up
        held_at = time.time_ns()
        release.set()
        await _until(lambda: src.stats.followed == 1, "the new file probed")
        stop.set()
        await asyncio.wait_for(task, WAIT)
        assert probes.bpf.addrs == [(addr, probes.bpf.addrs[0][1])]
        assert probes.bpf.addrs[0][1].startswith("bcc")  # the attach on the probes' thread
        start, end = src.take_unwatched()[0]
        assert start <= held_at <= end  # the lookup's time is unwatched for the new file

    asyncio.run(main())
    assert threads == ["symlookup"], threads  # the lookup itself off the probes' thread
    assert src.stats.received == probes.polled  # every record polled was queued, none dropped
    payloads = [p for p, _ in queue.take(len(queue))]
    assert payloads == [b"r%d" % i for i in range(1, probes.polled + 1)]  # in the order read


def test_a_stop_during_a_lookup_is_not_held_up_by_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app, _, probes = _setup(tmp_path, monkeypatch)
    entered, release, _ = _hold(monkeypatch)
    src = NativeProbeSource(NativeConfig(), queue=EventQueue(100_000), kernel_source="")

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(src.run(stop))
        await _until(lambda: src.stats.connected, "load")
        new = tmp_path / "app.new"
        _hostile(new)
        os.replace(new, app)
        await _until(entered.is_set, "lookup")
        stop.set()
        await asyncio.wait_for(task, WAIT)  # not held for the lookup's (up to 120 s)
        assert not probes.bpf.addrs
        assert any("abandoned: the probes stopped" in why for _, why in src.stats.failed), src.stats.failed
        assert src.take_unwatched()  # the new file was never probed: a gap

    try:
        asyncio.run(main())
    finally:
        release.set()


class _FakeBPF:
    order: list[str] = []

    def __init__(self, text: bytes) -> None:
        _FakeBPF.order.append("compiled")  # TRACEPOINT_PROBEs attach here
        self.funcs: dict[str, Any] = {}

    def __getitem__(self, name: bytes) -> Any:
        class _Map:
            def __setitem__(self, key: Any, value: Any) -> None:
                pass

            def open_ring_buffer(self, cb: Any) -> None:
                pass

        return _Map()

    def attach_uprobe(self, *, name: bytes, addr: int, fn_name: bytes) -> None:
        _FakeBPF.order.append(f"uprobe {addr:#x}")

    def attach_uretprobe(self, *, name: bytes, addr: int, fn_name: bytes) -> None:
        pass

    def ring_buffer_poll(self, timeout_ms: int) -> None:
        pass

    def cleanup(self) -> None:
        pass


class _BCC:
    BPF = _FakeBPF


def test_the_load_looks_up_before_anything_attaches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = tmp_path / "app"
    addr = _hostile(app)
    monkeypatch.setattr(loader, "load_bcc", lambda: (_BCC, ""))
    monkeypatch.setattr(loader, "LOAD_SCAN_SECONDS", 0.0)
    real = uprobes.find_address

    def recorded(*args: Any, **kw: Any) -> int:
        _FakeBPF.order.append("lookup")
        return real(*args, **kw)

    monkeypatch.setattr(uprobes, "find_address", recorded)
    _FakeBPF.order = []
    cfg = NativeConfig(
        exec_events=True, syscalls=("openat",), uprobes=(UprobeTarget(str(app), "stella_add"),)
    )
    ps = loader.load(cfg, kernel_source="", ring_buffer=True)
    try:
        assert _FakeBPF.order == ["lookup", "compiled", f"uprobe {addr:#x}"], _FakeBPF.order
        assert ps.attached[-1] == f"uprobe {app}:stella_add" and not ps.failed
    finally:
        ps.close()


def test_during_the_load_a_lookup_reads_the_buffer_into_memory_up_to_a_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A former file's lookup in the load's scan: the records are read into the ProbeSet (the first
    poll returns them), at most HELD_RECORDS; past that they wait in the buffer."""
    monkeypatch.setattr(loader, "HELD_RECORDS", 3)
    monkeypatch.setattr(loader, "IDLE_MS", 1)

    class _Ring:
        polls = 0

        def ring_buffer_poll(self, timeout_ms: int) -> None:
            _Ring.polls += 1
            ps._pending.append(b"r%d" % _Ring.polls)  # what BCC's callback does

    ps = loader.ProbeSet(bpf=_Ring(), cfg=NativeConfig(), ring_buffer=True)
    for _ in range(5):
        assert ps.held_idle()
    assert _Ring.polls == 3
    ps.bpf.ring_buffer_poll = lambda timeout_ms: None  # type: ignore[attr-defined]
    assert ps.poll(0) == [b"r1", b"r2", b"r3"]
