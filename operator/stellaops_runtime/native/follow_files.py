"""Where a probe target's file is, what is there now, and what a look found: native/follow.py's parts.

A target named by a path is looked at by that path. A target named by PURL
(native/purl_targets.py) is attached through a descriptor the wiring holds
(``/proc/self/fd/N``), which always names the file opened then; its file in
the container is ``module`` inside ``root`` (``/proc/<pid>/root``), looked at
confined to that root (``rootopen``: a container that swaps a directory for a
symlink cannot make the agent look at, or probe, a host file). So is a target
named by a container's path, ``/proc/<pid>/root/...`` (:func:`split_root`);
any other path is looked up from ``/``.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field

from stellaops_runtime.canonical.rootopen import open_in_root, stat_in_root
from stellaops_runtime.native.config import UprobeTarget, UsdtTarget

Ident = tuple[int, int] | None  # (st_dev, st_ino) of a regular file; None: no regular file there
Target = UprobeTarget | UsdtTarget
HELD = "/proc/self/fd/"


@dataclass(slots=True)
class Followed:
    """What one look found: targets now probed in another file too, those that could not be."""

    attached: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    unwatched: bool = False  # a process runs a target's file that is not probed (a gap to mark)
    former: int = 0  # deleted former files probed by this look
    since_load: bool = False  # a former file found after the load: unwatched since the load
    reload: bool = False  # a PURL target's file changed in its container: a reload resolves it anew


_PROC_ROOT = re.compile(r"^(/proc/(?:[0-9]+|self)/root)(/.*)?$")


def split_root(path: str) -> tuple[str, str]:
    """(root, path inside it) of a target's path: a container's ``/proc/<pid>/root/...`` is looked up
    inside that root (the kernel would follow an absolute symlink met there from the agent's root:
    the container could name the agent's or the node's files), any other path from ``/``."""
    m = _PROC_ROOT.match(path)
    return (m.group(1), m.group(2) or "/") if m else ("/", path)


def open_path(path: str) -> tuple[int, os.stat_result]:
    """A read-only descriptor of the regular file at a target's path, and its stat (rootopen rules)."""
    return open_in_root(*split_root(path))


def stat_path(path: str) -> os.stat_result:
    """``stat`` of the file at a target's path, resolved as :func:`open_path` resolves it."""
    root, inner = split_root(path)
    return stat_in_root(root, inner)


def identity(path: str) -> Ident:
    """(device, inode) of the regular file at ``path``, or None (missing, unreadable, not regular)."""
    try:
        st = stat_path(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def followable(t: Target) -> bool:
    """A target named by a path (not by a descriptor held elsewhere: native/purl_wiring.py's)."""
    return not t.binary.startswith(HELD)


def in_root(t: Target) -> bool:
    """A target held by descriptor whose file in a container's root is known (a PURL target)."""
    return isinstance(t, UprobeTarget) and t.binary.startswith(HELD) and bool(t.root and t.module)


def path_of(t: Target) -> str:
    """The path the target's file is found at by the agent (a PURL target's through its root)."""
    if in_root(t):
        assert isinstance(t, UprobeTarget)
        return os.path.join(t.root, t.module.lstrip("/"))
    return t.binary


def look(t: Target) -> tuple[Ident, tuple[int, int] | None]:
    """The identity of the file at the target's path now, and its (size, modification time)."""
    try:
        if in_root(t):
            assert isinstance(t, UprobeTarget)
            fd, st = open_in_root(t.root, t.module)
            os.close(fd)
        else:
            st = stat_path(t.binary)
    except (OSError, ValueError):
        return None, None
    if not stat.S_ISREG(st.st_mode):
        return None, None
    return (st.st_dev, st.st_ino), (st.st_size, st.st_mtime_ns)


def starttime(pid: int) -> str:
    """The process's start time (field 22 of its stat), '' when it is gone: a pid's owner."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    fields = text.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else ""


def lacks(why: str) -> bool:
    """A file refused because it has no such function or probe (its processes cannot call it)."""
    return why.startswith(("symbol ", "no USDT probe "))


def _unescape(text: str) -> str:
    """A mountinfo field with the kernel's octal escapes (``\\040`` for a space) undone."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def upper_identity(path: str, mountinfo: str = "/proc/self/mountinfo") -> Ident:
    """The real (device, inode) of ``path``'s file in the upper layer of the overlay mount holding
    it, or None (not on overlayfs, not in its upper layer, or the layer cannot be told).

    Overlayfs gives a file the same device and inode number when a write in the merged view copies
    it up from the lower layer; the uprobe sits on the real file (the lower one) and new processes
    map the upper one. The upper directory is read from the mount's options (``upperdir=``)."""
    try:
        real = os.path.realpath(path)
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except (OSError, ValueError):
        return None
    best, upper = "", ""
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if not sep or len(fields) < 5 or len(rest) < 3 or rest[0] != "overlay":
            continue
        point = _unescape(fields[4])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if not inside or len(point) <= len(best):
            continue
        opts = [o for o in rest[2].split(",") if o.startswith("upperdir=")]
        best, upper = point, _unescape(opts[0].removeprefix("upperdir=")) if len(opts) == 1 else ""
    if not upper or "\\" in upper:  # none, or a comma escaped in the option: cannot be told
        return None
    try:
        st = os.lstat(os.path.join(upper, os.path.relpath(real, best)))
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None
