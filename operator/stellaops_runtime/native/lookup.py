"""A uprobe's address looked up on a thread of its own, while the probes' thread keeps reading their output.

Why this module exists: native/symaddr.py reads the probed file's symbol
tables (and its debug file, and the function-start check) within 1 GiB and
120 s per file read, and the file can be a container's own: a hostile symbol
table makes one lookup take a minute. Run on the probes' ``bcc`` thread, that
minute was a minute in which nobody read the output buffer: records waited in
it, what did not fit was refused in the kernel (counted ``lost``, a gap) and
every event of the node in that minute was gone.

So the lookup of a file attached while the probes run (a new file at a
target's path, a copy-up, a former file found by the scan: native/follow.py)
runs on a short-lived thread of its own, on a duplicate of the caller's
descriptor (the caller may close its own; the file read is the one it
looked at), and the caller's thread calls ``idle`` until it is done: the
source's ``idle`` reads the buffer and hands the records on, as its reader
does between looks (native/source.py). ``idle`` returning False (the probes
are stopping) abandons the wait: the target is reported (not probed, a gap),
and the lookup's thread ends at the lookup's next step (native/symcancel.py:
each chunk of a table or of a debug file read checks whether the wait was
given up), not after up to 120 s of a hostile file read for nobody. No
BCC call is made off the probes' thread: only the file is read there.

Without ``idle`` (the load's own lookups, made before anything is attached:
nothing to read yet) the lookup runs on the caller's thread, as before.
A USDT target's new file has its notes read the same way (:func:`off_thread`,
native/follow_attach.py): up to 16 MiB of them, seconds of parsing.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from stellaops_runtime.native.symaddr import find_address
from stellaops_runtime.native.symcancel import cancellable, given_up

Idle = Callable[[], bool]  # called while a lookup runs; False: stop waiting (the probes stop)
T = TypeVar("T")


class Abandoned(Exception):
    """The wait for a lookup was given up (``idle`` said so): no address."""


def address(
    fd: int,
    symbol: str,
    *,
    where: tuple[str, str] | None,
    debug_files: bool = True,
    idle: Idle | None = None,
) -> int:
    """The address of ``symbol`` in the file of ``fd``. Raises what ``find_address`` raises (its
    messages name the file as ``/proc/self/fd/<n>``, ``fd``'s or a duplicate's), or :class:`Abandoned`."""
    if idle is None:
        return find_address(f"/proc/self/fd/{fd}", symbol, where=where, debug_files=debug_files)
    return off_thread(
        fd,
        lambda path: find_address(path, symbol, where=where, debug_files=debug_files),
        f"lookup of {symbol}",
        idle,
    )


def off_thread(fd: int, read: Callable[[str], T], what: str, idle: Idle) -> T:
    """``read(path)`` of the file of ``fd`` (``path``: ``/proc/self/fd/<n>`` of a duplicate) on a thread
    of its own while ``idle`` is called; its result, or what it raised, or :class:`Abandoned` (``what``
    names it) once ``idle`` says False. However the wait ends, the read ends at its next step."""
    own = os.dup(fd)  # the read's own: the caller may close its descriptor meanwhile
    path = f"/proc/self/fd/{own}"
    done: Future[T] = Future()
    finished = threading.Event()
    cancel = threading.Event()  # set: the read ends at its next step (native/symcancel.py)
    outer = given_up()  # the caller's own (a load the switch gave up on): this wait ends with it

    def run() -> None:
        try:
            with cancellable(cancel):
                done.set_result(read(path))
        except BaseException as e:  # handed to the waiting thread, which raises it
            done.set_exception(e)
        finally:
            with contextlib.suppress(OSError):
                os.close(own)
            finished.set()

    threading.Thread(target=run, name="symlookup", daemon=True).start()
    try:
        while not finished.wait(0.001):  # idle blocks (a poll of the buffer); this never spins alone
            if not idle() or (outer is not None and outer.is_set()):
                raise Abandoned(f"the {what} was abandoned: the probes stopped")
    except BaseException:  # given up, or idle's own error: the read ends at its next step
        cancel.set()
        raise
    return done.result()
