"""Where binaries are parsed: inline, or on one parse-worker thread the pipeline waits for briefly.

Why this module exists: the agent canonicalizes frames on its one pipeline
thread, and the first sight of a binary means opening it, hashing it and
loading its symbol tables (DWARF and ``.gopclntab`` later, on a miss). A
hostile container's file may take its whole parse budget (seconds) to be
refused; a big honest binary takes hundreds of milliseconds. Neither may stall
event intake (issue 11). So every step that reads a file's contents goes
through a *gate*:

- :class:`InlineGate` runs it at once (the CLI, the library, tests: the
  behaviour of a plain function call);
- :class:`ParseWorker` queues it for one daemon thread and waits at most
  ``wait_seconds`` for it (``symbols.parseWaitMilliseconds``). Past that the
  caller gets :class:`ParsePending`: the frame is left unresolved (module +
  file offset, reason ``parse_pending``), the event is still counted, and the
  parse finishes in the background: its effect is the caches it fills (the
  parsed Binary, the file's identity, or the remembered refusal), so a later
  event finds the answer there.

Waiting is bounded three ways, so a flood of slow files costs intake at most
one wait per batch of events: a batch (:meth:`ParseWorker.batch`, one per
pipeline batch, else one per event) shares a single ``wait_seconds``
deadline; a job that once ran past its wait is never waited for again; and
while such a job is still running nothing new is waited for (it would be
queued behind it). At most ``max_queued`` jobs wait in the queue; beyond that
a request is answered ``ParsePending`` without being queued (it is retried
by a later event). Jobs are deduplicated by key.

Why a thread and not a process: the parse's product is a Binary (address
tables of up to 500,000 names, plus the open file for lazy sources) that the
pipeline then looks frames up in at ~1 µs each. A process would have to ship
those tables back (unpickling 500,000 entries holds the GIL of the receiving
side about as long as building them) or answer every cold frame over IPC.
A thread shares them for free, and a pure-Python parse does not starve the
pipeline thread: CPython hands the GIL over every 5 ms
(``sys.getswitchinterval``), and ``pread``, ``hashlib`` and ``zlib`` release
it. The one long GIL hold measured was sorting a shuffled 500,000-symbol
table (one C call: a 358 ms gap in a ticking thread on a loaded 2-core
machine, where the background gap was 29 ms); addrindex.py now sorts in runs
of 32,768, which brought the gap to 44 ms. Memory and time bombs are bounded
by canonical/limits.py either way.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

_T = TypeVar("_T")

DEFAULT_MAX_QUEUED = 1024


class ParsePending(Exception):
    """The parse needed is still running (or queued) in the background."""


class _Batch:
    """Re-entrant context: one shared wait deadline for everything canonicalized inside it."""

    __slots__ = ("_gate",)

    def __init__(self, gate: ParseWorker) -> None:
        self._gate = gate

    def __enter__(self) -> None:
        g = self._gate
        if g._depth == 0:
            g._deadline = time.monotonic() + g.wait_seconds
        g._depth += 1

    def __exit__(self, *exc: object) -> None:
        g = self._gate
        g._depth -= 1
        if g._depth == 0:
            g._deadline = None


class _NoBatch:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_BATCH = _NoBatch()


class ParseGate(Protocol):
    """Runs a parse step: returns its result, raises its exception, or raises ParsePending."""

    def run(self, key: Hashable, fn: Callable[[], _T]) -> _T: ...

    def batch(self) -> AbstractContextManager[None]: ...

    def stats(self) -> dict[str, int]: ...


class InlineGate:
    """Parse steps run at once on the caller's thread (never pending)."""

    def run(self, key: Hashable, fn: Callable[[], _T]) -> _T:
        return fn()

    def batch(self) -> _NoBatch:
        return _NO_BATCH

    def stats(self) -> dict[str, int]:
        return {}


class _Job:
    __slots__ = ("abandoned", "done", "error", "fn", "key", "result")

    def __init__(self, key: Hashable, fn: Callable[[], Any]) -> None:
        self.key = key
        self.fn = fn
        self.done = False
        self.abandoned = False  # a wait for it timed out once: never waited for again
        self.result: Any = None
        self.error: BaseException | None = None


class ParseWorker:
    """One daemon thread running parse jobs; callers wait at most ``wait_seconds`` per batch.

    Meant for one calling thread (the agent's pipeline thread); the worker
    thread starts on the first job.
    """

    def __init__(
        self, wait_seconds: float, *, max_queued: int = DEFAULT_MAX_QUEUED, name: str = "symbol-parse"
    ) -> None:
        self.wait_seconds = max(0.0, wait_seconds)
        self.max_queued = max_queued
        self.name = name
        self._cond = threading.Condition()
        self._queue: deque[_Job] = deque()
        self._jobs: dict[Hashable, _Job] = {}  # queued or running, by key
        self._abandoned = 0  # jobs in ``_jobs`` whose wait timed out
        self._thread: threading.Thread | None = None
        self._depth = 0
        self._deadline: float | None = None
        self._batch = _Batch(self)
        self.queued = 0
        self.done = 0
        self.failed = 0
        self.waits_timed_out = 0
        self.not_waited = 0
        self.queue_full = 0

    def batch(self) -> _Batch:
        """``with worker.batch():`` — everything inside shares one wait of ``wait_seconds``."""
        return self._batch

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {
                "parse_jobs_queued": self.queued,
                "parse_jobs_done": self.done,
                "parse_jobs_failed": self.failed,
                "parse_waits_timed_out": self.waits_timed_out,
                "parse_not_waited": self.not_waited,
                "parse_queue_full": self.queue_full,
            }

    @property
    def in_flight(self) -> int:
        with self._cond:
            return len(self._jobs)

    def run(self, key: Hashable, fn: Callable[[], _T]) -> _T:
        if threading.current_thread() is self._thread:
            return fn()  # a parse step inside a job (e.g. lazy sources of a Binary being opened)
        deadline = self._deadline if self._deadline is not None else time.monotonic() + self.wait_seconds
        with self._cond:
            job = self._jobs.get(key)
            if job is None:
                if len(self._queue) >= self.max_queued:
                    self.queue_full += 1
                    raise ParsePending(f"parse queue full ({self.max_queued} jobs)")
                job = _Job(key, fn)
                self._jobs[key] = job
                self._queue.append(job)
                self.queued += 1
                self._start()
                self._cond.notify_all()
            if job.abandoned or self._abandoned:  # the worker is busy with a slow parse: no wait
                self.not_waited += 1
                raise ParsePending("a parse that ran past its wait is still running")
            while not job.done:
                left = deadline - time.monotonic()
                if left <= 0:
                    job.abandoned = True
                    self._abandoned += 1
                    self.waits_timed_out += 1
                    raise ParsePending("parse still running")
                self._cond.wait(left)
        if job.error is not None:
            raise job.error
        result: _T = job.result
        return result

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                job = self._queue.popleft()
            try:
                job.result = job.fn()
            except BaseException as e:  # handed to the waiter; the job's caches hold what it learnt
                job.error = e
            with self._cond:
                job.done = True
                job.fn = _done_fn
                self._jobs.pop(job.key, None)
                if job.abandoned:
                    self._abandoned -= 1
                self.done += 1
                if job.error is not None:
                    self.failed += 1
                self._cond.notify_all()


def _done_fn() -> None:
    return None
