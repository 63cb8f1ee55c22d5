"""A load on the probes' thread whose probes are closed, not left attached, when its waiter is cancelled.

Why this module exists: the source switch (agent/source_switch.py) cancels a
native source that has not stopped within STOP_WAIT_SECONDS. A cancel ends the
coroutine awaiting the probes' ``bcc`` thread, not the thread: a load under
way (the uprobes' lookups, up to 120 s a file, then BCC's compile) went on,
attached every probe and handed its ProbeSet to nobody, so the probes stayed
attached in the agent, next to those of the next start, until it exited.
:func:`owned` makes whoever comes second close them: the load's own job when
the waiter was cancelled first, the waiter when the load had already ended.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

T = TypeVar("T")


async def owned(executor: Executor, make: Callable[[], T], close: Callable[[T], None]) -> T:
    """``make()`` on ``executor``'s thread; when the awaiting task is cancelled, what it made (or still
    makes) is handed to ``close`` on that thread instead of being lost."""
    lock = threading.Lock()
    abandoned = False
    made: list[T] = []

    def job() -> T:
        obj = make()
        with lock:
            if abandoned:  # nobody will take it: close it here, on the thread that made it
                close(obj)
            else:
                made.append(obj)
        return obj

    try:
        return await asyncio.get_running_loop().run_in_executor(executor, job)
    except asyncio.CancelledError:
        with lock:
            abandoned = True
            left = list(made)
        for obj in left:  # made before the cancel reached us: closed after it, on its thread
            executor.submit(close, obj)
        raise
