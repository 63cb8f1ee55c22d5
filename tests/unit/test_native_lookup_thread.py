"""A uprobe's address lookup (up to 120 s per file read) never runs on the agent's event loop.

native/symaddr.py's lookup, its debug-file search (native/symdebug.py) and
the function-start check (native/symstart.py) read a container's files,
within 1 GiB and 120 s per file read. When a target's file is replaced, the
source's look (native/source.py ``_follow``) attaches the new file through
native/follow_attach.py, which runs that lookup. Here the real chain
(follow_attach.uprobe -> find_address -> the debug file under a container's
root -> the start check) is held inside the check until the test lets it go:
the agent's event loop keeps running meanwhile (the lookup is on the ``bcc``
thread: called without ``idle``, as here; the source's own looks run it on a
thread of its own and keep reading the buffer: test_native_lookup_off_thread.py),
and the time the look took is part of the span marked unwatched.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.native import follow_attach, symdebug
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.follow_files import Followed
from stellaops_runtime.native.source import NativeProbeSource
from stellaops_runtime.sources.queue import EventQueue
from tests.native import debuglink as dl

WAIT = 60.0


class _Bpf:
    def __init__(self) -> None:
        self.addrs: list[int] = []

    def attach_uprobe(self, *, name: bytes, addr: int, fn_name: bytes) -> None:
        self.addrs.append(addr)

    def attach_uretprobe(self, *, name: bytes, addr: int, fn_name: bytes) -> None:
        pass


class _Probes:
    """What NativeProbeSource reads of a ProbeSet; ``follow`` attaches one new file for real."""

    def __init__(self, target: UprobeTarget, app: Path) -> None:
        self.target, self.app, self.bpf = target, app, _Bpf()
        self.watch = None
        self.looks = 0
        self.quiet = threading.Event()

    def poll(self, timeout_ms: int) -> list[bytes]:
        self.quiet.wait(min(timeout_ms, 20) / 1000)
        return []

    def counters(self) -> dict[str, dict[str, int]]:
        return {}

    def detach_uprobes(self) -> None:
        pass

    def in_flight(self, alive: Any) -> list[bytes]:
        return []

    def oldest_in_flight(self, alive: Any) -> int | None:  # native/loader.py ProbeSet
        return None  # no uprobe call is running

    def follow(self) -> Followed:
        self.looks += 1
        if self.looks > 1:
            return Followed()
        fd = os.open(self.app, os.O_RDONLY)
        why = follow_attach.uprobe(self.bpf, 0, self.target, fd, "the new file")
        os.close(fd)
        return Followed(attached=[self.target.label()]) if not why else Followed(failed=[("t", why)])

    def close(self) -> None:
        pass


async def _until(cond: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < deadline, f"no {what} within {WAIT} s"
        await asyncio.sleep(0.01)


def test_a_held_lookup_leaves_the_event_loop_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if dl.tools_missing() or shutil.which("nm") is None:
        pytest.skip(f"{dl.tools_missing() or 'nm'} is not installed")
    split = dl.build_split("symdbg")
    root = tmp_path / "container"
    app = root / "opt/app/prog"
    for dst, src in ((app, split.stripped), (root / "usr/lib/debug/opt/app" / split.debug.name, split.debug)):
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    entered, release = threading.Event(), threading.Event()
    threads: list[str] = []
    check = symdebug.confirmed_start

    def held(*args: Any) -> str:
        threads.append(threading.current_thread().name)
        entered.set()
        assert release.wait(WAIT)
        return check(*args)

    monkeypatch.setattr(symdebug, "confirmed_start", held)
    target = UprobeTarget(str(app), "stella_add", module="/opt/app/prog", root=str(root))
    probes = _Probes(target, app)
    src = NativeProbeSource(NativeConfig(), queue=EventQueue(10), kernel_source="")
    src._load = lambda: probes  # type: ignore[method-assign]

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(src.run(stop))
        await _until(entered.is_set, "lookup")
        ticks = 0
        for _ in range(5):  # the loop runs while the lookup is held
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 5 and not task.done()
        held_at = time.time_ns()
        release.set()
        await _until(lambda: bool(src.stats.unwatched), "unwatched span")
        stop.set()
        await asyncio.wait_for(task, WAIT)
        start, end = src.stats.unwatched[0]
        assert start <= held_at <= end  # the look's own time is part of the gap

    asyncio.run(main())
    assert threads and all(t.startswith("bcc") for t in threads), threads
    assert probes.bpf.addrs and probes.bpf.addrs[0] > 0
    assert src.stats.followed == 1
