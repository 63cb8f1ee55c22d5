"""The native probes' own thread: one daemon thread running the BCC calls in the order submitted.

All BCC calls of a source run on one thread (polling blocks; the event loop must not). It was a
``ThreadPoolExecutor`` of one worker, and Python joins a pool's workers at exit: a BCC call that
never returned (given up after a cancel, native/source.py ``CUT_LAST_READ_SECONDS``) kept the
agent's process alive after its shutdown, evidence flushed, until the kubelet killed it. A daemon
thread does not hold the exit, as the address lookups' threads do not (native/lookup.py); what a
given-up call holds open (a probe's descriptors) the kernel closes with the process. A normal stop
awaits its last read and the close before the source's ``run`` returns, so nothing is left queued.
A new run waits for the old thread on the event loop (:attr:`ProbeThread.ended`), not in a thread
of asyncio's default pool, which ``asyncio.run`` and Python's exit join as they would a pool's.
``shutdown(wait=True)`` (an executor's ``with`` block ends with it) waits at most ``wait_seconds``
for a call that does not return: it joined the thread with no deadline, for ever behind a BCC call
stuck in the kernel.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class ProbeThread(Executor):
    """An executor of one daemon thread (started at the first call), calls run in order."""

    def __init__(self, name: str = "bcc", *, wait_seconds: float = 1.0) -> None:
        self._name = name
        self.wait_seconds = wait_seconds  # the most ``shutdown(wait=True)`` waits for the thread
        self._calls: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None]
        self._calls = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._shut = False
        # done once shut down and what was queued before has run (at once if it never started)
        self.ended: Future[None] = Future()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if kwargs:
            return self.submit(lambda: fn(*args, **kwargs))
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
            fut: Future[T] = Future()
            self._calls.put((fut, fn, args))
            return fut

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            fut, fn, args = call
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as e:  # the caller's to see, as a pool's worker hands it on
                fut.set_exception(e)
            else:
                fut.set_result(result)
        self.ended.set_result(None)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if not self._shut:
                self._shut = True
                self._calls.put(None)  # after what is queued: those still run
                if self._thread is None:
                    self.ended.set_result(None)
            thread = self._thread
        if wait and thread is not None:
            thread.join(self.wait_seconds)
            if thread.is_alive():
                log.warning(
                    "a call on the %s thread did not return within %g s of its shutdown: left running "
                    "on its daemon thread", self._name, self.wait_seconds,
                )  # fmt: skip
