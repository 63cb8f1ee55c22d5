"""A keyed, coalescing work queue: the operator's reconciles run here, one at a time per key.

kopf delivers watch events per object; the operator's handlers only say
*what* needs reconciling (``trigger(key)``), and this queue decides *when*:

- triggers of one key coalesce: 100 ObservationNode heartbeats in a second
  refold a policy's rollout once, not 100 times (``delay`` sets the window);
- one key never runs twice at once, so two triggers cannot race each other
  into a double write; a trigger that arrives while its key runs queues
  exactly one more run;
- a failed run is retried with capped exponential backoff (kopf does not
  retry ``@kopf.on.event`` handlers), counted, and logged once per failure;
  an error that says how long the server asked to wait (``retry_after``: a
  throttled API request, ``kube.client``) is retried no sooner than that,
  whatever triggers arrive meanwhile;
- ``concurrency`` bounds how many reconciles talk to the API server at once.

``wait_idle()`` lets tests and the benchmark know when the operator has
nothing left to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Key = tuple[Hashable, ...]


@dataclass(slots=True)
class _Entry:
    due: float
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    running: bool = False
    again_due: float | None = None
    failures: int = 0
    not_before: float = (
        0.0  # loop time the API server asked to wait for (Retry-After): no trigger runs sooner
    )
    task: asyncio.Task[None] | None = None
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


@dataclass(slots=True)
class SchedulerStats:
    runs: int = 0
    failures: int = 0
    retries: int = 0


class Scheduler:
    """Runs ``reconcile(key)`` for triggered keys; see the module docstring."""

    def __init__(
        self,
        reconcile: Callable[[Key], Awaitable[None]],
        *,
        concurrency: int = 16,
        retry_initial: float = 1.0,
        retry_max: float = 60.0,
    ) -> None:
        self._reconcile = reconcile
        self._entries: dict[Key, _Entry] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self.stats = SchedulerStats()

    def __len__(self) -> int:
        return len(self._entries)

    def trigger(self, key: Key, *, delay: float = 0.0) -> None:
        """Reconcile ``key`` after ``delay`` seconds at the latest (an earlier trigger wins)."""
        if self._closed:
            return
        due = asyncio.get_running_loop().time() + delay
        entry = self._entries.get(key)
        if entry is None:
            entry = _Entry(due=due)
            self._entries[key] = entry
            self._idle.clear()
            entry.task = asyncio.create_task(self._drive(key, entry), name=f"reconcile {key}")
        elif entry.running:
            entry.again_due = due if entry.again_due is None else min(entry.again_due, due)
        elif (due := max(due, entry.not_before)) < entry.due:
            entry.due = due
            entry.wakeup.set()

    async def run(self, key: Key) -> None:
        """Trigger ``key`` now and wait until a run that started after this call has finished."""
        self.trigger(key)
        entry = self._entries.get(key)
        if entry is None:  # closed
            return
        if entry.running:  # the current run may predate the caller's change: wait for the next one
            entry.again_due = entry.again_due if entry.again_due is not None else 0.0
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry.waiters.append(fut)
        await fut

    async def wait_idle(self) -> None:
        """Return once no key is pending or running."""
        await self._idle.wait()

    def pending(self) -> list[Key]:
        return list(self._entries)

    async def close(self) -> None:
        """Cancel everything pending; later triggers are ignored."""
        self._closed = True
        tasks = [e.task for e in self._entries.values() if e.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._entries.clear()
        self._idle.set()

    async def _drive(self, key: Key, entry: _Entry) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                while (wait := entry.due - loop.time()) > 0:
                    entry.wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(entry.wakeup.wait(), wait)
                waiters, entry.waiters = entry.waiters, []
                entry.running = True
                failed = False
                server_wait = 0.0
                async with self._slots:
                    self.stats.runs += 1
                    try:
                        await self._reconcile(key)
                    except asyncio.CancelledError:
                        raise
                    except Exception as e:
                        failed = True
                        server_wait = _retry_after(e)
                        entry.failures += 1
                        self.stats.failures += 1
                        log.warning("reconcile %s failed (attempt %d): %s", key, entry.failures, e,
                                    exc_info=log.isEnabledFor(logging.DEBUG))  # fmt: skip
                entry.running = False
                for w in waiters:
                    if not w.done():
                        w.set_result(None)
                entry.not_before = loop.time() + server_wait if failed and server_wait else 0.0
                if entry.again_due is not None:
                    entry.due, entry.again_due = max(entry.again_due, entry.not_before), None
                    continue
                if failed:
                    self.stats.retries += 1
                    backoff = min(self._retry_max, self._retry_initial * 2 ** (entry.failures - 1))
                    backoff = max(backoff, server_wait)  # the API server's Retry-After comes first
                    entry.due = loop.time() + backoff
                    continue
                return
        finally:
            for w in entry.waiters:
                if not w.done():
                    w.set_result(None)
            if self._entries.get(key) is entry:
                del self._entries[key]
            if not self._entries:
                self._idle.set()


def _retry_after(error: BaseException) -> float:
    """Seconds the API server asked to wait before the next attempt (``ApiError.retry_after``), else 0."""
    wait = getattr(error, "retry_after", None)
    return float(wait) if isinstance(wait, int | float) and wait > 0 else 0.0
