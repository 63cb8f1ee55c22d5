"""Is ``/proc/<pid>`` still the process an event came from? The guard against pid reuse.

An event names its process by pid, and the canonicalizer and the package
attribution read that process's files through ``/proc/<pid>/root`` and
``/proc/<pid>/maps``. By the time they do, the process may have exited and
its pid been given to another process: of another container, or of the
host. Reading through that pid would resolve the event's frames in another
program's files and give them that program's function names, or attribute a
file to another image's package: a wrong answer that looks like evidence.

The event's exec_id says when its process started: Tetragon's exec_id is
base64 of ``<node>:<ktime>:<pid>``, ``ktime`` the monotonic nanoseconds of
the exec (or clone) that made it; the native probes write the same form. The
kernel says when the process now holding the pid started:
``/proc/<pid>/stat`` field 22, in clock ticks of boot time (which counts
suspended time), cut down to a tick. Moved into the monotonic clock with the
boot-minus-monotonic offset read now (it only grows, so it is never smaller
than it was when the process started), it is a lower bound of the true start.
A pid now held by a process that started after the event's process did is
reused: the event's process is gone (``process_exited``), and nothing of its
is read through the pid. A process that forked earlier and exec'd at
``ktime`` (fork before exec) is the same process.

An exec_id that is not of that form (another source, a test's) or a pid
whose ``stat`` cannot be read gives no verdict: the caller goes on as before
(reading a missing process fails on its own).

A check before a read is not enough: the process may exit and its pid be
handed on between the check and the read. :func:`holder` is the check, and
remembers the start time (in ticks, exactly as ``stat`` writes it) of the
process holding the pid; :func:`same_holder` after the read says whether the
pid still names that process. A process keeps its start time for its whole
life, and a newcomer on the pid gets its own, so a start time unchanged from
before the read to after it means every step of the read went through one
process (a start time that became readable, or stopped being readable, in
between means it did not). The caller drops what it read otherwise. This
holds whatever the exec_id says, so an exec_id of no known form still gets
the bracket. An exec_id of that form naming another pid than its event's is
no exec_id of the pid's holder: nothing is read through the pid
(:attr:`Holder.other_pid`), as nothing could tell that holder from a newcomer.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from dataclasses import dataclass

_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def exec_id_fields(exec_id: str) -> tuple[int, int] | None:
    """(ktime, pid) of an exec_id of the form ``base64(<node>:<ktime>:<pid>)``; None for another form."""
    if not exec_id or len(exec_id) > 1024:
        return None
    try:
        text = base64.b64decode(exec_id, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    # <node>:<ktime>:<pid>: a node name may itself hold ':', so split from the right.
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isascii() or not parts[2].isascii():
        return None
    if not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return int(parts[1]), int(parts[2])


def exec_start_ns(exec_id: str, pid: int) -> int | None:
    """The monotonic start (ns) the exec_id of process ``pid`` gives; None when it gives none.

    The exec_id's own pid must be ``pid``: an exec_id of another process (a
    parent's, a thread leader's under another number) says nothing of this one.
    """
    fields = exec_id_fields(exec_id)
    if fields is None or fields[1] != pid:
        return None
    return fields[0] if fields[0] > 0 else None


def start_ticks(pid: int, *, proc_root: str = "/proc") -> int | None:
    """``/proc/<pid>/stat`` field 22 (the start, in clock ticks after boot) of the process now
    holding ``pid``; None when it cannot be read (no such process, no stat: a test's procfs)."""
    try:
        with open(os.path.join(proc_root, str(pid), "stat"), "rb") as f:
            stat = f.read(4096)
        # The name (field 2) is in parentheses and may hold anything, ')' and spaces included:
        # the fields after the last ')' are counted from field 3.
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _mono_ns(ticks: int) -> int:
    boot_minus_mono = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
    return ticks * _TICK_NS - boot_minus_mono


def started_mono_ns(pid: int, *, proc_root: str = "/proc") -> int | None:
    """A lower bound of the monotonic start (ns) of the process now holding ``pid``; None if unreadable."""
    ticks = start_ticks(pid, proc_root=proc_root)
    return None if ticks is None else _mono_ns(ticks)


@dataclass(frozen=True, slots=True)
class Holder:
    """The process that held ``pid`` when :func:`holder` checked it: its start, in ticks (None:
    ``stat`` unreadable), whether it started after the exec_id's process (the pid reused), and
    ``other_pid``: the exec_id, of Tetragon's form, names another pid than the event does."""

    pid: int
    ticks: int | None
    reused: bool
    other_pid: int | None = None


def holder(pid: int, exec_id: str, *, proc_root: str = "/proc") -> Holder:
    """The check before a read through ``/proc/<pid>``: who holds the pid, and is it younger than
    the process ``exec_id`` names? Pass the answer to :func:`same_holder` after the read.

    An exec_id of Tetragon's form that names another pid contradicts its event (Tetragon and the
    native probes write the event's own pid in it): which process it was cannot be told, so a
    live holder of the pid is not taken for it (``other_pid``; the caller reads nothing)."""
    ticks = start_ticks(pid, proc_root=proc_root)
    if ticks is None:
        return Holder(pid, None, False)
    fields = exec_id_fields(exec_id)
    if fields is not None and fields[1] != pid:
        return Holder(pid, ticks, False, fields[1])
    start = exec_start_ns(exec_id, pid)
    return Holder(pid, ticks, start is not None and _mono_ns(ticks) > start)


def same_holder(before: Holder, *, proc_root: str = "/proc") -> bool:
    """The check after the read: does the pid still name the process :func:`holder` saw? False
    when its start time changed (a newcomer took the pid between the two checks) or became
    readable or unreadable (it exited, or one started there): what was read may be another's."""
    return start_ticks(before.pid, proc_root=proc_root) == before.ticks


def pid_reused(pid: int, exec_id: str, *, proc_root: str = "/proc") -> bool:
    """True when ``pid`` now names a process that started after the one ``exec_id`` names."""
    return holder(pid, exec_id, proc_root=proc_root).reused
