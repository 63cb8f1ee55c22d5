"""Reading a USDT target's notes never blocks on a FIFO put at its path.

native/probes/usdtprobes.py checks ``os.path.isfile`` and then
native/usdt.py's ``read_probes`` opened the path with a plain ``open``: a FIFO
put there in between (the path's owner swapping it) made that open wait for
a writer for ever, on the probes' thread, so the load never ended. The
symbol lookup opens with O_NONBLOCK and refuses what is not a regular file;
so does the notes' reader now.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from stellaops_runtime.native import usdt


def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "app"
    os.mkfifo(fifo)
    out: list[BaseException | object] = []

    def read() -> None:
        try:
            out.append(usdt.read_probes(str(fifo)))
        except BaseException as e:  # handed to the test's thread
            out.append(e)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(2)
    if t.is_alive():  # release the blocked open so the thread ends, then fail
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("read_probes blocked on a FIFO")
    assert len(out) == 1 and isinstance(out[0], usdt.UsdtError), out
    assert "not a regular file" in str(out[0])
