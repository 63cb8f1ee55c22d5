"""Run a blocking store call on a daemon thread: awaited from the event loop, or from the main thread.

``asyncio.to_thread`` uses the loop's default executor, whose threads the
interpreter joins at exit: one write hung on a black-holed connection would
then hold the agent past its shutdown grace period, and the kubelet would
SIGKILL it. A store call runs on its own daemon thread instead. The caller
bounds the wait (and aborts the store's connections when it gives up), and a
thread that never returns cannot stop the process from exiting.

:func:`call_interruptibly` does the same for a command-line question: a
SQLite store locked by a writer holds the call inside SQLite's busy wait
(``store.statementTimeout``, 30 s), where neither a signal nor
``sqlite3.Connection.interrupt`` reaches it, so Ctrl-C took effect only when
the wait ended. The main thread now waits for the call instead, and Ctrl-C
ends the command at once (exit 130; a question writes nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

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


def call_interruptibly(fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)`` on a daemon thread; the calling (main) thread waits, so Ctrl-C ends the wait at once.

    Its result is returned and its exception raised here; a ``KeyboardInterrupt``
    in the caller leaves the call running on its thread, which cannot hold the
    process's exit.
    """
    box: list[Any] = []

    def body() -> None:
        try:
            box.append((True, fn(*args)))
        except BaseException as e:  # handed to the caller
            box.append((False, e))

    t = threading.Thread(target=body, name="store-question", daemon=True)
    t.start()
    while t.is_alive():
        t.join(0.1)  # returns to the interpreter often: a signal's handler runs between the waits
    ok, value = box[0]
    if not ok:
        raise value
    return cast(_T, value)
