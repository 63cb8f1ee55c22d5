"""One watched cgroup's OOM state, and how a cgroup v1 notification and an exit are judged.

Split from oom_watch.py, which holds the files open and reads them; the
judgement here is pure. On cgroup v1 the ``eventfd`` registered for
``memory.oom_control`` fires as an OOM begins and once as the cgroup is
removed; the removal's comes after the cgroup's files are gone, so a
notification whose read succeeds follows an OOM (containerd's own rule for
``/tasks/oom`` on v1), and so does an eventfd count above one (both came
while the loop was busy). The kernel counts the kill only after printing its
report, which can take longer than the runtime needs to remove the cgroup.
But v1 notifies every cgroup below the one out of memory too: an OOM of an
ancestor (a pod's limit, its containers unlimited) is this container's own
only when a charge failed at its own limits (``memory.failcnt`` grew), else
only if the victim is counted in its own ``oom_kill``; a cgroup gone before
that could tell leaves the answer unknown (``unsure``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass


@dataclass(slots=True)
class WatchState:
    """What the watch knows of one container's cgroup (descriptors, counts, v1 notifications)."""

    cgroup_id: int
    fd: int  # the counter file, -1 once closed
    directory: str = ""  # the cgroup's directory
    event_fd: int = -1  # v1's eventfd, -1 for v2 or once closed
    kills: int = 0  # the highest count read
    oom_began: bool = False  # v1: notified while the cgroup lived (an OOM began in it)
    signals: int = 0  # v1: the eventfd's count (the removal signals once; more is an OOM)
    explained: int = 0  # v1: signals of an ancestor's OOM (handled while the cgroup lived)
    failures: int = -1  # v1: its own limits' failed charges when last read (-1: not known)
    ancestor: bool = False  # v1: an ancestor's OOM notified, this cgroup's kill neither seen nor ruled out
    done: bool = False  # an exit read it


def drain(w: WatchState) -> None:
    """Add v1's eventfd count (signals since the last read) to ``w.signals``."""
    with contextlib.suppress(OSError):  # BlockingIOError: none
        w.signals += os.eventfd_read(w.event_fd)


def judge_v1(w: WatchState, failures: int) -> None:
    """A v1 notification that found the cgroup alive, its own limits' failed charges now
    ``failures`` (-1: not known): its own OOM when they grew, else an ancestor's."""
    if 0 <= failures <= w.failures:
        w.explained, w.ancestor = w.signals, not w.kills
    else:
        w.oom_began = True
    w.failures = failures


def exit_count(w: WatchState) -> int:
    """The kills the exit answers: the counted ones, or one for an OOM of its own that began
    (or a notification besides the removal's that no ancestor's OOM explains)."""
    return max(w.kills, 1) if w.oom_began or w.signals - w.explained > 1 else w.kills


def unsure(w: WatchState) -> bool:
    """An ancestor's OOM was notified and neither a kill nor an OOM of its own was seen before the
    cgroup went: the victim may have been this container's process or a sibling's."""
    return w.ancestor and not w.kills and not w.oom_began
