"""Former files of the probed paths: deleted, and still run by live processes.

A load of the probes attaches to the files at the targets' paths. A process
started from a file since replaced there (an upgrade renamed a new file over
it: the old one is unlinked, and lives on while mapped) runs code no probe of
that load sits on, and its calls went uncounted while the window said
watched. This is what a restart of the agent, a reload for a changed probe
ConfigMap, or a switch back from Tetragon met after any upgrade of a probed
binary whose old processes were still running.

So at each load every process's ``/proc/<pid>/maps`` is read for mappings of
``<path> (deleted)``, the path a target names as that process sees it (the
agent may see it under another root: ``/host/<path>``, ``/proc/<n>/root/<path>``;
such a mapping counts for a process whose root is that directory). Each distinct such file (device and
inode, as the maps line gives them) is handed to the caller with the
``/proc/<pid>/map_files/<range>`` entry that opens that very inode (the
kernel allows it to CAP_SYS_ADMIN), for the same programs to attach to it
(native/follow.py). A file renamed away (not deleted) is not recognised by
its name: docs/native-probes.md says so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

DELETED = " (deleted)"
MAX_MAPS_BYTES = 8 << 20  # a process's maps read at most (a huge one is read to here)


@dataclass(frozen=True, slots=True)
class Former:
    """One deleted former file of a wanted path, as one live process maps it."""

    want: int  # index into the wanted paths
    ident: tuple[int, int]  # (st_dev, st_ino) of the file, from the maps line
    pid: int
    map_file: str  # /proc/<pid>/map_files/<start>-<end>: opens the file itself


def where(path: str) -> list[tuple[tuple[int, int], str]]:
    """Every (identity of a root, the path inside that root) the path can be named as by a process.

    The agent sees a host file as ``/host/usr/bin/app`` (the host's root mounted in its pod) and a
    container's as ``/proc/<n>/root/usr/bin/app``; the processes running them map
    ``/usr/bin/app``, with that directory as their root. So each directory on the way is a root
    candidate (``/`` naming the whole path); a process matches when its root is that directory."""
    out: list[tuple[tuple[int, int], str]] = []
    for name in dict.fromkeys((os.path.realpath(path), os.path.normpath(path))):
        parts = name.split("/")
        for n in range(1, len(parts)):
            root, inner = "/".join(parts[:n]) or "/", "/" + "/".join(parts[n:])
            try:
                st = os.stat(root)
            except OSError:
                continue
            if ((st.st_dev, st.st_ino), inner) not in out:
                out.append(((st.st_dev, st.st_ino), inner))
    return out


def _device(text: str) -> int:
    major, _, minor = text.partition(":")
    return os.makedev(int(major, 16), int(minor, 16))


def _deleted_mappings(text: str) -> Iterator[tuple[str, str, tuple[int, int]]]:
    """(range, path, identity) of each mapping of a deleted file in a maps text."""
    for line in text.splitlines():
        if not line.endswith(DELETED):
            continue
        fields = line.split(None, 5)
        if len(fields) < 6:
            continue
        try:
            ident = (_device(fields[3]), int(fields[4]))
        except ValueError:
            continue
        if ident[1] == 0:
            continue  # not a file
        yield fields[0], fields[5][: -len(DELETED)], ident


def scan(paths: list[str], *, skip: set[tuple[int, tuple[int, int]]], proc: str = "/proc") -> list[Former]:
    """The deleted former files of ``paths`` that live processes map (each file once per path).

    ``skip``: (path index, identity) already probed. Processes that vanish or cannot be read are
    passed over (a process gone runs nothing)."""
    wanted: dict[str, list[tuple[int, tuple[int, int]]]] = {}
    for i, p in enumerate(paths):
        for root_ident, inner in where(p):
            wanted.setdefault(inner, []).append((i, root_ident))
    if not wanted:
        return []
    found: list[Former] = []
    seen = set(skip)
    try:
        pids = [int(n) for n in os.listdir(proc) if n.isdigit()]
    except OSError:
        return []
    for pid in sorted(pids):
        try:
            with open(f"{proc}/{pid}/maps", "rb") as f:
                text = f.read(MAX_MAPS_BYTES).decode("utf-8", "surrogateescape")
        except OSError:
            continue
        root: tuple[int, int] | None = None
        for rng, name, ident in _deleted_mappings(text):
            for i, want_root in wanted.get(name, ()):
                if (i, ident) in seen:
                    continue
                if root is None:
                    try:
                        st = os.stat(f"{proc}/{pid}/root")
                    except OSError:
                        break
                    root = (st.st_dev, st.st_ino)
                if root != want_root:
                    continue
                seen.add((i, ident))
                found.append(Former(i, ident, pid, f"{proc}/{pid}/map_files/{rng}"))
    return found
