"""Where a probe target's file is, and what is there now: the looks of native/follow.py.

A target named by a path is looked at by that path. A target named by PURL
(native/purl_targets.py) is attached through a descriptor the wiring holds
(``/proc/self/fd/N``), which always names the file opened then; its file in
the container is ``module`` inside ``root`` (``/proc/<pid>/root``), looked at
confined to that root (``rootopen``: a container that swaps a directory for a
symlink cannot make the agent look at, or probe, a host file).
"""

from __future__ import annotations

import os
import stat

from stellaops_runtime.canonical.rootopen import open_in_root
from stellaops_runtime.native.config import UprobeTarget, UsdtTarget

Ident = tuple[int, int] | None  # (st_dev, st_ino) of a regular file; None: no regular file there
Target = UprobeTarget | UsdtTarget
HELD = "/proc/self/fd/"


def identity(path: str) -> Ident:
    """(device, inode) of the regular file at ``path``, or None (missing, unreadable, not regular)."""
    try:
        st = os.stat(path)
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
            st = os.stat(t.binary)
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
