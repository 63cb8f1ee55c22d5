"""Keep each running container's OOM-kill count while its cgroup exists, for the exit to read.

Docker and the CRI runtimes delete a container's task, and with it its
cgroup, before they announce its exit; and they say "OOM-killed" only if
containerd's shim reported the OOM, which it can miss when the task exits
at once (containerd#12714). The kernel's own count of OOM kills in the
container's cgroup (``memory.events`` ``oom_kill`` on cgroup v2,
``memory.oom_control`` ``oom_kill`` in the v1 memory hierarchy) is then
gone by the time the exit is handled. So, from the moment the observer
resolves a running container's own cgroup (its path names the container),
that file is held open and read again whenever the kernel says it changed:

- cgroup v2: ``memory.events`` raises ``POLLPRI`` on every change (the
  kernel's documented file-modified event), watched through one ``epoll``;
- cgroup v1: an ``eventfd`` registered in ``cgroup.event_control`` for
  ``memory.oom_control`` fires when the cgroup or an ancestor enters OOM (just
  before the kill is counted) and when the cgroup is removed; the count is read
  at once and again a little later (``REREAD_SECONDS``) while the cgroup lives.

The exit (``final``) reads once more through the open file and answers the
highest count seen: the kills counted while this task's cgroup existed.
Reading by file descriptor, not path, a restarted container's new cgroup at
the same path is never taken for the old one's. A container that dies of OOM
within moments of its start may be gone before the observer resolves it: the
parent directory of every watched cgroup is watched for new siblings
(cgroup_births.py), whose counters are opened at their creation ("early"
watches, keyed by the container id their name holds, at most ``MAX_EARLY``)
and answer that container's exit. What this cannot see: such a container whose
parent held no watched cgroup then, or was not watched (the limits, counted in
``counts``: parents refused, early watches dropped for newer ones); the
runtime's own report still counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import resource
import select
from pathlib import Path
from typing import NamedTuple

from stellaops_runtime.lifecycle.cgroup_births import Births
from stellaops_runtime.lifecycle.cgroups import oom_kill_count
from stellaops_runtime.lifecycle.oom_counters import CounterFinder, v1_own_failures
from stellaops_runtime.lifecycle.oom_state import WatchState, drain, exit_count, judge_v1, unsure

log = logging.getLogger(__name__)

# v1 notifies as an OOM starts, before the kill is counted: read again after each of these delays
REREAD_SECONDS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
MAX_WATCHED = 8192  # open watches at most (two descriptors each at most) ...
FD_SHARE = 4  # ... and at most a quarter of the process's file descriptor limit
MAX_EARLY = 256  # cgroups opened at their creation, before the runtime named their container
_EARLY = "\x00early"  # the namespace of such a watch's key (with the container id the directory names)
_BIRTHS = ("\x00births", "")
_ID = re.compile(r"[0-9a-f]{64}")


def watch_limit() -> int:
    """How many watches may be open: ``MAX_WATCHED``, less under a low ``RLIMIT_NOFILE``."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_WATCHED
    return min(MAX_WATCHED, max(0, soft // FD_SHARE // 2))


class OomCounts(NamedTuple):
    """What ``OomWatch.counts`` answers (lifecycle/metrics.py turns it into families)."""

    notifications: int = 0  # changes of watched counters the kernel announced
    unwatched: int = 0  # containers not watched: the watch limit reached
    overflows: int = 0  # times the kernel dropped new-cgroup notifications
    early_evicted: int = 0  # cgroups opened at their creation, dropped for newer ones (MAX_EARLY)
    parents_unwatched: int = 0  # containers whose parent directory was not watched for new siblings
    unread: int = 0  # new cgroups removed before their counter was opened (OOM kill not known)


class OomWatch:
    """The OOM-kill counts of watched containers' cgroups, kept current while the cgroups exist."""

    def __init__(self, proc: str = "/proc") -> None:
        self.proc = Path(proc)
        self._watches: dict[tuple[str, str], WatchState] = {}
        self._by_fd: dict[int, tuple[str, str]] = {}
        self._epoll: select.epoll | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finder = CounterFinder(self.proc)
        self.notifications = 0  # changes the kernel announced
        self.full = 0  # containers not watched: the limit reached (logged once)
        self.limit = watch_limit()
        self._births: Births | None = None
        self._overflows_closed = 0  # overflows counted by closed Births instances
        self._refused_closed = 0  # parents refused by closed Births instances, or with no inotify at all
        self.early_evicted = 0  # early watches dropped for a newer one (MAX_EARLY reached)
        self._early: list[str] = []  # container ids of the early watches, oldest first
        self._missed: dict[str, None] = {}  # container ids whose new cgroup was gone before opened
        self.unread = 0  # such cgroups, and exits ``unsure`` (their OOM kill, if any, is not known)

    def counter_file(self, pid: int, v2_directory: str | None, container_id: str) -> tuple[str, bool] | None:
        """(path of the OOM counter file, whether v1) of process ``pid``'s own memory cgroup, or None
        (oom_counters.py)."""
        return self._finder.counter_file(pid, v2_directory, container_id)

    # -- watching ----------------------------------------------------------------------

    def watch(self, key: tuple[str, str], cgroup_id: int, counter: str, v1: bool) -> None:
        """Hold ``counter`` open for ``key`` (a new cgroup id starts over) and read it now; and watch
        its parent directory for new sibling cgroups (cgroup_births.py)."""
        old = self._watches.get(key)
        if old is not None and old.cgroup_id == cgroup_id and not old.done:
            return
        self.forget(key, early=False)
        early = self._watches.get((_EARLY, key[1]))
        if early is not None and early.directory == os.path.dirname(counter):
            self._adopt(key)  # opened when the runtime created the cgroup
            early.cgroup_id = cgroup_id
        elif self._open(key, cgroup_id, counter, v1) is None:
            return
        self._watch_parent(os.path.dirname(os.path.dirname(counter)), v1)

    def _open(self, key: tuple[str, str], cgroup_id: int, counter: str, v1: bool) -> WatchState | None:
        if len(self) >= self.limit:
            if not self.full:
                log.warning(
                    "%d containers' OOM counters are watched, the most allowed: an OOM kill the runtime "
                    "misses in another container is not seen", self.limit,
                )  # fmt: skip
            self.full += 1
            return None
        try:
            fd = os.open(counter, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as e:
            log.debug("OOM counter %s not opened: %s", counter, e)
            return None
        w = WatchState(cgroup_id=cgroup_id, fd=fd, directory=os.path.dirname(counter))
        self._watches[key] = w
        self._read(key)  # also arms v2's POLLPRI
        # No notifications for a plain file (tests) or outside an event loop: read at the exit only.
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            if v1:
                w.failures = v1_own_failures(w.directory)
                w.event_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                control = os.path.join(os.path.dirname(counter), "cgroup.event_control")
                with open(control, "w") as f:
                    f.write(f"{w.event_fd} {fd}")
                self._register(w.event_fd, select.EPOLLIN, key)
            else:
                self._register(fd, select.EPOLLPRI, key)
        return w

    def _adopt(self, key: tuple[str, str]) -> None:
        """The early watch of ``key``'s container becomes ``key``'s."""
        w = self._watches.pop((_EARLY, key[1]))
        self._early.remove(key[1])
        self._watches[key] = w
        for fd in (w.fd, w.event_fd):
            if fd >= 0 and fd in self._by_fd:
                self._by_fd[fd] = key

    def _watch_parent(self, parent: str, v1: bool) -> None:
        if self._births is None:
            try:
                self._births = Births()
                self._register(self._births.fd, select.EPOLLIN, _BIRTHS)
            except (OSError, RuntimeError, AttributeError) as e:  # no inotify, or no event loop
                if self._births is not None:
                    self._births.close()
                self._births = None
                if not isinstance(e, OSError):  # outside an event loop (tests): read at the exit only
                    log.debug("new cgroups are not watched: %s", e)
                    return
                if not self._refused_closed:  # fs.inotify.max_user_instances reached, say
                    log.warning(
                        "new cgroups are not watched (%s): a container OOM-killed within moments of its "
                        "start has its kill counted only if the runtime reports it", e,
                    )  # fmt: skip
                self._refused_closed += 1
                return
        self._births.add(parent, v1)

    def _born(self) -> None:
        """Open the counter of each new cgroup named after a container (an early watch)."""
        assert self._births is not None
        for directory, v1 in self._births.read():
            m = _ID.search(os.path.basename(directory))
            if m is None:
                continue
            cid = m.group(0)
            self.forget((_EARLY, cid))
            if len(self._early) >= MAX_EARLY:
                if not self.early_evicted:
                    log.warning(
                        "%d new cgroups are held that no runtime event has named yet, the most allowed: "
                        "the oldest is dropped, and its container's OOM kill is counted only if the "
                        "runtime reports it (lifecycle_oom_early_evicted_total)", MAX_EARLY,
                    )  # fmt: skip
                self.early_evicted += 1
                self.forget((_EARLY, self._early[0]))
            counter = os.path.join(directory, "memory.oom_control" if v1 else "memory.events")
            self._missed.pop(cid, None)
            if self._open((_EARLY, cid), 0, counter, v1) is not None:
                self._early.append(cid)
            elif not os.path.isdir(directory):  # created and removed before the loop got to it
                self.unread += 1
                self._missed[cid] = None
                if len(self._missed) > MAX_EARLY:
                    del self._missed[next(iter(self._missed))]

    def final(self, key: tuple[str, str]) -> int | None:
        """The kills counted in ``key``'s watched cgroup (read once more if it is there), then stop
        watching it (the count stays for a second exit event); None when it was never watched.
        On cgroup v1 an OOM that began in the cgroup while it lived counts as one kill even if the
        kernel had not counted it yet when the cgroup was removed.

        A container not watched by its key (or whose watch an exit already read) has the count of
        its early watch, if one was opened when its cgroup was created (it died before the
        observer resolved it). New cgroups the kernel announced and the loop has not handled yet
        are handled first: an exit can be handled before its cgroup's birth (``missed``)."""
        if self._births is not None:
            self._born()
        known = self._watches.get(key)
        if (known is None or known.done) and (_EARLY, key[1]) in self._watches:
            self.forget(key, early=False)  # an exit already read: this is a later run's
            self._adopt(key)
        w = self._watches.get(key)
        if w is None:
            return None
        self._read(key)
        self._close(w)
        if not w.done and unsure(w):
            self.unread += 1  # an ancestor's OOM, its victim not counted before the cgroup went
        w.done = True
        return exit_count(w)

    def missed(self, key: tuple[str, str]) -> bool:
        """Whether ``key``'s container had a cgroup created under a watched parent that was gone
        before its counter could be opened: whether it was OOM-killed is not known (``unread``)."""
        return key[1] in self._missed

    def unsure(self, key: tuple[str, str]) -> bool:
        """Whether an OOM of an ancestor cgroup (v1: a pod's limit) was notified to ``key``'s and
        its cgroup went before the victim's kill was counted or a second passed: the victim may have
        been this container's process or a sibling's (not known)."""
        w = self._watches.get(key)
        return w is not None and unsure(w)

    def seen(self, key: tuple[str, str]) -> int | None:
        """The highest count read so far for ``key`` (None when not watched), without reading."""
        w = self._watches.get(key)
        return None if w is None else w.kills

    def forget(self, key: tuple[str, str], *, early: bool = True) -> None:
        """Stop watching ``key`` (and, with ``early``, its container's early watch)."""
        w = self._watches.pop(key, None)
        if w is not None:
            self._close(w)
        if key[0] == _EARLY and key[1] in self._early:
            self._early.remove(key[1])
        elif early and key[0] != _EARLY:
            self._missed.pop(key[1], None)
            self.forget((_EARLY, key[1]))

    def retain(self, keys: set[tuple[str, str]]) -> None:
        """Forget every watch whose container is not among ``keys`` (a registry rebuild; the early
        watches stay, bounded by ``MAX_EARLY``)."""
        for key in [k for k in self._watches if k not in keys and k[0] != _EARLY]:
            self.forget(key, early=False)

    def close(self) -> None:
        for key in list(self._watches):
            self.forget(key)
        if self._births is not None:
            self._by_fd.pop(self._births.fd, None)
            if self._epoll is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._epoll.unregister(self._births.fd)
            self._overflows_closed += self._births.overflows
            self._refused_closed += self._births.refused
            self._births.close()
            self._births = None
        if self._epoll is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
            self._epoll, self._loop = None, None

    def __len__(self) -> int:
        return sum(1 for w in self._watches.values() if w.fd >= 0)

    def counts(self) -> OomCounts:
        """The watch's losses and notifications since the start: plain ints, safe to read from the
        metrics thread (a closed new-cgroup watcher's counts carried over: they never go down)."""
        births = self._births
        overflows = self._overflows_closed + (births.overflows if births is not None else 0)
        refused = self._refused_closed + (births.refused if births is not None else 0)
        return OomCounts(self.notifications, self.full, overflows, self.early_evicted, refused, self.unread)

    # -- inside --------------------------------------------------------------------------

    def _register(self, fd: int, mask: int, key: tuple[str, str]) -> None:
        loop = asyncio.get_running_loop()  # RuntimeError outside a loop: no notifications
        if self._epoll is None:
            self._epoll = select.epoll()
        if loop is not self._loop:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._epoll.fileno())
            loop.add_reader(self._epoll.fileno(), self._ready)
            self._loop = loop
        self._epoll.register(fd, mask)
        self._by_fd[fd] = key

    def _ready(self) -> None:
        if self._epoll is None:
            return
        for fd, _mask in self._epoll.poll(0):
            key = self._by_fd.get(fd)
            if key == _BIRTHS:
                self._born()
                continue
            w = self._watches.get(key) if key is not None else None
            if key is None or w is None:
                with contextlib.suppress(OSError, ValueError):
                    self._epoll.unregister(fd)
                continue
            self.notifications += 1
            v1 = fd == w.event_fd
            if v1:
                drain(w)
            if not self._read(key) or not v1:
                continue
            # A v1 notification that found the cgroup alive: an OOM began in it or an ancestor
            # (oom_state.judge_v1); the kill is counted a little later (the rereads).
            judge_v1(w, v1_own_failures(w.directory))
            if self._loop is not None:
                for delay in REREAD_SECONDS:
                    self._loop.call_later(delay, self._reread, key, w, delay == REREAD_SECONDS[-1])

    def _reread(self, key: tuple[str, str], w: WatchState, last: bool) -> None:
        if self._watches.get(key) is w and w.fd >= 0 and self._read(key) and last:
            w.ancestor = False  # alive long after: the kernel has counted its victim by now

    def _read(self, key: tuple[str, str]) -> bool:
        """Read ``key``'s counter into its watch; False (and the counter closed) once the cgroup is
        gone. v1's eventfd stays open until the exit: the removal's signal may still come."""
        w = self._watches[key]
        if w.fd < 0:
            return False
        try:
            text = os.pread(w.fd, 4096, 0).decode("utf-8", "replace")
        except OSError as e:
            if e.errno not in (errno.ENODEV, errno.ENOENT):
                log.debug("OOM counter of %s unreadable: %s", key[1][:12], e)
            self._close(w, ("fd",))
            return False
        kills = oom_kill_count(text)
        if kills is not None and kills > w.kills:
            w.kills = kills
        return True

    def _close(self, w: WatchState, names: tuple[str, ...] = ("event_fd", "fd")) -> None:
        for name in names:
            fd = getattr(w, name)
            if fd < 0:
                continue
            if name == "event_fd":
                drain(w)
            if self._by_fd.pop(fd, None) is not None and self._epoll is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._epoll.unregister(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
            setattr(w, name, -1)
