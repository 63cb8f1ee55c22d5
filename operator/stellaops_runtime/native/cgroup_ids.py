"""Which container each cgroup of ``native.cgroupAllow`` is: the identity Tetragon's events share.

The BCC-to-Tetragon overlap filter (agent/source_switch_overlap.py) skips
Tetragon's cached events of calls the native probes counted. Probes limited to
cgroups (``cgroupAllow``: cgroup v2 ids, which are the inode numbers of the
cgroups' directories) counted only those cgroups' calls, and Tetragon's events
carry no cgroup id, only the container id. A container's cgroup directory names
its id (``cri-containerd-<id>.scope``, ``docker-<id>.scope``, ``crio-<id>.scope``,
or the bare ``<id>`` with the cgroupfs driver), so the filter matches a cached
event by that id. A cgroup that names no container (a host service) or that is
gone by the look is matched by nothing: its calls may count twice, none is lost.

The node's cgroup tree is looked at through pid 1's root first (the agent runs
in its own cgroup namespace, whose ``/sys/fs/cgroup`` shows its own cgroup
alone), at most :data:`MAX_DIRS` directories.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

ROOTS = ("/proc/1/root/sys/fs/cgroup", "/sys/fs/cgroup")
MAX_DIRS = 50_000
MIN_ID = 12  # the shortest container id prefix taken as one container's (Docker's short form)
_ID = re.compile(r"(?:^|[-:])([0-9a-f]{64})(?:\.scope)?$")


def container_ids(cgroups: Iterable[int], roots: tuple[str, ...] | None = None) -> dict[int, str]:
    """cgroup id -> the bare id of the container whose cgroup it is (those found; the first root
    that can be read is the node's tree)."""
    want, out = set(cgroups), dict[int, str]()
    for root in ROOTS if roots is None else roots:
        if not os.path.isdir(root):
            continue
        stack, seen = [root], 0
        while stack and seen < MAX_DIRS and len(out) < len(want):
            try:
                it = os.scandir(stack.pop())
            except OSError:  # gone meanwhile, or not ours to read
                continue
            with it:
                for e in it:
                    try:
                        if not e.is_dir(follow_symlinks=False):
                            continue
                        ino = e.inode()
                    except OSError:
                        continue
                    seen += 1
                    if ino in want and (m := _ID.search(e.name)) is not None:
                        out[ino] = m.group(1)
                    stack.append(e.path)
        return out
    return out


def names_container(ids: frozenset[str], container: str) -> bool:
    """``container`` (an event's bare container id: full, or Docker's short form) is one of ``ids``."""
    if container in ids:
        return True
    return len(container) >= MIN_ID and any(full.startswith(container) for full in ids)
