"""Run a blocking store call on a daemon thread and await it from the event loop.

``asyncio.to_thread`` uses the loop's default executor, whose threads the
interpreter joins at exit: one write hung on a black-holed connection would
then hold the agent past its shutdown grace period, and the kubelet would
SIGKILL it. A store call runs on its own daemon thread instead. The caller
bounds the wait (and aborts the store's connections when it gives up), and a
thread that never returns cannot stop the process from exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")


def run_detached(fn: Callable[..., _T], *args: Any, name: str = "store") -> asyncio.Future[_T]:
    """Start ``fn(*args)`` on a new daemon thread; the future resolves on the running loop."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[_T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if fut.done():  # cancelled by the caller meanwhile
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def body() -> None:
        ok: bool
        value: Any
        try:
            value = fn(*args)
            ok = True
        except BaseException as e:  # handed to the awaiting task, never lost in the thread
            ok, value = False, e
        with contextlib.suppress(RuntimeError):  # a closed loop: the process is exiting
            loop.call_soon_threadsafe(settle, ok, value)

    threading.Thread(target=body, name=name, daemon=True).start()
    return fut
