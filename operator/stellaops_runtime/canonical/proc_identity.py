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
"""

from __future__ import annotations

import base64
import binascii
import os
import time

_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def exec_start_ns(exec_id: str, pid: int) -> int | None:
    """The monotonic start (ns) the exec_id of process ``pid`` gives; None when it gives none.

    The exec_id's own pid must be ``pid``: an exec_id of another process (a
    parent's, a thread leader's under another number) says nothing of this one.
    """
    if not exec_id or len(exec_id) > 1024:
        return None
    try:
        text = base64.b64decode(exec_id, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    # <node>:<ktime>:<pid>: a node name may itself hold ':', so split from the right.
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    if int(parts[2]) != pid:
        return None
    ktime = int(parts[1])
    return ktime if ktime > 0 else None


def started_mono_ns(pid: int, *, proc_root: str = "/proc") -> int | None:
    """A lower bound of the monotonic start (ns) of the process now holding ``pid``; None if unreadable."""
    try:
        with open(os.path.join(proc_root, str(pid), "stat"), "rb") as f:
            stat = f.read(4096)
        # The name (field 2) is in parentheses and may hold anything, ')' and spaces included:
        # the fields after the last ')' are counted from field 3.
        ticks = int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None
    boot_minus_mono = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
    return ticks * _TICK_NS - boot_minus_mono


def pid_reused(pid: int, exec_id: str, *, proc_root: str = "/proc") -> bool:
    """True when ``pid`` now names a process that started after the one ``exec_id`` names."""
    start = exec_start_ns(exec_id, pid)
    if start is None:
        return False
    now = started_mono_ns(pid, proc_root=proc_root)
    return now is not None and now > start
