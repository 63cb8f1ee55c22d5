"""What the kernel records do not carry and /proc still knows: a process's binary and its mappings.

BPF records hold a pid, a comm and raw user stack addresses; an event needs
the executable's path and frames as (file, file offset), the shape Tetragon
gives. This cache learns binaries from exec records (exact, even for processes
gone by the time we read) and falls back to ``/proc/<pid>/exe`` and
``/proc/<pid>/maps`` while the process lives. Bounded: at most ``max_pids``
processes are remembered, the oldest forgotten first.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from stellaops_runtime.canonical.procmaps import Mapping, ProcessError, find_mapping, read_maps

DEFAULT_MAX_PIDS = 4096


@dataclass(slots=True)
class ProcEntry:
    binary: str = ""
    exec_ktime_ns: int = 0  # monotonic ns of the exec we saw (0: started before we watched)
    maps: list[Mapping] | None = None


@dataclass(slots=True)
class ProcStats:
    frames_resolved: int = 0
    frames_unresolved: int = 0  # address in no file-backed mapping, or the process was gone
    maps_unreadable: int = 0


@dataclass(slots=True)
class ProcCache:
    proc_root: str = "/proc"
    max_pids: int = DEFAULT_MAX_PIDS
    stats: ProcStats = field(default_factory=ProcStats)
    _entries: OrderedDict[int, ProcEntry] = field(default_factory=OrderedDict)

    def _entry(self, pid: int) -> ProcEntry:
        e = self._entries.get(pid)
        if e is None:
            e = ProcEntry()
            self._entries[pid] = e
            if len(self._entries) > self.max_pids:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(pid)
        return e

    def exec_seen(self, pid: int, binary: str, ktime_ns: int) -> None:
        """A new image in ``pid``: what we knew about its mappings is stale."""
        e = self._entry(pid)
        e.binary, e.exec_ktime_ns, e.maps = binary, ktime_ns, None

    def binary(self, pid: int) -> tuple[str, int]:
        """(executable path, exec time) of ``pid``; ('', 0) when neither seen nor readable."""
        e = self._entry(pid)
        if not e.binary:
            try:
                e.binary = os.readlink(os.path.join(self.proc_root, str(pid), "exe"))
            except OSError:
                return "", e.exec_ktime_ns
        return e.binary, e.exec_ktime_ns

    def frames(self, pid: int, addresses: Sequence[int]) -> list[tuple[int, int, str]]:
        """(address, file offset, file) per address; file '' and offset 0 when unresolvable."""
        if not addresses:
            return []
        e = self._entry(pid)
        if e.maps is None:
            try:
                e.maps = read_maps(pid, proc_root=self.proc_root)
            except ProcessError:
                self.stats.maps_unreadable += 1
                e.maps = []
        out: list[tuple[int, int, str]] = []
        for addr in addresses:
            m = find_mapping(e.maps, addr)
            if m is None or not m.file_backed:
                self.stats.frames_unresolved += 1
                out.append((addr, 0, ""))
            else:
                self.stats.frames_resolved += 1
                out.append((addr, m.file_offset(addr), m.path))
        return out
