"""Probes a cancelled native source's thread loads or still holds are closed, not left attached.

The source switch (agent/source_switch.py ``_stop_active``) sets the source's
stop and waits STOP_WAIT_SECONDS for it; a source still busy then is
cancelled. The load (the uprobes' lookups, up to 120 s a file on a hostile
symbol table, then BCC's compile) and the last read run on the source's
``bcc`` thread, which a cancel cannot interrupt: the load went on, attached
every probe and returned its ProbeSet to nobody, and a cancel during the last
read skipped the close. The probes stayed attached in the agent until it
exited (the syscall tracepoint on every system call of the node, a buffer
nobody reads), next to the probes the next start loads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.source import NativeProbeSource
from stellaops_runtime.sources.queue import EventQueue

WAIT = 10.0


class _Probes:
    """What NativeProbeSource reads of a ProbeSet; its last read (``detach_uprobes``) can be held."""

    def __init__(self) -> None:
        self.watch = None
        self.closed = 0
        self.hold_last_read = False
        self.in_last_read = threading.Event()
        self.release = threading.Event()

    def poll(self, timeout_ms: int) -> list[bytes]:
        time.sleep(min(timeout_ms, 10) / 1000)
        return []

    def counters(self) -> dict[str, dict[str, int]]:
        return {}

    def detach_uprobes(self) -> None:  # the first step of the last read only
        if self.hold_last_read:
            self.in_last_read.set()
            assert self.release.wait(WAIT)

    def in_flight(self, alive: Any) -> list[bytes]:
        return []

    def oldest_in_flight(self, alive: Any) -> int | None:  # native/loader.py ProbeSet
        return None  # no uprobe call is running

    def follow(self) -> Any:
        from stellaops_runtime.native.follow_files import Followed

        return Followed()

    def close(self) -> None:
        self.closed += 1


async def _until(cond: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < deadline, f"no {what} within {WAIT} s"
        await asyncio.sleep(0.01)


def test_probes_loaded_after_the_source_was_cancelled_are_closed() -> None:
    probes = _Probes()
    in_load, release = threading.Event(), threading.Event()

    def slow_load() -> _Probes:  # a load still looking up / compiling when the switch gives up
        in_load.set()
        assert release.wait(WAIT)
        return probes

    src = NativeProbeSource(NativeConfig(), queue=EventQueue(10), kernel_source="")
    src._load = slow_load  # type: ignore[method-assign,assignment]

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(src.run(stop))
        await _until(in_load.is_set, "load")
        stop.set()
        task.cancel()  # what _stop_active does after STOP_WAIT_SECONDS
        await asyncio.gather(task, return_exceptions=True)
        release.set()  # the load ends after its source was cancelled
        await _until(lambda: probes.closed > 0, "close of the probes loaded after the cancel")

    asyncio.run(main())
    assert probes.closed == 1
    assert src.probes is None


def test_probes_of_a_source_cancelled_during_its_last_read_are_closed() -> None:
    probes = _Probes()
    src = NativeProbeSource(NativeConfig(), queue=EventQueue(10), kernel_source="")
    src._load = lambda: probes  # type: ignore[method-assign,assignment,return-value]

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(src.run(stop))
        await _until(lambda: src.stats.connected, "load")
        probes.hold_last_read = True
        stop.set()
        await _until(probes.in_last_read.is_set, "last read")
        task.cancel()  # the last read took longer than the switch waits
        await asyncio.gather(task, return_exceptions=True)
        probes.release.set()
        await _until(lambda: probes.closed > 0, "close after the cancelled last read")

    asyncio.run(main())
    assert probes.closed == 1


def test_a_restart_waits_for_the_cancelled_runs_load() -> None:
    """The next run (a reload, a switch back) starts its load only once the cancelled run's load has
    ended: two loads at once on two threads would share the source's files-probed map and stats."""
    first, second = _Probes(), _Probes()
    in_load, release = threading.Event(), threading.Event()
    running: list[int] = []
    most = [0]
    lock = threading.Lock()

    def load() -> _Probes:
        with lock:
            running.append(1)
            most[0] = max(most[0], len(running))
        try:
            if not in_load.is_set():
                in_load.set()
                assert release.wait(WAIT)
                return first
            return second
        finally:
            with lock:
                running.pop()

    src = NativeProbeSource(NativeConfig(), queue=EventQueue(10), kernel_source="")
    src._load = load  # type: ignore[method-assign,assignment]

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(src.run(stop))
        await _until(in_load.is_set, "load")
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        stop2 = asyncio.Event()
        task2 = asyncio.create_task(src.run(stop2))  # restarted at once, as _reload_bcc does
        await asyncio.sleep(0.05)
        assert not src.stats.connected  # still waiting for the first load's thread
        release.set()
        await _until(lambda: src.stats.connected, "second load")
        stop2.set()
        await task2

    asyncio.run(main())
    assert most[0] == 1, "two loads ran at once"
    assert first.closed == 1 and second.closed == 1
