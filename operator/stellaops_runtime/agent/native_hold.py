"""Native records of a cgroup the container lookup does not know yet wait a moment for it.

The agent's BCC probes name a process's container by its cgroup id only, and the lifecycle
observer learns a new container's cgroup from the runtime's events. A container's first records
reach the decoder within milliseconds, before the runtime has even published the task's start
(runc starts the process first, and the observer needs two calls before it replaces the lookup):
decoded at once, every exec of a short-lived container (a Job, an init container) was counted
under the node's host bucket, never under its image. So a record whose cgroup the current lookup
does not know is held, undecoded (its /proc facts were read when it was polled), until a newer
lookup names the cgroup or ``HOLD_NS`` passed; then it is decoded with whatever the lookup says
(host, when still nothing). A cgroup still unknown after the hold is remembered as the host's
(cgroup ids are never reused), so its later records skip the wait; the lookup is always asked
first, so a container the observer learns late is still named.

Bounded: at most ``MAX_HELD`` records wait (past that a record is decoded at once) and
``MAX_HOST_CGROUPS`` host cgroups are remembered. Pure bookkeeping: the pipeline decodes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

HOLD_NS = 2_000_000_000  # how long a record waits for the lookup to name its cgroup
MAX_HELD = 20_000
MAX_HOST_CGROUPS = 4_096

Item = tuple[bytes, int]  # (raw record, arrival time in monotonic ns)


class NativeHold:
    """Which native records to decode now and which to hold (see the module docstring)."""

    def __init__(self, *, hold_ns: int = HOLD_NS, max_held: int = MAX_HELD) -> None:
        self.hold_ns = hold_ns
        self.max_held = max_held
        self._held: deque[tuple[Item, int]] = deque()  # (item, cgroup id), oldest first
        self._host: dict[int, None] = {}  # cgroups known to stay unknown: insertion-ordered set
        self.held_total = 0  # records that waited
        self.named_late = 0  # of them, named by a newer lookup
        self.overflow = 0  # decoded at once because MAX_HELD were waiting
        self._last_lookup: object = None  # the lookup the held records were last checked against

    def __len__(self) -> int:
        return len(self._held)

    def sort(
        self, items: list[Item], cgroup_of: Callable[[bytes], int], known: Callable[[int], bool]
    ) -> list[Item]:
        """The records to decode now, oldest held first; the rest wait."""
        out: list[Item] = []
        for item in items:
            cg = cgroup_of(item[0])
            if not cg or cg in self._host or known(cg):
                out.append(item)
            elif len(self._held) >= self.max_held:
                self.overflow += 1
                out.append(item)
            else:
                self._held.append((item, cg))
                self.held_total += 1
        return out

    def release(
        self, now_ns: int, known: Callable[[int], bool], *, everything: bool = False, lookup: object = None
    ) -> list[Item]:
        """Held records whose cgroup the lookup now names, or whose wait is over (all: ``everything``).

        ``lookup``: the container lookup ``known`` asks. A lookup is a snapshot replaced whole, so
        while it is the one of the last call and the oldest wait is not over, nothing can be
        released and the held records are not looked at (this runs for every native batch).
        """
        if not self._held:
            return []
        if (
            not everything
            and lookup is not None
            and lookup is self._last_lookup
            and now_ns - self._held[0][0][1] < self.hold_ns
        ):
            return []
        self._last_lookup = lookup
        out: list[Item] = []
        keep: deque[tuple[Item, int]] = deque()
        for item, cg in self._held:
            if known(cg):
                self.named_late += 1
                out.append(item)
            elif everything or now_ns - item[1] >= self.hold_ns:
                self._remember_host(cg)
                out.append(item)
            else:
                keep.append((item, cg))
        self._held = keep
        return out

    def _remember_host(self, cg: int) -> None:
        if cg in self._host:
            return
        if len(self._host) >= MAX_HOST_CGROUPS:
            del self._host[next(iter(self._host))]
        self._host[cg] = None
