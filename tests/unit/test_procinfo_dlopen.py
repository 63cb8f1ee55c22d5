"""Frames in a library loaded after a process's maps were first read resolve (native/procinfo.py).

The source reads ``/proc/<pid>/maps`` once per process and resolves every
later stack against it. A library the process loads afterwards (dlopen: a
plugin, a Python extension, a JIT's helper) was outside those maps, so every
frame in it stayed unresolved, a caller nobody could name, for as long as
the process lived. A real process loads libz after its first frames were
resolved; its frames in libz must name libz at the next batch of records.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from stellaops_runtime.native.procinfo import ProcCache

CHILD = r"""
import ctypes, sys
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()
lib = ctypes.CDLL("libz.so.1")
sys.stdout.write("%d\n" % ctypes.cast(lib.zlibVersion, ctypes.c_void_p).value); sys.stdout.flush()
sys.stdin.readline()
"""


def test_a_library_loaded_later_is_found_at_the_next_batch() -> None:
    p = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert p.stdin is not None and p.stdout is not None
    try:
        assert p.stdout.readline() == "ready\n"
        cache = ProcCache()
        exe = Path(f"/proc/{p.pid}/exe").resolve()
        first = next(
            line for line in Path(f"/proc/{p.pid}/maps").read_text().splitlines() if line.endswith(str(exe))
        )
        start = int(first.split("-")[0], 16)
        assert cache.frames(p.pid, [start])[0][2] == str(exe)  # the maps are read (and kept) here

        p.stdin.write("load\n")
        p.stdin.flush()
        addr = int(p.stdout.readline())
        cache.begin_batch()  # the source's next poll
        [(got_addr, offset, path)] = cache.frames(p.pid, [addr])
        assert got_addr == addr and "libz.so" in path and offset > 0
        assert cache.stats.frames_unresolved == 0
        # An address in no mapping at all is unresolved, and the maps are not read again for it
        # within the batch.
        assert cache.frames(p.pid, [0x10, 0x20]) == [(0x10, 0, ""), (0x20, 0, "")]
        assert cache.stats.frames_unresolved == 2
    finally:
        p.kill()
        p.wait()
