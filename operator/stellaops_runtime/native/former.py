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
(native/follow.py). A file renamed away (``mv app app.old``, not deleted)
has another name: it is recognised by its identity instead, when an earlier
load of the same agent probed it at the path (``known``: device and inode as
maps give them, checked against the size and modification time then, so an
inode number used again by another file is not taken for it), or an earlier
agent of the node (native/known_files.py keeps them beside the spool). A file
no load saw cannot be told from any other file: docs/native-probes.md says so.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

DELETED = " (deleted)"
MAX_MAPS_BYTES = 8 << 20  # a process's maps read at most (a huge one is read to here)
MAX_OTHERS = 16  # further processes kept per file found, to open it through if the first is gone


@dataclass(frozen=True, slots=True)
class Former:
    """One deleted former file of a wanted path, as one live process maps it."""

    want: int  # index into the wanted paths
    ident: tuple[int, int]  # (st_dev, st_ino) of the file, from the maps line
    pid: int
    map_file: str  # /proc/<pid>/map_files/<start>-<end>: opens the file itself
    contents: tuple[int, int] | None = None  # a renamed file known by identity: (size, mtime) seen then


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


def _needle(ident: tuple[int, int]) -> bytes:
    """The device and inode fields of a maps line naming the file ``ident``."""
    dev, ino = ident
    return f" {os.major(dev):02x}:{os.minor(dev):02x} {ino} ".encode()


def _deleted_mappings(text: str, *, every: bool = False) -> Iterator[tuple[str, str, tuple[int, int]]]:
    """(range, path, identity) of each mapping of a deleted file in a maps text (``every``: of
    every file, the path as the line gives it)."""
    for line in text.splitlines():
        deleted = line.endswith(DELETED)
        if not deleted and not every:
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
        yield fields[0], fields[5][: -len(DELETED)] if deleted else fields[5], ident


class Scan:
    """A scan of the live processes for the deleted former files of ``paths``, in steps.

    Reading every process's maps costs the kernel a line per mapping: seconds on a node of
    thousands of processes (about 1.5 ms per process of a few hundred mappings under load), while
    the probes' buffer is not read. So :meth:`step` reads until ``seconds`` have passed (at least
    one process) and the caller goes on later; :attr:`done` once every process listed at the
    start, then those that appeared meanwhile (a fork of a process gone unread runs its file too),
    were read. A file found is one of ``paths`` (each file once per path; ``skip``, (path index,
    identity), already probed). Processes that vanish or cannot be read are passed over (a process
    gone runs nothing)."""

    def __init__(
        self,
        paths: list[str],
        *,
        proc: str = "/proc",
        known: list[dict[tuple[int, int], tuple[int, int]]] | None = None,
    ) -> None:
        self.proc = proc
        self._wanted: dict[str, list[tuple[int, tuple[int, int]]]] = {}
        for i, p in enumerate(paths):
            for root_ident, inner in where(p):
                self._wanted.setdefault(inner, []).append((i, root_ident))
        self._known: dict[tuple[int, int], list[tuple[int, tuple[int, int]]]] = {}
        for i, files in enumerate(known or ()):
            for ident, contents in files.items():
                self._known.setdefault(ident, []).append((i, contents))
        self._needles = [os.fsencode(name) + DELETED.encode() for name in self._wanted]
        self._known_needles = [_needle(ident) for ident in self._known]
        self._listed: set[int] = set()
        self._todo: list[int] = self._list() if self._wanted or self._known else []
        self._second = False  # the processes that appeared during the first pass are listed
        self._seen: set[tuple[int, tuple[int, int]]] = set()
        # the further processes seen mapping a file reported (the first may exit or exec before
        # the caller opens the file through it: :meth:`others`, :meth:`forget`)
        self._others: dict[tuple[int, tuple[int, int]], list[Former]] = {}
        self._pids: dict[tuple[int, tuple[int, int]], set[int]] = {}  # the processes seen per file
        self.read = 0  # processes whose maps were read

    def _list(self) -> list[int]:
        try:
            pids = {int(n) for n in os.listdir(self.proc) if n.isdigit()}
        except OSError:
            return []
        new = sorted(pids - self._listed, reverse=True)  # popped from the end: lowest pid first
        self._listed |= pids
        return new

    def _found(self, out: list[Former], f: Former) -> None:
        """Report ``f`` unless its file was; else keep it among that file's further processes."""
        key = (f.want, f.ident)
        if key not in self._seen:
            self._seen.add(key)
            self._pids[key] = {f.pid}
            out.append(f)
            return
        pids = self._pids.setdefault(key, set())
        if f.pid not in pids and len(pids) <= MAX_OTHERS:  # each mapping of it is a line: once a pid
            pids.add(f.pid)
            self._others.setdefault(key, []).append(f)

    def others(self, f: Former) -> list[Former]:
        """The further processes seen mapping ``f``'s file so far (taken: each is given once)."""
        return self._others.pop((f.want, f.ident), [])

    def forget(self, f: Former) -> None:
        """``f``'s file could not be opened through any process seen: a later read reports it again."""
        self._seen.discard((f.want, f.ident))
        self._others.pop((f.want, f.ident), None)
        self._pids.pop((f.want, f.ident), None)

    @property
    def done(self) -> bool:
        return not self._todo and (self._second or not (self._wanted or self._known))

    def step(self, skip: set[tuple[int, tuple[int, int]]], seconds: float | None = None) -> list[Former]:
        """Read processes' maps for ``seconds`` (None: to the end) and the former files they map."""
        found: list[Former] = []
        until = None if seconds is None else time.monotonic() + seconds
        while True:
            if not self._todo and not self._second and (self._wanted or self._known):
                self._second = True
                self._todo = self._list()
            if not self._todo:
                self._listed = set()  # done: the pids are not needed any more
                return found
            found += self._one(self._todo.pop(), skip)
            if until is not None and time.monotonic() >= until:
                return found

    def _one(self, pid: int, skip: set[tuple[int, tuple[int, int]]]) -> list[Former]:
        proc = self.proc
        try:
            with open(f"{proc}/{pid}/maps", "rb") as f:
                data = f.read(MAX_MAPS_BYTES)
        except OSError:
            return []
        self.read += 1
        out: list[Former] = []
        if any(n in data for n in self._known_needles):  # a file an earlier load probed, by identity
            for rng, _name, ident in _deleted_mappings(data.decode("utf-8", "surrogateescape"), every=True):
                for i, contents in self._known.get(ident, ()):
                    if (i, ident) not in skip:
                        self._found(out, Former(i, ident, pid, f"{proc}/{pid}/map_files/{rng}", contents))
        if not any(n in data for n in self._needles):
            return out  # no deleted file of a wanted name: the common case, no line parsed
        root: tuple[int, int] | None = None
        for rng, name, ident in _deleted_mappings(data.decode("utf-8", "surrogateescape")):
            for i, want_root in self._wanted.get(name, ()):
                if (i, ident) in skip:
                    continue
                if root is None:
                    try:
                        st = os.stat(f"{proc}/{pid}/root")
                    except OSError:
                        return out
                    root = (st.st_dev, st.st_ino)
                if root != want_root:
                    continue
                self._found(out, Former(i, ident, pid, f"{proc}/{pid}/map_files/{rng}"))
        return out


def still_maps(f: Former) -> bool:
    """Whether ``f``'s process still maps its file at that range (not exited, nor exec'd since)."""
    base, _, rng = f.map_file.rpartition("/map_files/")
    try:
        with open(f"{base}/maps", "rb") as fh:
            data = fh.read(MAX_MAPS_BYTES)
    except OSError:
        return False
    start = data.find(rng.encode() + b" ")
    if start != 0 and (start < 0 or data[start - 1 : start] != b"\n"):
        return False
    line = data[start : data.find(b"\n", start) if b"\n" in data[start:] else len(data)]
    return any(
        ident == f.ident
        for _r, _n, ident in _deleted_mappings(line.decode("utf-8", "surrogateescape"), every=True)
    )


def scan(paths: list[str], *, skip: set[tuple[int, tuple[int, int]]], proc: str = "/proc") -> list[Former]:
    """The deleted former files of ``paths`` that live processes map, in one go (:class:`Scan`)."""
    return Scan(paths, proc=proc).step(skip)
