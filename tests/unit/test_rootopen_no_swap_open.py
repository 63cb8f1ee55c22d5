"""open_in_root never opens for reading what was put at the path after its O_PATH check.

canonical/rootopen.py promises that "a device is never opened for reading":
the path is opened ``O_PATH`` and checked first. It was then opened a second
time *by path* and compared with the first: a FIFO or a device swapped in
between (a container owns its files) had been opened for reading by then,
and only refused after (a driver's open can act; a FIFO's waiting writer is
let through). The second open now goes through the checked ``O_PATH``
descriptor, so it opens the inode that was checked. The swap is made
deterministic by doing it inside the check; the observable is a FIFO's
writer blocked in ``open(O_WRONLY)``, released only by a reader's open.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from stellaops_runtime.canonical import rootopen


def _until_blocked_in_open(t: threading.Thread) -> None:
    want = {"x86_64": "257", "aarch64": "56"}[os.uname().machine]  # openat(2)
    syscall = Path(f"/proc/self/task/{t.native_id}/syscall")
    for _ in range(1000):
        if syscall.read_text().split(" ", 1)[0] == want:
            return
        threading.Event().wait(0.005)
    pytest.fail("the FIFO's writer never reached its open")


@pytest.mark.parametrize("userspace", [False, True], ids=["openat2", "walk"])
def test_a_fifo_swapped_in_after_the_check_is_never_opened_for_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, userspace: bool
) -> None:
    monkeypatch.setattr(rootopen, "FORCE_USERSPACE", userspace)
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    lib = root / "usr/lib/libz.so"
    lib.write_bytes(b"\x7fELF" + b"\0" * 60)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    released = threading.Event()

    def writer() -> None:
        fd = os.open(fifo, os.O_WRONLY)  # blocks until a reader opens the FIFO
        released.set()
        os.close(fd)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    _until_blocked_in_open(t)
    check = rootopen._check_regular
    swapped: list[bool] = []

    def check_then_swap(fd: int, path: str) -> os.stat_result:
        st = check(fd, path)
        if not swapped:  # the O_PATH descriptor was checked: now the container swaps the file
            swapped.append(True)
            os.rename(fifo, lib)
        return st

    monkeypatch.setattr(rootopen, "_check_regular", check_then_swap)
    try:
        fd, st = rootopen.open_in_root(str(root), "/usr/lib/libz.so")
        try:  # what was opened is the file that was checked
            assert os.read(fd, 4) == b"\x7fELF" and st.st_size == 64
        finally:
            os.close(fd)
    except OSError:
        pass  # refusing is fine too; opening the FIFO is not
    assert swapped
    assert not released.wait(0.2), "the FIFO swapped in was opened for reading"
    if not released.is_set():  # let the writer go so its thread ends
        rfd = os.open(lib, os.O_RDONLY | os.O_NONBLOCK)
        t.join(2)
        os.close(rfd)
