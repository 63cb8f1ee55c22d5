"""A thread pool whose threads never hold the process's exit: the agent's default executor and pipeline.

Why this module exists: a ``ThreadPoolExecutor``'s workers are not daemons, and Python joins them
at exit with no deadline (``concurrent.futures.thread``'s exit hook); ``asyncio.run`` first waits
for the loop's default executor the same way (``shutdown_default_executor``, no timeout before
Python 3.12, 300 s after). ``asyncio.to_thread`` runs there, and so do the DNS lookups of asyncio's
streams. A cancel ends the wait for a call, not the call: one that never returns (an exec
credential plugin that hangs, a read of a file on a dead NFS mount, a BCC compile stuck in the
kernel) held the agent's process past ``shutdown.graceSeconds`` after everything was stored, until
the kubelet killed it, and an agent run with ``--exit-when-idle`` until the call ended.

:class:`DaemonPool` runs the calls on daemon threads (the pattern of store/threads.py), and its
``shutdown(wait=True)`` waits at most ``wait_seconds`` (none by default: each caller bounds its own
wait, and a call nobody awaits any more is given up); the calls it leaves running (by their function's
name, never their arguments) and those still queued are logged, never a worker that is only idle
(each used to be reported as a call left running, at every agent's stop). It is a
``ThreadPoolExecutor`` only because ``loop.set_default_executor`` takes nothing else: none of the
parent's pool is used.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
_Call = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class DaemonPool(ThreadPoolExecutor):
    """Up to ``max_workers`` daemon threads (started as calls need them) taking the calls in order.

    ``max_workers=1``: one thread running every call in the order submitted (the agent's pipeline).
    """

    def __init__(self, max_workers: int | None = None, *, name: str = "daemon", wait_seconds: float = 0.0):
        workers = max_workers if max_workers is not None else min(32, (os.cpu_count() or 1) + 4)
        super().__init__(max_workers=workers, thread_name_prefix=name)
        self.name = name
        self.wait_seconds = wait_seconds
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._pool_lock = threading.Lock()
        self._idle = threading.Semaphore(0)  # released by a worker each time it waits for a call
        self._workers: list[threading.Thread] = []
        self._closed = False
        self._changed = threading.Condition()  # guards the two below; notified as a call ends
        self._running: dict[str, str] = {}  # worker thread's name -> the name of the call it runs
        self._queued = 0  # calls submitted and not yet taken by a worker

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        with self._pool_lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            fut: Future[T] = Future()
            with self._changed:
                self._queued += 1
            self._calls.put((fut, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and len(self._workers) < self._max_workers:
                t = threading.Thread(target=self._work, name=f"{self.name}_{len(self._workers)}", daemon=True)
                t.start()
                self._workers.append(t)
            return fut

    def _work(self) -> None:
        me = threading.current_thread().name
        while (call := self._calls.get()) is not None:
            fut, fn, args, kwargs = call
            del call
            name = call_name(fn)
            with self._changed:
                self._queued -= 1
                if started := fut.set_running_or_notify_cancel():  # False: cancelled before it started
                    self._running[me] = name
                else:
                    self._changed.notify_all()
            if started:
                try:
                    result = fn(*args, **kwargs)
                except BaseException as e:  # the caller's to see, as a pool's worker hands it on
                    fut.set_exception(e)
                else:
                    fut.set_result(result)
                finally:
                    with self._changed:
                        del self._running[me]
                        self._changed.notify_all()
            del fut, fn, args, kwargs  # nothing of a finished call kept while waiting for the next
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new call; with ``cancel_futures`` those not started are cancelled. ``wait``: the
        calls running (and queued) are waited for at most ``wait_seconds``, then left running."""
        with self._pool_lock:
            if not self._closed:
                self._closed = True
                if cancel_futures:
                    while True:
                        try:
                            call = self._calls.get_nowait()
                        except queue.Empty:
                            break
                        if call is not None:
                            call[0].cancel()
                            with self._changed:
                                self._queued -= 1
                for _ in self._workers:
                    self._calls.put(None)  # after what is queued: those still run
        super().shutdown(wait=False)
        if not wait:
            return
        deadline = time.monotonic() + self.wait_seconds
        with self._changed:  # the calls running and queued, not the workers (an idle one is no call)
            while (self._running or self._queued) and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
            running, queued = sorted(self._running.items()), self._queued
        if running or queued:
            log.warning(
                "%d call(s) of %s still running at its shutdown (%s) and %d queued, left on their daemon "
                "threads: they cannot hold the exit", len(running), self.name,
                ", ".join(f"{call} on {thread}" for thread, call in running) or "none", queued,
            )  # fmt: skip


def call_name(fn: Callable[..., Any]) -> str:
    """The name of the function a submitted call runs (never its arguments: they may hold secrets),
    through ``asyncio.to_thread``'s ``functools.partial(context.run, func, ...)``."""
    try:
        while isinstance(fn, functools.partial):
            inner = fn.func
            if isinstance(getattr(inner, "__self__", None), contextvars.Context) and fn.args:
                fn = fn.args[0]
            else:
                fn = inner
        name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
        return str(name or type(fn).__qualname__)
    except Exception:  # an odd callable's attributes: the worker must run the call all the same
        return type(fn).__qualname__
