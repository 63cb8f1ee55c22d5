"""What the kernel records do not carry and /proc still knows: a process's binary and its mappings.

BPF records hold a pid, a comm and raw user stack addresses; an event needs
the executable's path and frames as (file, file offset), the shape Tetragon
gives. This cache learns binaries from exec records (exact, even for processes
gone by the time we read) and falls back to ``/proc/<pid>/exe`` and
``/proc/<pid>/maps`` while the process lives. Bounded: at most ``max_pids``
processes are remembered, the oldest forgotten first.

A pid is reused once its process is gone, and the probes see no exit and no
fork: a process forked without an exec (a server's worker, a shell's
subshell) that gets a dead process's pid would be given the dead one's
binary, exec id and mappings (its stack frames resolved against another
program's files). So the facts remembered for a pid are tied to the start
time of the process they were learned from (``/proc/<pid>/stat``, field 22),
read at most once per pid per batch of records (``begin_batch``: a pid is
reused only after the kernel went once round the whole pid space, which
takes far longer than a poll); when another process holds the pid they are
forgotten. A record written before the process now holding its pid started
(``ktime_ns``, the record's monotonic time) belongs to a process that is
gone: /proc knows nothing of it, and it gets no binary and no frames from
there rather than the newcomer's.

A process's mappings change while it runs (a library loaded with dlopen): an
address outside every mapping read so far makes the maps be read again, at
most once per pid per batch.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from stellaops_runtime.canonical.procmaps import (
    DELETED_SUFFIX,
    Mapping,
    ProcessError,
    find_mapping,
    read_maps,
)

DEFAULT_MAX_PIDS = 4096
_TICK_NS = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") or 100)  # /proc/<pid>/stat's start time unit
_UNKNOWN = -1


@dataclass(slots=True)
class ProcEntry:
    binary: str = ""
    exec_ktime_ns: int = 0  # monotonic ns of the exec we saw (0: started before we watched)
    maps: list[Mapping] | None = None
    start: int = _UNKNOWN  # start time (clock ticks since boot) of the process these facts are of


@dataclass(slots=True)
class ProcStats:
    frames_resolved: int = 0
    frames_unresolved: int = 0  # address in no file-backed mapping, or the process was gone
    maps_unreadable: int = 0
    pid_reused: int = 0  # facts of a pid forgotten because another process holds it now
    stale_records: int = 0  # records of a process gone whose pid another one holds: nothing from /proc


@dataclass(slots=True)
class ProcCache:
    proc_root: str = "/proc"
    max_pids: int = DEFAULT_MAX_PIDS
    stats: ProcStats = field(default_factory=ProcStats)
    _entries: OrderedDict[int, ProcEntry] = field(default_factory=OrderedDict)
    # This batch's reads: pid -> (start in ticks since boot, the start on the monotonic clock), or None.
    _starts: dict[int, tuple[int, int] | None] = field(default_factory=dict)
    _maps_read: set[int] = field(default_factory=set)  # pids whose maps were read in this batch

    def begin_batch(self) -> None:
        """A new batch of records: each pid's start time is read again (once) when next used, and
        its maps once more when an address falls outside them (a library loaded since)."""
        self._starts.clear()
        self._maps_read.clear()

    def _start_of(self, pid: int) -> tuple[int, int] | None:
        """When the process holding ``pid`` now started; None when no process holds it.

        The monotonic start is a lower bound: /proc gives boot time (which counts
        suspended time) cut down to a tick, and the two clocks' offset is read
        after the process started, so it is never smaller than it was then."""
        if pid in self._starts:
            return self._starts[pid]
        got: tuple[int, int] | None = None
        try:
            with open(os.path.join(self.proc_root, str(pid), "stat"), "rb") as f:
                stat = f.read()
            ticks = int(stat[stat.rindex(b")") + 2 :].split()[19])
            boot_minus_mono = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
            got = (ticks, ticks * _TICK_NS - boot_minus_mono)
        except (OSError, ValueError, IndexError):
            got = None
        self._starts[pid] = got
        return got

    def thread_since(self, pid: int, tid: int, ktime_ns: int) -> bool:
        """Whether thread ``tid`` of ``pid`` lives and had started by ``ktime_ns`` (monotonic): the
        thread that entered a function then, still inside it (not one given its id since)."""
        try:
            with open(os.path.join(self.proc_root, str(pid), "task", str(tid), "stat"), "rb") as f:
                stat = f.read()
            fields = stat[stat.rindex(b")") + 2 :].split()
            ticks = int(fields[19])
        except (OSError, ValueError, IndexError):
            return False
        if fields[0] in (b"Z", b"X"):  # exited (a zombie until reaped): it left the function that way
            return False
        boot_minus_mono = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
        return ticks * _TICK_NS - boot_minus_mono <= ktime_ns

    def _current(self, pid: int, ktime_ns: int) -> ProcEntry | None:
        """The entry of the process that wrote a record at ``ktime_ns`` (0: unknown, now), or None
        when that process is gone and its pid held by a younger one (see the module docstring)."""
        e = self._entry(pid)
        got = self._start_of(pid)
        if got is None:
            return e  # gone: what was learned while it lived (or from its exec) is all there is
        ticks, mono = got
        if e.start != ticks:
            if e.start != _UNKNOWN or (e.exec_ktime_ns and mono > e.exec_ktime_ns):
                e.binary, e.exec_ktime_ns, e.maps = "", 0, None  # learned of a process gone
                self.stats.pid_reused += 1
            e.start = ticks
        return None if ktime_ns and mono > ktime_ns else e

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
        got = self._start_of(pid)  # the process that exec'd (the record is fresh); gone: checked later
        e.start = got[0] if got is not None else _UNKNOWN

    def binary(self, pid: int, ktime_ns: int = 0) -> tuple[str, int]:
        """(executable path, exec time) of the process ``pid`` that wrote a record at ``ktime_ns``
        (0: the one holding it now); ('', 0) when neither seen nor readable."""
        e = self._current(pid, ktime_ns)
        if e is None:
            self.stats.stale_records += 1
            return "", 0
        if not e.binary:
            try:
                e.binary = os.readlink(os.path.join(self.proc_root, str(pid), "exe"))
            except OSError:
                return "", e.exec_ktime_ns
        return e.binary, e.exec_ktime_ns

    def frames(self, pid: int, addresses: Sequence[int], ktime_ns: int = 0) -> list[tuple[int, int, str]]:
        """(address, file offset, file) per address; file '' and offset 0 when unresolvable."""
        if not addresses:
            return []
        e = self._current(pid, ktime_ns)
        if e is None:
            self.stats.frames_unresolved += len(addresses)
            return [(addr, 0, "") for addr in addresses]
        if e.maps is None:
            self._maps_read.add(pid)
            try:
                e.maps = read_maps(pid, proc_root=self.proc_root)
            except ProcessError:
                self.stats.maps_unreadable += 1
                e.maps = []
        elif pid not in self._maps_read and any(find_mapping(e.maps, a) is None for a in addresses):
            self._maps_read.add(pid)  # mapped since the maps were read (dlopen): read them again
            with contextlib.suppress(ProcessError):
                e.maps = read_maps(pid, proc_root=self.proc_root)
        out: list[tuple[int, int, str]] = []
        for addr in addresses:
            m = find_mapping(e.maps, addr)
            if m is None or not m.file_backed:
                self.stats.frames_unresolved += 1
                out.append((addr, 0, ""))
            else:
                self.stats.frames_resolved += 1
                # A deleted file keeps maps' suffix, as Tetragon's paths do: the canonicalizer then
                # reads the mapped file (map_files), not the one an upgrade put at its path.
                out.append((addr, m.file_offset(addr), m.path + DELETED_SUFFIX if m.deleted else m.path))
        return out
