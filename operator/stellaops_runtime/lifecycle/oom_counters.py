"""Where a running container's OOM-kill counter file is, on cgroup v2 and in the v1 memory hierarchy.

The OOM watch (oom_watch.py) holds that file open while the container runs.
On cgroup v2 it is the container's own ``memory.events``; on a cgroup v1 (or
hybrid) host the memory controller has its own hierarchy, found from the
process's ``/proc/<pid>/cgroup`` line for ``memory`` and the v1 mounts in
``mountinfo``, and the file is ``memory.oom_control``. Only a cgroup whose
path names the container is taken: a shared one counts its neighbours' kills.
Pure reads of ``/proc``; nothing is opened for long here.
"""

from __future__ import annotations

import os
from pathlib import Path

from stellaops_runtime.lifecycle.cgroups import CgroupMount, directory_of


def v1_memory_mounts(mountinfo: str) -> list[CgroupMount]:
    """The cgroup v1 mounts holding the memory controller, in a ``mountinfo`` text."""
    out = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        memory = len(rest) >= 3 and rest[0] == "cgroup" and "memory" in rest[2].split(",")
        if sep and len(fields) >= 5 and memory:
            out.append(CgroupMount(mount_point=fields[4], root=fields[3]))
    return out


def v1_memory_path(proc_cgroup: str) -> str | None:
    """The v1 memory cgroup path in a ``/proc/<pid>/cgroup`` text, or None."""
    for line in proc_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, sep, path = rest.partition(":")
        if sep and hierarchy != "0" and "memory" in controllers.split(",") and path.startswith("/"):
            return path
    return None


class CounterFinder:
    """Finds counter files under one ``/proc``; the v1 mounts are read once and kept."""

    def __init__(self, proc: Path) -> None:
        self.proc = proc
        self._v1: list[CgroupMount] | None = None

    def counter_file(self, pid: int, v2_directory: str | None, container_id: str) -> tuple[str, bool] | None:
        """(path of the OOM counter file, whether v1) of process ``pid``'s own memory cgroup, or None.

        Only a cgroup whose path names ``container_id`` (a shared one counts its neighbours')."""
        if v2_directory and container_id in v2_directory:
            events = os.path.join(v2_directory, "memory.events")
            if os.path.exists(events):
                return events, False
        try:
            text = (self.proc / str(pid) / "cgroup").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        path = v1_memory_path(text)
        if path is None or container_id not in path or "/../" in path + "/" or "\x00" in path:
            return None
        if self._v1 is None:
            try:
                info = (self.proc / "self" / "mountinfo").read_text(encoding="utf-8", errors="replace")
            except OSError:
                info = ""
            self._v1 = v1_memory_mounts(info)
        directory = directory_of(path, self._v1)
        if directory is None:
            return None
        control = os.path.join(directory, "memory.oom_control")
        return (control, True) if os.path.exists(control) else None


def v1_own_failures(directory: str) -> int:
    """How often a charge failed at the v1 cgroup's own limits (``memory.failcnt`` plus
    ``memory.memsw.failcnt``), or -1 when unreadable. An OOM of this cgroup's own limit follows a
    failed charge here; v1 also notifies every cgroup below one out of memory, whose own counts stay."""
    total = 0
    for name in ("memory.failcnt", "memory.memsw.failcnt"):
        try:
            with open(os.path.join(directory, name), "rb") as f:
                total += int(f.read(64).strip() or b"0")
        except FileNotFoundError:
            if name == "memory.failcnt":
                return -1
        except (OSError, ValueError):
            return -1
    return total
