"""From a container's pid to its cgroup v2 path and cgroup id.

eBPF programs (ours, and Tetragon's ``cgroup_id``) name a process's container
by the id of its cgroup v2 directory, which is that directory's inode number.
So the registry needs, per container, the inode of the directory its init
process lives in: ``/proc/<pid>/cgroup`` gives the path (the ``0::`` line),
``/proc/self/mountinfo`` gives where the cgroup2 hierarchy is mounted (
``/sys/fs/cgroup`` on a pure v2 host, ``/sys/fs/cgroup/unified`` on a hybrid
one), and a ``stat`` gives the inode. The parsing is pure; ``resolve`` does
the reads and returns ``None`` rather than raising when a process is gone or
the host has no cgroup2 mount.

``started`` tells when the process now holding a pid started (wall clock),
so that a caller can tell a pid's new holder from the process a runtime
event named (a pid is reused once its process is gone). ``resolve_spec``
finds the cgroup an OCI spec's ``linux.cgroupsPath`` names, for a container
whose init is gone while its cgroup directory is still there.

``oom_kills`` reads a cgroup's ``memory.events`` ``oom_kill`` count: the
kernel's own record that its OOM killer killed a process there. containerd
publishes ``/tasks/oom`` from that same counter, but its runc shim can miss
it when the task exits first (seen here: no event at all within 30 s), so an
exit is checked against the counter while the directory still exists.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class CgroupMount:
    """A cgroup2 mount: ``root`` is the hierarchy path mounted at ``mount_point``."""

    mount_point: str
    root: str


@dataclass(frozen=True, slots=True)
class CgroupInfo:
    path: str  # the cgroup v2 path, as /proc/<pid>/cgroup says it ("/k8s.io/<id>")
    cgroup_id: int  # inode of its directory; 0 when the directory could not be found


def unified_path(proc_cgroup: str) -> str | None:
    """The cgroup v2 path in a ``/proc/<pid>/cgroup`` text (the ``0::<path>`` line), or ``None``."""
    for line in proc_cgroup.splitlines():
        hierarchy, sep, rest = line.partition(":")
        if not sep:
            continue
        controllers, sep, path = rest.partition(":")
        if sep and hierarchy == "0" and controllers == "" and path.startswith("/"):
            return path
    return None


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo``."""
    if "\\" not in field:
        return field
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def cgroup2_mounts(mountinfo: str) -> list[CgroupMount]:
    """Every cgroup2 mount in a ``/proc/<pid>/mountinfo`` text, in file order."""
    mounts = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        fstype = right.split(" ", 1)[0]
        if fstype != "cgroup2" or len(fields) < 5:
            continue
        mounts.append(CgroupMount(mount_point=_unescape(fields[4]), root=_unescape(fields[3])))
    return mounts


def directory_of(path: str, mounts: list[CgroupMount]) -> str | None:
    """Where cgroup ``path`` is on the file system, through the first mount whose root contains it."""
    for m in mounts:
        root = m.root.rstrip("/")
        if root and path != root and not path.startswith(root + "/"):
            continue
        rel = path[len(root) :].lstrip("/")
        return os.path.join(m.mount_point, rel) if rel else m.mount_point
    return None


def spec_cgroup_path(cgroups_path: str) -> str | None:
    """The cgroup v2 path an OCI ``linux.cgroupsPath`` names (see ``CgroupResolver.resolve_spec``)."""
    if cgroups_path.startswith("/"):
        return cgroups_path if "\x00" not in cgroups_path and "/../" not in cgroups_path + "/" else None
    parts = cgroups_path.split(":")
    if len(parts) != 3 or not all(parts) or "/" in cgroups_path or not parts[0].endswith(".slice"):
        return None
    slice_name, prefix, name = parts
    pieces = slice_name.removesuffix(".slice").split("-")
    if slice_name == "-.slice" or "" in pieces:
        return None
    levels, acc = [], ""
    for piece in pieces:
        acc = f"{acc}-{piece}" if acc else piece
        levels.append(acc + ".slice")
    return "/" + "/".join(levels) + f"/{prefix}-{name}.scope"


def oom_kill_count(memory_events: str) -> int | None:
    """The ``oom_kill`` count in a ``memory.events`` text; ``None`` when it holds none."""
    for line in memory_events.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class CgroupResolver:
    """Resolves pids to cgroup v2 paths and ids on this host (``proc`` may point at a host /proc)."""

    def __init__(self, proc: str = "/proc") -> None:
        self.proc = Path(proc)
        self._mounts: list[CgroupMount] | None = None

    def mounts(self) -> list[CgroupMount]:
        if self._mounts is None:
            try:
                text = (self.proc / "self" / "mountinfo").read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            self._mounts = cgroup2_mounts(text)
        return self._mounts

    def resolve(self, pid: int) -> CgroupInfo | None:
        """The cgroup of process ``pid``; ``None`` when the process (or cgroup v2) is not there."""
        if pid <= 0:
            return None
        try:
            text = (self.proc / str(pid) / "cgroup").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        path = unified_path(text)
        if path is None:
            return None
        directory = directory_of(path, self.mounts())
        if directory is None:
            return CgroupInfo(path=path, cgroup_id=0)
        try:
            return CgroupInfo(path=path, cgroup_id=os.stat(directory).st_ino)
        except OSError:
            return CgroupInfo(path=path, cgroup_id=0)

    def resolve_spec(self, cgroups_path: str) -> CgroupInfo | None:
        """The cgroup an OCI spec's ``linux.cgroupsPath`` names, while its directory exists.

        Two forms: a path (cgroupfs driver, ``/k8s.io/<id>``) and systemd's
        ``slice:prefix:name`` (``kubepods-besteffort-pod<uid>.slice:cri-containerd:<id>``:
        the scope ``prefix-name.scope`` under the slice, each ``-`` of a slice's name
        one level deeper). None for anything else, or when the directory is gone."""
        path = spec_cgroup_path(cgroups_path)
        directory = directory_of(path, self.mounts()) if path else None
        if path is None or directory is None:
            return None
        try:
            st = os.stat(directory)
        except OSError:
            return None
        return CgroupInfo(path=path, cgroup_id=st.st_ino)

    def started(self, pid: int) -> float | None:
        """When process ``pid`` started (Unix time, at most a clock tick early); None if unknown.

        ``/proc/<pid>/stat`` gives the start in clock ticks since boot (boot time,
        counting suspends), cut down to a tick; it is put on the wall clock with
        the time elapsed since then."""
        try:
            stat = (self.proc / str(pid) / "stat").read_bytes()
            ticks = int(stat[stat.rindex(b")") + 2 :].split()[19])
        except (OSError, ValueError, IndexError):
            return None
        hz = os.sysconf("SC_CLK_TCK") or 100
        return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / hz)

    def oom_kills(self, path: str) -> int | None:
        """How many processes the OOM killer killed in cgroup ``path`` (its ``memory.events``).

        None when the directory is gone, has no memory controller, or the path is not one."""
        if not path.startswith("/") or "\x00" in path or "/../" in path + "/":
            return None
        directory = directory_of(path, self.mounts())
        if directory is None:
            return None
        try:
            text = Path(directory, "memory.events").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        return oom_kill_count(text)
