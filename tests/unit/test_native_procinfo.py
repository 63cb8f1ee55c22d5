"""procinfo.py: binaries and stack frames from /proc, including processes that are gone."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from stellaops_runtime.native.procinfo import ProcCache


def test_frames_of_a_live_process_resolve_to_file_and_offset() -> None:
    cache = ProcCache()
    maps = Path(f"/proc/{os.getpid()}/maps").read_text().splitlines()
    first = next(line for line in maps if line.split()[-1].startswith("/"))
    rng, _perms, off = first.split()[:3]
    start = int(rng.split("-")[0], 16)
    path = first.split()[-1]
    assert cache.frames(os.getpid(), [start + 0x10, 0x10]) == [
        (start + 0x10, int(off, 16) + 0x10, path),
        (0x10, 0, ""),
    ]
    assert (cache.stats.frames_resolved, cache.stats.frames_unresolved) == (1, 1)


def test_a_process_already_gone_keeps_addresses_and_is_counted() -> None:
    p = subprocess.Popen(["/bin/true"])
    p.wait()
    cache = ProcCache()
    assert cache.frames(p.pid, [0x401000]) == [(0x401000, 0, "")]
    assert cache.stats.maps_unreadable == 1 and cache.stats.frames_unresolved == 1
    assert cache.binary(p.pid) == ("", 0)


def test_exec_seen_wins_over_proc_and_resets_stale_maps(tmp_path: Path) -> None:
    cache = ProcCache(max_pids=2)
    assert cache.binary(os.getpid())[0] == os.readlink("/proc/self/exe")
    cache.exec_seen(os.getpid(), "/opt/new-image", 123)
    assert cache.binary(os.getpid()) == ("/opt/new-image", 123)
    for pid in (1, 2, 3):  # bounded: the oldest is forgotten
        cache.exec_seen(pid, f"/bin/{pid}", pid)
    assert len(cache._entries) == 2
