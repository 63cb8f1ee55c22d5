"""Which container each cgroup of ``native.cgroupAllow`` is: the identity Tetragon's events share.

The BCC-to-Tetragon overlap filter (agent/source_switch_overlap.py) skips
Tetragon's cached events of calls the native probes counted. Probes limited to
cgroups (``cgroupAllow``: cgroup v2 ids, which are the inode numbers of the
cgroups' directories) counted only those cgroups' calls, and Tetragon's events
carry no cgroup id, only the container id. A container's cgroup directory names
its id (``cri-containerd-<id>.scope``, ``docker-<id>.scope``, ``crio-<id>.scope``,
or the bare ``<id>`` with the cgroupfs driver), so the filter matches a cached
event by that id. The probes match a call's own cgroup exactly
(``bpf_get_current_cgroup_id``), so only a cgroup holding all of its container's
processes names it: not a runtime's monitor beside it (``crio-conmon-<id>.scope``,
``libpod-conmon-<id>.scope``: the monitor's calls, not the container's), nor a
container's cgroup holding cgroups of its own at the look (systemd or a container
engine inside it: its processes there are not in the cgroup allowed). A cgroup
that names no container (a host service), that is gone by the look, or one of
those, names no container: the switch then skips every host process's cached call
(agent/source_switch_overlap.py ``HOST``); one Tetragon gives a container id may
count twice, none is lost. A cgroup the
walk does not see when it could not read the node's tree whole, or found none of
them (:func:`look_up`: no ``/proc/1/root`` access, cgroup v1, a permission error, a
vanished mount), leaves the whole load undecidable: the filter skips its functions'
cached calls whatever their container, and the switch marks the load's span a gap
(agent/source_switch_back.py). One missing from a tree read whole was removed, and
counted nothing.

The node's cgroup tree is looked at through pid 1's root first (the agent runs
in its own cgroup namespace, whose ``/sys/fs/cgroup`` shows its own cgroup
alone), at most :data:`MAX_DIRS` directories, on a thread (not the agent's event loop).
Only its cgroup v2 hierarchy is read (``unified`` in systemd's hybrid layout):
each hierarchy numbers its directories on its own, so a cgroup v1 directory may
carry an allowed cgroup's number (a node with cgroup v1 alone is undecidable).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

ROOTS = ("/proc/1/root/sys/fs/cgroup", "/sys/fs/cgroup")
MAX_DIRS = 50_000
MIN_ID = 12  # the shortest container id prefix taken as one container's (Docker's short form)
# the container's own cgroup: bare (cgroupfs), or the runtime's systemd scope (not its monitor's)
_ID = re.compile(r"(?:(?:cri-containerd|docker|crio|libpod)-)?([0-9a-f]{64})(?:\.scope)?")


def container_ids(cgroups: Iterable[int], roots: tuple[str, ...] | None = None) -> dict[int, str]:
    """cgroup id -> the bare id of the container whose cgroup it is (those found; the first root
    that can be read is the node's tree)."""
    return look_up(cgroups, roots)[0]


def look_up(
    cgroups: Iterable[int], roots: tuple[str, ...] | None = None
) -> tuple[dict[int, str], frozenset[int]]:
    """:func:`container_ids`, and the cgroups whose calls cannot be told apart: those the walk did
    not see when it could not read the node's tree whole (a permission error, :data:`MAX_DIRS`
    reached) or found none of them (no ``/proc/1/root`` access and a private cgroup namespace's own
    view, cgroup v1, a vanished mount). A cgroup missing from a tree read whole in which others were
    found was removed before the look (only an empty cgroup can be; its id is not used again): it
    counted nothing, and is not among them (agent/source_switch_overlap.py ``cgroups_unseen``)."""
    want, out, found = set(cgroups), dict[int, str](), set[int]()
    for root in ROOTS if roots is None else roots:
        if not os.path.isdir(root):
            continue
        tree = _unified(root)
        if tree is None:  # cgroup v1 alone: a v1 directory's number is no cgroup id the probes match
            return out, frozenset(want)
        stack, seen, whole = [tree], 0, True
        while stack and len(found) < len(want):
            if seen >= MAX_DIRS:
                whole = False
                break
            try:
                it = os.scandir(stack.pop())
            except FileNotFoundError:  # removed meanwhile
                continue
            except OSError:  # not ours to read: a cgroup below may be missed
                whole = False
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
                    if ino in want:
                        found.add(ino)
                        if (m := _ID.fullmatch(e.name)) is not None and _leaf(e.path):
                            out[ino] = m.group(1)
                    stack.append(e.path)
        missing = want - found
        return out, frozenset(missing if missing and (not whole or not found) else ())
    return out, frozenset(want)


def _unified(root: str) -> str | None:
    """The cgroup v2 tree at ``root``: itself (the unified layout), or ``unified`` beside cgroup v1
    controllers (systemd's hybrid layout); None with cgroup v1 alone. A cgroup v2 directory holds
    ``cgroup.controllers``, a v1 one does not. Each hierarchy numbers its directories on its own
    from 1, so a v1 directory (``memory/...``) may carry an allowed v2 cgroup's number: never read."""
    for tree in (root, os.path.join(root, "unified")):
        if os.path.isfile(os.path.join(tree, "cgroup.controllers")):
            return tree
    return None


def _leaf(path: str) -> bool:
    """The cgroup holds no cgroup (its processes are all in it); one that cannot be read is not."""
    try:
        with os.scandir(path) as it:
            return not any(e.is_dir(follow_symlinks=False) for e in it)
    except OSError:
        return False


def names_container(ids: frozenset[str], container: str) -> bool:
    """``container`` (an event's bare container id: full, or Docker's short form) is one of ``ids``."""
    if container in ids:
        return True
    return len(container) >= MIN_ID and any(full.startswith(container) for full in ids)
