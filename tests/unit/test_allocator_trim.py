"""``release_free_memory`` gives freed heap memory back to the kernel (issue 13, agent/allocator.py).

A flush frees a few KiB per row in blocks below the mmap threshold; glibc
keeps such memory in its heap until ``malloc_trim``. Checked on this
process's own RSS: allocate 80 MiB in 16 KiB blocks, free every other one, trim.
"""

from __future__ import annotations

import gc
import platform
from pathlib import Path

import pytest

from stellaops_runtime.agent.allocator import release_free_memory, tune_malloc

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_freed_heap_memory_goes_back_to_the_kernel() -> None:
    tune_malloc()
    # 80 MiB in 16 KiB blocks from the heap; every other one freed leaves 40 MiB of holes
    # between live blocks, which glibc keeps resident until trimmed.
    blocks = [bytes(16_384 - 40) + i.to_bytes(4, "little") for i in range(5_120)]
    live = blocks[1::2]
    del blocks
    gc.collect()
    before = _rss_mib()
    assert release_free_memory() is True
    assert _rss_mib() < before - 20, (before, _rss_mib())
    assert len(live) == 2_560 and live[-1][-4:] == (5_119).to_bytes(4, "little")
