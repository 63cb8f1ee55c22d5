"""New cgroup directories under watched parents, as the kernel creates them (inotify).

A container that the kernel OOM-kills within moments of its start may be gone,
cgroup and all, before the observer handles its start event, so its OOM
counter was never opened (lifecycle/oom_watch.py). Its cgroup is created
earlier, though: the runtime makes it (runc ``create``) before the container's
own program runs. So the OOM watch also watches, with inotify, the parent
directory of each container cgroup it holds (``/sys/fs/cgroup/memory/docker``,
a pod's cgroup): a new directory there is a sibling container's cgroup, opened
at once, before the runtime announces anything. Python has no inotify of its
own; the three libc calls are made through ctypes. Pure reads otherwise: no
directory is created, changed or removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import struct

log = logging.getLogger(__name__)

IN_MOVED_TO = 0x80  # never in cgroupfs; a directory renamed in is born as well (tests)
IN_CREATE = 0x100
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000  # the watch is gone (its directory was removed)
IN_ONLYDIR = 0x01000000
MAX_PARENTS = 1024  # parent directories watched at most
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)


class Births:
    """One inotify instance reporting directories created in the parents added to it."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._add_watch = libc.inotify_add_watch
        self._add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        self._add_watch.restype = ctypes.c_int
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self.fd: int = fd
        self._dirs: dict[int, str] = {}
        self._parents: dict[str, bool] = {}  # parent directory -> its children count OOM as v1
        self.overflows = 0  # events the kernel dropped (its queue was full)
        self._said: set[str] = set()  # refusal causes already logged
        self.refused = 0  # parents not watched: MAX_PARENTS reached, or the kernel refused the watch

    def __len__(self) -> int:
        return len(self._parents)

    def add(self, directory: str, v1: bool) -> bool:
        """Report directories created in ``directory`` from now on (at most ``MAX_PARENTS`` at once;
        a removed directory's watch ends, and frees its place). False when it is not watched: the
        limit reached or the kernel refused (``fs.inotify.max_user_watches``), counted in ``refused``
        and said once per cause; a closed instance (the observer reconnecting) refuses silently."""
        if directory in self._parents:
            return True
        if self.fd < 0:
            return False
        if len(self._parents) >= MAX_PARENTS:
            self._refuse("limit", f"{MAX_PARENTS} parent directories are watched, the most allowed")
            return False
        wd = self._add_watch(self.fd, os.fsencode(directory), IN_CREATE | IN_MOVED_TO | IN_ONLYDIR)
        if wd < 0:
            err = ctypes.get_errno()
            if err == errno.ENOENT:  # the directory is gone (its containers too): nothing to miss
                return False
            self._refuse(f"errno {err}", f"the kernel refused to watch {directory}: {os.strerror(err)}")
            return False
        self._dirs[wd] = directory
        self._parents[directory] = v1
        return True

    def _refuse(self, cause: str, why: str) -> None:
        self.refused += 1
        if cause in self._said:
            return
        self._said.add(cause)
        log.warning(
            "new cgroups are not watched in a container's parent directory (%s): a sibling container "
            "OOM-killed within moments of its start has its kill counted only if the runtime reports it "
            "(lifecycle_oom_parents_unwatched_total counts each such container)",
            why,
        )

    def read(self) -> list[tuple[str, bool]]:
        """The directories created since the last read: (path, whether v1)."""
        out: list[tuple[str, bool]] = []
        while self.fd >= 0:
            try:
                data = os.read(self.fd, 65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            off = 0
            while off + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, off)
                raw = data[off + _EVENT.size : off + _EVENT.size + length].split(b"\0", 1)[0]
                off += _EVENT.size + length
                if mask & IN_Q_OVERFLOW:
                    self.overflows += 1
                    log.warning(
                        "the kernel dropped new-cgroup notifications (its inotify queue was full, "
                        "fs.inotify.max_queued_events): a container OOM-killed within moments of its start "
                        "may have its kill counted only if the runtime reports it (%d overflows so far)",
                        self.overflows,
                    )
                parent = self._dirs.get(wd)
                if mask & IN_IGNORED and parent is not None:  # a pod's cgroup removed: room for another
                    del self._dirs[wd]
                    self._parents.pop(parent, None)
                    continue
                if mask & (IN_CREATE | IN_MOVED_TO) and parent is not None and raw:
                    out.append((os.path.join(parent, os.fsdecode(raw)), self._parents[parent]))
        return out

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
