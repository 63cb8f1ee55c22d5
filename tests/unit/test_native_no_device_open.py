"""A native probe's file read by path is never opened for reading unless it is a regular file.

native/symaddr.py (a uprobe's address) and native/usdt.py (a USDT target's
notes) read a target's path directly when the watch holds no descriptor for
it. They opened it ``O_RDONLY | O_NONBLOCK`` and refused it after an
``fstat``: a FIFO no longer hung the probes' thread, but whatever the path
named (a FIFO, a device, a symlink to one) had been opened for reading by the
privileged agent, and a driver's open can act (a watchdog starts, a tape
rewinds). canonical/rootopen.py's rule, which the followed files obey, is an
``O_PATH`` open checked first. The observable effect here is a FIFO's: a writer
blocked in ``open(O_WRONLY)`` is released when anybody opens the FIFO for
reading, and stays blocked when nobody does.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stellaops_runtime.canonical.elflayout import ElfError
from stellaops_runtime.native import usdt
from stellaops_runtime.native.symaddr import find_address


@pytest.fixture
def fifo_with_writer(tmp_path: Path) -> Iterator[tuple[Path, threading.Event]]:
    """A FIFO (behind a symlink, as a container's file could be) and an event set once a writer
    waiting on it was let through: somebody opened it for reading."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "app"
    link.symlink_to(fifo)
    released = threading.Event()

    def writer() -> None:
        fd = os.open(fifo, os.O_WRONLY)  # blocks until a reader opens the FIFO
        released.set()
        os.close(fd)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    _until_blocked_in_open(t)
    yield link, released
    if not released.is_set():  # let the writer go so its thread ends
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        t.join(2)
        os.close(fd)


def _until_blocked_in_open(t: threading.Thread) -> None:
    """Wait until ``t`` sleeps in its openat(2) (/proc/self/task/<tid>/syscall: 257 on x86_64, 56 on
    arm64), so a reader's open cannot come before the writer's."""
    want = {"x86_64": "257", "aarch64": "56"}[os.uname().machine]
    syscall = Path(f"/proc/self/task/{t.native_id}/syscall")
    for _ in range(1000):
        if syscall.read_text().split(" ", 1)[0] == want:
            return
        threading.Event().wait(0.005)
    pytest.fail("the FIFO's writer never reached its open")


def _symbol(path: str) -> object:
    return find_address(path, "main")


@pytest.mark.parametrize("read", [_symbol, usdt.read_probes], ids=["symaddr", "usdt"])
def test_a_fifo_behind_a_symlink_is_refused_without_being_opened_for_reading(
    fifo_with_writer: tuple[Path, threading.Event], read: Callable[[str], object]
) -> None:
    link, released = fifo_with_writer
    with pytest.raises((ElfError, usdt.UsdtError), match="not a regular file"):
        read(str(link))
    # a reader's open releases the writer at once; give it the time a thread switch takes
    assert not released.wait(0.2), "the FIFO was opened for reading"
