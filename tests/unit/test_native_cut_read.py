"""A read of the probes' buffer that a cancel cuts short is a gap over the time it could not read.

The source switch (agent/source_switch.py ``_stop_active``) waits STOP_WAIT_SECONDS
for a stopping native source, then cancels it. A cancel ends the coroutine, not
the probes' ``bcc`` thread: a poll under way there (the reader's, or the last
read's) still empties the buffer, and its records went to nobody, as did the
kernel counters the last read would have compared (drops since the previous
read). Calls that happened, in no count and in no gap: a "not observed" could
cover them. Now the source queues an unwatched span from the start of the last
poll whose records reached the queue (or the last counter read, if earlier) to
the cancel, which the switch marks as a node-wide gap (``take_unwatched``); a
read that was not cut adds no span.

Stand-ins for BCC: a buffer of records with the wall-clock time they were
written, emptied by each poll (as BCC's poll empties the kernel's buffer).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.follow_files import Followed
from stellaops_runtime.native.source import NativeProbeSource
from stellaops_runtime.sources.queue import EventQueue

WAIT = 10.0


class _Scan:
    """The load's former-file scan (native/follow.py TargetWatch): unfinished until the last read's rest
    of it, which finds a process that ran a former file unprobed all along; held there if asked."""

    def __init__(self, probes: _Probes) -> None:
        self.probes = probes
        self.done = False

    def scanning(self) -> bool:
        return not self.done

    def unseen_at_stop(self) -> bool:
        self.done = True  # the rest read: the scan is over, and found one
        self.probes.held.set()
        assert self.probes.release.wait(WAIT)
        return True


class _Probes:
    """A ProbeSet whose buffer the test writes; a poll or the last read can be held on the thread."""

    def __init__(self) -> None:
        self.watch: _Scan | None = None
        self.cfg = NativeConfig()  # no uprobe: no call can be in flight
        self.calls_in_flight: list[bytes] = []  # what the map of calls in flight holds
        self.buffer: list[bytes] = []
        self.lock = threading.Lock()
        self.hold_poll = False  # the next poll waits for ``release`` after emptying the buffer
        self.fail_poll = False  # the next poll fails after emptying the buffer (a reader's bug)
        self.fail_in_flight = False  # the map of calls in flight cannot be read
        self.fail_counters = False  # the counters cannot be read (every read, until cleared)
        self.hold_last_read = False  # the last read waits for ``release`` before its poll
        self.hold_close = False  # the next close waits for ``close_release``
        self.closing, self.close_release = threading.Event(), threading.Event()
        self.held = threading.Event()
        self.release = threading.Event()
        self.closed = 0

    def write(self, rec: bytes) -> int:
        """A record written now (shorter than a header: queued as it is); the wall clock of it."""
        with self.lock:
            self.buffer.append(rec)
        return time.time_ns()

    def poll(self, timeout_ms: int) -> list[bytes]:
        with self.lock:
            out, self.buffer = self.buffer, []
        if self.fail_poll:
            self.fail_poll = False
            raise RuntimeError("a bug in the reader")
        if self.hold_poll:
            self.hold_poll = False
            self.held.set()
            assert self.release.wait(WAIT)
        else:
            time.sleep(min(timeout_ms, 5) / 1000)
        return out

    def counters(self) -> dict[str, dict[str, int]]:
        if self.fail_counters:
            raise OSError(5, "Input/output error")
        return {}

    def detach_uprobes(self) -> None:  # the last read's first step
        if self.hold_last_read:
            self.held.set()
            assert self.release.wait(WAIT)

    def in_flight(self, alive: Any) -> list[bytes]:
        if self.fail_in_flight:
            raise OSError(12, "Cannot allocate memory")
        return list(self.calls_in_flight)

    def oldest_in_flight(self, alive: Any) -> int | None:  # native/loader.py ProbeSet
        return None  # no uprobe call is running

    def follow(self) -> Followed:
        return Followed()

    def close(self) -> None:
        if self.hold_close:
            self.hold_close = False
            self.closing.set()
            assert self.close_release.wait(WAIT)
        self.closed += 1


async def _until(cond: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < deadline, f"no {what} within {WAIT} s"
        await asyncio.sleep(0.005)


def _source(probes: _Probes, retry_seconds: float = WAIT) -> tuple[NativeProbeSource, EventQueue]:
    queue = EventQueue(10_000)
    src = NativeProbeSource(NativeConfig(), queue=queue, kernel_source="", retry_seconds=retry_seconds)
    src._load = lambda: probes  # type: ignore[method-assign,assignment,return-value]
    return src, queue


def _covered(spans: list[tuple[int, int]], at: int) -> bool:
    return any(a <= at <= b for a, b in spans)


async def _running(src: NativeProbeSource) -> tuple[asyncio.Event, asyncio.Task[None]]:
    """The source's run started, its probes loaded: (its stop, its task)."""
    stop = asyncio.Event()
    task = asyncio.create_task(src.run(stop))
    await _until(lambda: src.stats.connected, "load")
    return stop, task


async def _stopped_in_last_read(probes: _Probes, stop: asyncio.Event) -> None:
    """Stop the running source; its last read is held at its first step until ``probes.release``."""
    probes.hold_last_read = True
    stop.set()
    await _until(probes.held.is_set, "last read")


def test_a_last_read_cut_by_a_cancel_is_a_gap() -> None:
    probes = _Probes()
    src, queue = _source(probes)

    async def main() -> tuple[int, list[tuple[int, int]]]:
        stop, task = await _running(src)
        probes.write(b"early")
        await _until(lambda: len(queue) >= 1, "the reader's records")
        await _stopped_in_last_read(probes, stop)
        written = probes.write(b"late")  # in the buffer: only the last read's poll would take it
        task.cancel()  # the last read took longer than the switch waits
        await asyncio.gather(task, return_exceptions=True)
        probes.release.set()
        await _until(lambda: probes.closed > 0, "close after the cancelled last read")
        return written, src.take_unwatched()

    written, spans = asyncio.run(main())
    payloads = [p for p, _ in queue.take(len(queue))]
    assert payloads == [b"early"]  # the late record was read by nobody
    assert _covered(spans, written), (written, spans)  # ... and its time is a gap


def test_a_cut_read_across_a_wall_clock_step_back_is_a_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wall clock stepped back (NTP correcting it, ``date -s``) between the last poll queued and
    the cancel: the cut's span ended before it began and was queued empty, so the records the cut read
    took, stamped before the step, were in no gap. Its span is now the one holding both sides."""
    probes = _Probes()
    src, queue = _source(probes)
    real, shift = time.time_ns, [0]
    monkeypatch.setattr(time, "time_ns", lambda: real() + shift[0])

    async def main() -> tuple[int, list[tuple[int, int]]]:
        stop, task = await _running(src)
        await _stopped_in_last_read(probes, stop)
        written = probes.write(b"late")
        shift[0] = -60 * 10**9  # a minute back
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        probes.release.set()
        await _until(lambda: probes.closed > 0, "close")
        return written, src.take_unwatched()

    written, spans = asyncio.run(main())
    assert b"late" not in [p for p, _ in queue.take(len(queue))]
    assert _covered(spans, written), (written, spans)
    assert all(b - a < 120 * 10**9 for a, b in spans), spans  # the step's minute, not more


def test_a_poll_of_the_reader_cut_by_a_cancel_is_a_gap() -> None:
    probes = _Probes()
    src, queue = _source(probes)

    async def main() -> tuple[int, list[tuple[int, int]]]:
        stop, task = await _running(src)
        written = probes.write(b"cut")
        probes.hold_poll = True  # the next poll takes it, then is held past the switch's patience
        await _until(probes.held.is_set, "the reader's poll")
        stop.set()
        task.cancel()
        probes.release.set()
        await asyncio.gather(task, return_exceptions=True)
        await _until(lambda: probes.closed > 0, "close")
        return written, src.take_unwatched()

    written, spans = asyncio.run(main())
    payloads = [p for p, _ in queue.take(len(queue))]
    assert b"cut" not in payloads  # the cut poll's records reached nobody
    assert _covered(spans, written), (written, spans)


def test_a_last_read_held_after_the_cancel_is_given_up_and_its_time_is_a_gap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cancel lands in the reader's poll, which the probes' thread never returns from (a BCC
    call stuck in the kernel): the last read after it is queued behind that poll. It was awaited with
    no bound, and the switch waits for the task, so the agent's shutdown (or a return to Tetragon)
    waited for ever. Now it is given up after ``source.CUT_LAST_READ_SECONDS``; its time is a gap."""
    from stellaops_runtime.native import source

    monkeypatch.setattr(source, "CUT_LAST_READ_SECONDS", 0.05, raising=False)
    probes = _Probes()
    src, queue = _source(probes)

    async def main() -> tuple[int, bool, list[tuple[int, int]]]:
        stop, task = await _running(src)
        written = probes.write(b"cut")
        probes.hold_poll = True  # the next poll takes it, then never returns while the test waits
        await _until(probes.held.is_set, "the reader's poll")
        stop.set()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=3.0)
        spans = src.take_unwatched()
        probes.release.set()  # the thread is free again: what was queued on it runs, the close too
        await asyncio.gather(task, return_exceptions=True)
        await _until(lambda: probes.closed > 0, "close after the given-up last read")
        return written, bool(done), spans

    written, ended, spans = asyncio.run(main())
    assert ended, "the cancelled source waited for its last read with no bound"
    assert b"cut" not in [p for p, _ in queue.take(len(queue))]
    assert _covered(spans, written), (written, spans)


_STUCK_AT_EXIT = """
import asyncio
import sys
from stellaops_runtime.native import source
import tests.unit.test_native_cut_read as t
from tests.unit.test_native_cut_read import _Probes, _running, _source, _until
source.CUT_LAST_READ_SECONDS = 0.05
t.WAIT = 3600.0  # the held poll waits this long: longer than the test
probes = _Probes()
probes.hold_poll = True  # never released: a BCC call that never returns
src, _ = _source(probes)
async def main():
    stop, task = await _running(src)
    await _until(probes.held.is_set, "the reader's poll")
    stop.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if sys.argv[1:] == ["again"]:  # the switch comes back to the probes, then the agent stops
        task = asyncio.create_task(src.run(asyncio.Event()))
        await asyncio.sleep(0.05)
        assert not task.done() and not src.stats.connected  # one load at a time: it waits
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
asyncio.run(main())
print("stopped", flush=True)
"""


@pytest.mark.parametrize("again", [False, True], ids=["stopped", "run-again-then-stopped"])
def test_the_agent_exits_while_the_probes_thread_never_returns(again: bool) -> None:
    """The given-up thread is the probes' own: a thread pool's worker, which Python joins at exit, kept
    the process (the agent, its evidence already flushed) alive until the kubelet killed it. The
    probes' thread is a daemon thread now (native/probe_thread.py), as the lookups' threads are.

    ``again``: the switch came back to the native probes (Tetragon failed) before the agent stopped.
    The new run waits for the old thread (one load at a time); it waited in a thread of asyncio's
    default pool (``asyncio.to_thread(shutdown)``), which ``asyncio.run`` and Python's exit join:
    the exit was held for ever again. It now waits on the event loop."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{root}:{root / 'operator'}"}
    args = ["again"] if again else []
    r = subprocess.run([sys.executable, "-c", _STUCK_AT_EXIT, *args], cwd=root, capture_output=True,
                       text=True, timeout=30, env=env)  # fmt: skip
    assert r.stdout == "stopped\n" and r.returncode == 0, (r.stdout, r.stderr[-2000:])


def test_a_batch_a_failing_reader_took_from_the_buffer_is_a_gap() -> None:
    """An unexpected error in the reader closes the probes and loads them again; the switch marks
    the time from their detach as a gap. The records the failed poll had taken from the buffer, written
    before that, reached nobody: their time is a gap too."""
    probes = _Probes()
    src, queue = _source(probes)

    async def main() -> tuple[int, int, list[tuple[int, int]]]:
        stop, task = await _running(src)
        written = probes.write(b"taken")
        probes.fail_poll = True
        await _until(lambda: src.stats.last_error != "", "the reader's error")
        detached = src.stats.detached_ns  # set before the error is (the probes closed first)
        stop.set()  # during the wait before the next load
        await asyncio.wait_for(task, WAIT)
        return written, detached, src.take_unwatched()

    written, detached, spans = asyncio.run(main())
    assert "a bug in the reader" in src.stats.last_error
    assert b"taken" not in [p for p, _ in queue.take(len(queue))]
    assert written < detached  # before the switch's own gap (from the detach)
    assert _covered(spans, written), (written, spans)


def test_a_last_poll_that_fails_is_a_gap() -> None:
    """The last read's own poll failing (after it took the records) lost them with a debug line only."""
    probes = _Probes()
    src, queue = _source(probes)

    async def main() -> tuple[int, list[tuple[int, int]]]:
        stop, task = await _running(src)
        await _stopped_in_last_read(probes, stop)
        written = probes.write(b"late")
        probes.fail_poll = True
        probes.release.set()
        await asyncio.wait_for(task, WAIT)
        return written, src.take_unwatched()

    written, spans = asyncio.run(main())
    assert b"late" not in [p for p, _ in queue.take(len(queue))]
    assert _covered(spans, written), (written, spans)


def test_calls_in_flight_that_cannot_be_read_are_a_gap_since_the_load() -> None:
    """A call entered (at any time since the load) and not returned is counted by the last read, at its
    entry, from the map of calls in flight; a map that cannot be read counted none, with no gap."""
    probes = _Probes()
    src, _ = _source(probes)

    async def main() -> tuple[int, list[tuple[int, int]]]:
        stop, task = await _running(src)
        attached = src.stats.attached_ns  # a call in flight may have entered from here on
        probes.fail_in_flight = True
        stop.set()
        await asyncio.wait_for(task, WAIT)
        return attached, src.take_unwatched()

    attached, spans = asyncio.run(main())
    assert _covered(spans, attached), (attached, spans)


@pytest.mark.parametrize("how", ["cancelled", "counters fail"])
def test_calls_in_flight_a_cut_last_read_took_are_a_gap_since_the_load(how: str) -> None:
    """A uprobe call entered early in the run and still in flight at the stop is counted by the last
    read alone (at its entry). A last read cut by the switch's cancel, or failing after it took the map,
    counted none: the gap ran from the last poll only, not from the entry (any time since the load)."""
    probes = _Probes()
    probes.cfg = NativeConfig(uprobes=(UprobeTarget("/bin/true", "main"),))
    src, queue = _source(probes)

    async def main() -> tuple[int, list[tuple[int, int]]]:
        stop, task = await _running(src)
        entered = src.stats.attached_ns  # the call entered as the probes attached, and runs on
        probes.calls_in_flight = [b"in flight"]
        probes.write(b"early")
        await _until(lambda: len(queue) >= 1 and src._follow_ns > entered, "the reader's first round")
        await _stopped_in_last_read(probes, stop)
        if how == "cancelled":
            task.cancel()  # the last read took longer than the switch waits
        else:
            probes.fail_counters = True  # after the map of calls in flight was read
        probes.release.set()
        await asyncio.gather(task, return_exceptions=True)
        await _until(lambda: probes.closed > 0, "close")
        return entered, src.take_unwatched()

    entered, spans = asyncio.run(main())
    assert b"in flight" not in [p for p, _ in queue.take(len(queue))]  # counted by nobody
    assert _covered(spans, entered), (entered, spans)  # ... so its entry is in a gap


def test_a_former_file_the_cut_scan_found_is_a_gap_since_the_load() -> None:
    """The last read reads the rest of the load's former-file scan; a process found there ran a former
    file unprobed since the load. A cancel landing once the scan was over but before its answer was
    taken lost that answer, and the cut's span (the scan no longer unfinished) began at the last poll."""
    probes = _Probes()
    probes.watch = _Scan(probes)
    src, _ = _source(probes)

    async def main() -> tuple[int, list[tuple[int, int]]]:
        stop, task = await _running(src)
        attached = src.stats.attached_ns
        await _until(lambda: src._follow_ns > attached, "the reader's first round")
        stop.set()
        await _until(probes.held.is_set, "the scan's rest")
        task.cancel()  # the scan's rest took longer than the switch waits
        probes.release.set()
        await asyncio.gather(task, return_exceptions=True)
        await _until(lambda: probes.closed > 0, "close")
        return attached, src.take_unwatched()

    attached, spans = asyncio.run(main())
    assert _covered(spans, attached), (attached, spans)


def test_a_last_read_that_fails_is_a_gap_and_the_probes_are_closed() -> None:
    """The last read's counters failing after its poll took the records: they reached nobody (the
    error left ``run``, the probes were not closed and no gap said so)."""
    probes = _Probes()
    src, queue = _source(probes)

    async def main() -> tuple[int, list[tuple[int, int]], BaseException | None]:
        stop, task = await _running(src)
        await _stopped_in_last_read(probes, stop)
        written = probes.write(b"late")
        probes.fail_counters = True
        probes.release.set()
        await asyncio.gather(task, return_exceptions=True)
        return written, src.take_unwatched(), task.exception()

    written, spans, error = asyncio.run(main())
    assert error is None, error  # the source ends as a stopped source does
    assert probes.closed == 1
    assert b"late" not in [p for p, _ in queue.take(len(queue))]
    assert _covered(spans, written), (written, spans)
    assert "Input/output error" in src.stats.last_error


def test_a_last_read_failing_at_a_stop_is_not_logged_as_loaded_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The error of a last read at a stop was logged "(loaded again in N s)": the probes are not loaded
    again once asked to stop, and an operator reading the log was told the node stays watched."""
    probes = _Probes()
    src, _ = _source(probes)

    async def main() -> None:
        stop, task = await _running(src)
        attached = src.stats.attached_ns
        await _until(lambda: src._follow_ns > attached, "the reader's first round")  # counters read
        probes.fail_counters = True  # the last read's counters fail (the reader's next read is 1 s off)
        stop.set()
        await asyncio.wait_for(task, WAIT)

    with caplog.at_level("ERROR", logger="stellaops_runtime.native.source"):
        asyncio.run(main())
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "Input/output error" in line
    assert "loaded again in" not in line, line
    assert "not loaded again" in line.split("\n", 1)[0], line
    assert src.stats.connects == 1  # indeed not loaded again


def test_a_failed_last_read_whose_close_is_cut_by_a_cancel_is_still_a_gap() -> None:
    """The last read failing: the probes are closed, then its span is queued. A cancel landing while
    they closed (a slow close of many probes) skipped the span: the records it took, in no gap."""
    probes = _Probes()
    src, queue = _source(probes)

    async def main() -> tuple[int, list[tuple[int, int]]]:
        stop, task = await _running(src)
        await _stopped_in_last_read(probes, stop)
        written = probes.write(b"late")
        probes.fail_counters = True
        probes.hold_close = True
        probes.release.set()  # the last read goes on, fails, and its close is held
        await _until(probes.closing.is_set, "close")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        probes.close_release.set()
        await _until(lambda: probes.closed > 0, "close after the cancel")
        return written, src.take_unwatched()

    written, spans = asyncio.run(main())
    assert b"late" not in [p for p, _ in queue.take(len(queue))]
    assert _covered(spans, written), (written, spans)


def test_a_reader_error_whose_last_read_fails_too_still_loads_again() -> None:
    """No error may end the node's observation: the reader's error closes the probes and loads them
    again; its last read failing as well ended ``run``, and the node was unwatched until Tetragon."""
    probes = _Probes()
    src, _ = _source(probes, retry_seconds=0.01)

    async def main() -> None:
        stop, task = await _running(src)
        probes.fail_counters = True  # the reader's next read of the counters, and the last read's
        await _until(lambda: src.stats.last_error != "" or task.done(), "the reader's error")
        probes.fail_counters = False
        await _until(lambda: src.stats.connects >= 2 or task.done(), "the load after the error")
        assert not task.done(), task.exception()
        stop.set()
        await asyncio.wait_for(task, WAIT)

    asyncio.run(main())
    assert probes.closed >= 1


def test_a_stop_that_is_not_cut_adds_no_gap() -> None:
    probes = _Probes()
    src, queue = _source(probes)

    async def main() -> list[tuple[int, int]]:
        stop, task = await _running(src)
        probes.write(b"a")
        stop.set()
        await asyncio.wait_for(task, WAIT)
        return src.take_unwatched()

    assert asyncio.run(main()) == []
    assert [p for p, _ in queue.take(len(queue))] == [b"a"]
