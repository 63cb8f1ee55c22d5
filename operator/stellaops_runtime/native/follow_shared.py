"""A PURL target's file in each container that has it: another file there is a gap and a reload.

A PURL target (native/purl_targets.py) is attached through a descriptor of
the file the plan opened in a container's root; containers of one image share
their layers' files, so the plan probes such a file once, for all of them
(``UprobeTarget.root`` the first, ``shared`` the others). At every read of the
counters the file at its path is looked at in each of those roots (confined to
the root). An upgrade run inside any of them (a new file renamed over it, a
rewrite, or only a ``chmod``: on overlayfs each copies the file up into that
container's upper layer, with the same inode number, size and modification
time for a ``chmod``) makes its new processes run a file no probe is on. Only
looking at the first container, and by inode, size and modification time,
missed the others' and a ``chmod``: calls went uncounted while the windows said
watched.

The probed file is known in every root by what the plan keyed it by (inode,
size, modification and change time: the device is each overlay mount's own).
Another file there is listed in ``failed`` ("was replaced in the container"),
makes every look a gap until the probes load again, and asks for a reload
(which resolves the package anew). The probed file back, or the container gone,
ends that container's gap.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field

from stellaops_runtime.canonical.rootopen import open_in_root
from stellaops_runtime.native.config import UprobeTarget
from stellaops_runtime.native.follow_files import Followed

log = logging.getLogger(__name__)

FileKey = tuple[int, int, int, int]  # st_ino, st_size, st_mtime_ns, st_ctime_ns (purl_targets.FileKey)


def file_key(st: os.stat_result) -> FileKey:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def look_in(root: str, module: str) -> FileKey | None:
    """The key of the regular file at ``module`` inside ``root`` now (None: none, or unreadable)."""
    try:
        fd, st = open_in_root(root, module)
        os.close(fd)
    except (OSError, ValueError):
        return None
    return file_key(st) if stat.S_ISREG(st.st_mode) else None


@dataclass(slots=True)
class SharedLooks:
    """The other containers' views of the load's PURL targets' files (see the module docstring)."""

    probed: dict[int, FileKey] = field(default_factory=dict)  # target index -> the file probed
    seen: dict[tuple[int, str], FileKey] = field(default_factory=dict)  # (index, root) -> last looked at
    blind: set[tuple[int, str]] = field(default_factory=set)  # containers running another file

    def before_attach(self, i: int, t: UprobeTarget) -> None:
        """The probed file's key, read through its held descriptor before the attach."""
        try:
            st = os.stat(t.binary)
        except OSError:
            return
        self.probed[i] = file_key(st)
        for root, _module in ((t.root, t.module), *t.shared):
            self.seen[(i, root)] = self.probed[i]  # a file there other than it: reported at the first look

    def look(self, targets: tuple[UprobeTarget, ...], res: Followed) -> None:
        """Look at the file in each container; another than the probed one goes into ``res``."""
        for i, probed in self.probed.items():
            t = targets[i]
            for root, module in ((t.root, t.module), *t.shared):
                now = look_in(root, module)
                if now is None or now == self.seen.get((i, root)):
                    if now is None and not os.path.isdir(root):
                        self.blind.discard((i, root))  # the container is gone: nothing runs there
                    continue
                self.seen[(i, root)] = now  # reported once per change
                if now == probed:  # the probed file is back
                    self.blind.discard((i, root))
                    continue
                why = (
                    f"{os.path.join(root, module.lstrip('/'))} was replaced in the container: its processes "
                    "started since run a file not probed, a gap until the probes are loaded again"
                )
                res.failed.append((t.label(), why))
                res.reload = True
                if (i, root) not in self.blind:
                    log.warning("native probe %s: %s", t.label(), why)
                self.blind.add((i, root))
        if self.blind:
            res.unwatched = True
