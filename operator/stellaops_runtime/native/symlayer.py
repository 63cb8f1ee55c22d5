"""Did the container write a debug file found under its root, or is it the image's? (native/symdebug.py)

Why this module exists: a uprobe sits on the image layer's file, shared by
every container of the image on the node, so a debug file the container
wrote (its overlay's writable upper layer, or a volume mounted into it) must
not place it: native/symstart.py keeps such an address off the middle of an
instruction, but cannot tell one function's start from another's. A debug
file in the image's own (lower, read-only) layers is the image's word, as its
binary is, and is read as before (a ``-dbgsym`` package installed in the image).

How it is told: the debug file's path is resolved inside the root as the
container sees it (its symlinks, at most 40); the mount holding it is read
from ``/proc/<pid>/mountinfo`` of the container's process (for a directory
used as a root, this process's own mountinfo). On the root's overlay mount,
the file is the container's when its overlay's upper directory holds
anything at that path (the file, or a whiteout of a deleted one), and the
image's only when a lower directory holds it and the upper one does not (a
file gone from both since it was read is refused too). A file on another
mount inside the root (a volume) is the container's. What cannot be told
(a root that is not overlayfs, layer paths given relative or escaped in the
mount options or not visible from here, an unreadable mountinfo) is said
as such by ''; the caller then relies on the function-start check alone.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat

_PROC_ROOT = re.compile(r"^/proc/([0-9]+)/root/?$")
_MAX_LINKS = 40
_ESCAPE = re.compile(r"\\([0-7]{3})")


def container_wrote(root: str, path: str, *, node_root: str = "/proc/1/root") -> str:
    """Why the file at ``path`` under the container root ``root`` is the container's own (a phrase for
    the failed reason), or '' when it is in the image's layers or that cannot be told.

    ``node_root``: where the mount's layer directories (paths in the node's view) are seen from here,
    for a ``/proc/<pid>/root`` root."""
    m = _PROC_ROOT.match(root)
    if m is not None:
        info, prefix, base = f"/proc/{m.group(1)}/mountinfo", "", node_root.rstrip("/")
    else:
        info, prefix, base = "/proc/self/mountinfo", os.path.realpath(root).rstrip("/"), ""
    inside = _resolve(root, path)
    if inside is None:
        return ""
    full = (prefix + inside) if inside != "/" else (prefix or "/")
    mounts = _mounts(info)
    if mounts is None:
        return ""
    holding = max((mt for mt in mounts if _under(full, mt[0])), key=lambda mt: len(mt[0]), default=None)
    if holding is None:
        return ""
    point, fstype, opts = holding
    if len(point.rstrip("/")) > len(prefix):  # a mount below the root: a volume of the container's
        return f"on a {fstype} mount at {point[len(prefix) :] or '/'} in the container, not in its image"
    if point.rstrip("/") != prefix or fstype != "overlay":
        return ""  # the root is not an overlay mount of its own: its layers cannot be told apart
    upper, lowers = _layers(opts)
    dirs = [upper, *lowers]
    if not upper or not lowers or any(not d.startswith("/") or "\\" in d for d in dirs):
        return ""
    if not os.path.isdir(base + upper) or not any(os.path.isdir(base + low) for low in lowers):
        return ""  # the layers are not visible from here (an agent without the node's root)
    rel = posixpath.relpath(full, point)
    if _exists(base + upper, rel):
        return "written in the container (its overlay's upper layer)"
    if not any(_exists(base + low, rel) for low in lowers):
        return "no longer in the container's image layers nor its upper layer"
    return ""


def _exists(layer: str, rel: str) -> bool:
    try:
        os.lstat(posixpath.join(layer, rel))
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        return False
    except OSError:
        return True  # there, but unreadable: not the image's for certain
    return True


def _under(path: str, point: str) -> bool:
    return point == "/" or path == point or path.startswith(point.rstrip("/") + "/")


def _mounts(info: str) -> list[tuple[str, str, str]] | None:
    """(mount point, filesystem type, super options) of each line of a mountinfo file."""
    try:
        with open(info, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    out = []
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if sep and len(fields) >= 5 and len(rest) >= 3:
            out.append((_unescape(fields[4]), rest[0], rest[2]))
    return out


def _layers(opts: str) -> tuple[str, list[str]]:
    """(upperdir, lowerdirs) of an overlay mount's options; lowerdirs in order (``lowerdir=a:b`` and
    the ``lowerdir+=`` form of newer kernels)."""
    upper, lowers = "", []
    for o in opts.split(","):
        if o.startswith("upperdir="):
            upper = _unescape(o.removeprefix("upperdir="))
        elif o.startswith("lowerdir+="):
            lowers.append(_unescape(o.removeprefix("lowerdir+=")))
        elif o.startswith("lowerdir="):
            lowers += [_unescape(x) for x in o.removeprefix("lowerdir=").split(":") if x]
    return upper, lowers


def _unescape(s: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), s)


def _resolve(root: str, path: str) -> str | None:
    """``path`` inside ``root`` with its symlinks resolved as the container sees them (an absolute
    target starts again at the root, ``..`` stops at it); None past 40 links or on an error."""
    todo = [c for c in path.split("/") if c]
    done: list[str] = []
    links = 0
    while todo:
        c = todo.pop(0)
        if c == ".":
            continue
        if c == "..":
            if done:
                done.pop()
            continue
        here = root.rstrip("/") + "/" + "/".join([*done, c])
        try:
            st = os.lstat(here)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_LINKS:
                return None
            try:
                target = os.readlink(here)
            except OSError:
                return None
            if target.startswith("/"):
                done = []
            todo = [x for x in target.split("/") if x] + todo
            continue
        done.append(c)
    return "/" + "/".join(done)
