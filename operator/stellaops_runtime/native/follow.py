"""Probed binaries replaced on disk: the probes follow the new file and keep (or find) the old one.

A uprobe (and a USDT probe, a uprobe at a note's address) is set on a file
(its inode), not on a path. A package upgrade, a ``cp`` to a temporary name
then ``mv``, an image rebuilt on the node: each puts a new file at a probed
path, and the probe stays on the old one. The processes started from the new
file were then never seen, however often they called the function, while the
node went on reporting the posture of a node whose probes are attached: a
"not observed" said over calls nobody watched.

So each target's file is identified (device, inode) before the probes
attach, and looked at again at every read of the counters (about once a
second, on the probes' thread). When its path names another file (or a file
appeared where none was at the load), that file is opened, and the same
programs (same target index: the events name the same path and symbol) are
attached to it too (native/follow_attach.py), through ``/proc/self/fd/<n>``
of the descriptor held, so the file probed is the one looked at. The old file
keeps its probe: the processes still running it are counted as before. A
call is counted once (a process runs one of the files; a file already
probed for the target is never attached again). Between the last look that
found the old file and the new attach, a new process may have called the
function unseen: that span is returned for the caller to mark as a gap.

The other way round, a load meets files replaced before it: processes still
running a target's former file (deleted, still mapped) are found through
/proc (native/former.py) and that file is probed too (:meth:`former`). One
that cannot be probed (unreadable, a USDT file whose sites differ) is
reported, and every look while such a process lives returns its time as
unwatched: a gap, never a window said watched over uncounted calls. Reading
every process's maps takes seconds on a node of thousands of processes, with
the probes' buffer unread: the load reads for ``loader.LOAD_SCAN_SECONDS`` and
each look goes on for ``SCAN_STEP_SECONDS``; a former file found after the
load was run unprobed since it (``since_load``: the caller marks that span),
and probes stopped before the scan ended read the rest (for
``STOP_SCAN_SECONDS``): a former file there, or processes still unread, leave
the whole load unwatched (:meth:`unseen_at_stop`).

A file rewritten at the same inode is a gap until the next load (probing it
again would count each call twice), unless it is an overlay copy-up: a new
real file in the mount's upper layer (follow_files.upper_identity), probed; so is
one a ``chmod`` copied up (only the change time moves).

A PURL target's file (held by descriptor, in containers' roots) is looked at in
every container that has it (native/follow_shared.py): another file there is a
gap and a reload, never attached here.

A USDT target's new file is probed with the programs compiled at the load
when its sites read their arguments the same way; else it is reported (and
its time unwatched while its processes may run) until the next load.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from stellaops_runtime.native import follow_attach, former
from stellaops_runtime.native.config import UprobeTarget, UsdtTarget
from stellaops_runtime.native.follow_files import (
    Followed,
    Ident,
    Target,
    followable,
    identity,
    in_root,
    look,
    open_path,
    path_of,
    stat_path,
    upper_identity,
)
from stellaops_runtime.native.follow_files import lacks as _lacks
from stellaops_runtime.native.follow_former import FormerFiles
from stellaops_runtime.native.follow_shared import SharedLooks
from stellaops_runtime.native.lookup import Idle
from stellaops_runtime.native.usdt import UsdtProbe

log = logging.getLogger(__name__)

MAX_FOLLOWED = 64  # new files attached per load; past it a replacement is only reported
# The former-file scan left after the load, per look (about one a second), and what is left of
# it when the probes stop (past it, their whole run is a gap).
SCAN_STEP_SECONDS: float | None = 0.1
STOP_SCAN_SECONDS: float | None = 5.0
MAX_KNOWN = 16  # files remembered per path for the later loads (renamed-away former files)

Key = tuple[str, int]  # ("uprobe" | "usdt", target index)


@dataclass(slots=True)
class TargetWatch(FormerFiles):
    """The files of a load's targets, as they were just before the probes attached."""

    targets: tuple[UprobeTarget, ...]
    usdt: tuple[UsdtTarget, ...] = ()
    usdt_loaded: dict[int, tuple[UsdtProbe, ...]] = field(default_factory=dict)  # sites compiled
    idents: dict[Key, Ident] = field(default_factory=dict)  # target -> file at its path, last looked at
    probed: dict[Key, set[tuple[int, int]]] = field(default_factory=dict)  # files its programs are on
    fds: list[int] = field(default_factory=list)  # descriptors of the files attached since the load
    perf_fds: list[int] = field(default_factory=list)  # USDT perf events opened since the load
    given_up: set[Key] = field(default_factory=set)  # targets whose latest file could not be probed
    blind: set[Key] = field(default_factory=set)  # ... of those, the ones it may be called in unseen
    unprobed: dict[tuple[int, str], str] = field(default_factory=dict)  # (pid, start) -> target label

    held: dict[Key, int] = field(default_factory=dict)  # the file each target attaches to at the load
    contents: dict[Key, tuple[int, int] | None] = field(default_factory=dict)  # (size, mtime) looked at
    added: int = 0  # files attached since the load (new files at the paths, former files)
    _scan: former.Scan | None = None  # the processes' maps read for former files, in steps
    upper: dict[Key, Ident] = field(default_factory=dict)  # overlay upper-layer file probed (real id)
    ctimes: dict[Key, int] = field(default_factory=dict)  # change time at the path, last looked at
    # path -> (device, inode) -> (size, mtime) of the files probed there, by this load and the
    # earlier ones of the same agent (shared: the source hands the same dict to every load)
    known: dict[str, dict[tuple[int, int], tuple[int, int]]] = field(default_factory=dict)
    _scan_keys: list[Key] = field(default_factory=list)  # the targets of its paths, in order
    shared: SharedLooks = field(default_factory=SharedLooks)  # PURL targets' files, in each container
    # called while a new file's lookup runs on its own thread (native/lookup.py): the caller reads
    # the probes' buffer meanwhile; None: the lookup runs on the calling thread
    idle: Idle | None = None
    debug_files: bool = True  # a symbol looked for in separate debug files (symbols.debugFiles)

    @classmethod
    def before_attach(
        cls,
        targets: tuple[UprobeTarget, ...],
        usdt: tuple[UsdtTarget, ...] = (),
        known: dict[str, dict[tuple[int, int], tuple[int, int]]] | None = None,
    ) -> TargetWatch:
        """Each target's file, opened: the load reads and attaches to the very file looked at (a
        replacement meanwhile is a new file for :meth:`follow`, never attached twice)."""
        w = cls(targets, usdt)
        if known is not None:
            w.known = known
        for key, t in w._all():
            if in_root(t):  # attached through the wiring's descriptor: the file opened then
                try:
                    st = os.stat(t.binary)
                except OSError:
                    continue
                w.idents[key], w.contents[key] = (st.st_dev, st.st_ino), (st.st_size, st.st_mtime_ns)
                if isinstance(t, UprobeTarget):  # always (in_root)
                    w.shared.before_attach(key[1], t)
                continue
            if not followable(t):
                continue
            try:
                fd, st = open_path(t.binary)
            except OSError:
                w.idents[key] = identity(t.binary)  # none there (or unreadable): the attach says why
                continue
            w.idents[key] = (st.st_dev, st.st_ino)
            w.contents[key] = (st.st_size, st.st_mtime_ns)
            w.held[key] = fd
            w.upper[key] = upper_identity(t.binary)  # None: the lower layer's (or no overlay)
            w.ctimes[key] = st.st_ctime_ns
        return w

    def paths(self, kind: str) -> dict[int, str]:
        """Target index -> the path the load reads and attaches through (its held descriptor)."""
        return {key[1]: f"/proc/self/fd/{fd}" for key, fd in self.held.items() if key[0] == kind}

    def _all(self) -> list[tuple[Key, Target]]:
        up: list[tuple[Key, Target]] = [(("uprobe", i), t) for i, t in enumerate(self.targets)]
        return up + [(("usdt", i), t) for i, t in enumerate(self.usdt)]

    def _target(self, key: Key) -> Target:
        return self.targets[key[1]] if key[0] == "uprobe" else self.usdt[key[1]]

    def attached(self, labels: set[str]) -> None:
        """After the load's attach: the targets attached (by label) are on the file looked at."""
        for key, was in self.idents.items():
            if was is not None and self._target(key).label() in labels:
                self.probed.setdefault(key, set()).add(was)
                if (contents := self.contents.get(key)) is not None:
                    self._know(key, was, contents)
        for key, fd in self.held.items():
            if key in self.probed:
                self.fds.append(fd)  # the probe holds the file; the descriptor stays open with it
            else:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.held.clear()

    def changed(self) -> list[Key]:
        """The targets whose path names another regular file than the one last looked at, or the same
        one with other contents (size, modification time)."""
        out = []
        for key, was in self.idents.items():
            if in_root(self._target(key)):
                continue  # looked at in each container that has it (native/follow_shared.py)
            now, contents = look(self._target(key))
            if now is None:
                continue
            if (
                now != was
                or (key in self.contents and contents != self.contents[key])
                or self._copied_up(key)
            ):
                out.append(key)
        return out

    def _copied_up(self, key: Key) -> bool:
        """Whether the file at ``key``'s path, alike in inode, size and modification time, moved its
        change time and is now another real file of its overlay's upper layer: a ``chmod`` (or a
        ``chown``, a link) in the merged view copied it up, and new processes map that file."""
        t = self._target(key)
        try:
            ctime = stat_path(t.binary).st_ctime_ns
        except OSError:
            return False
        if self.ctimes.setdefault(key, ctime) == ctime:
            return False
        self.ctimes[key] = ctime
        real = upper_identity(t.binary)
        return real is not None and real != self.upper.get(key)

    def _rewritten(self, key: Key, t: Target) -> str:
        """'' unless the file probed at ``key``'s path was rewritten in place: then why it is a gap."""
        ident, contents = look(t)
        if ident is None or ident != self.idents.get(key) or ident not in self.probed.get(key, ()):
            return ""
        self.contents[key] = contents  # reported once per change
        return (
            f"{path_of(t)} was rewritten in place (the same file, new contents; on overlayfs a copy-up): "
            "processes started from it may run code the probes are not on, a gap until the next load"
        )

    def follow(self, bpf: Any) -> Followed:
        """Attach each replaced target's programs to its new file too (see the module docstring)."""
        res = Followed()
        for key in self.changed():
            t = self._target(key)
            why = self._rewritten(key, t)
            if why and followable(t) and self._attach_copy(bpf, key, t):
                why = ""  # an overlay copy-up: its upper file is probed now
            elif not why:
                why = self._attach_path(bpf, key, t)
            if why == "probed":  # a file its programs are on already (put back): watched again
                self.given_up.discard(key)
                self.blind.discard(key)
                continue
            if why:
                res.failed.append((t.label(), why))
                if key not in self.given_up:
                    log.warning("native probe %s: %s", t.label(), why)
                self.given_up.add(key)
                if _lacks(why):
                    self.blind.discard(key)  # that version lacks it: nothing to miss
                else:
                    self.blind.add(key)
            else:
                res.attached.append(t.label())
                self.given_up.discard(key)
                self.blind.discard(key)
                log.warning(
                    "native probe %s: %s was replaced by another file: its processes are probed too "
                    "(the old file's keep their probe)",
                    t.label(), t.binary,
                )  # fmt: skip
        self.shared.look(self.targets, res)  # PURL targets: their file in each container
        if self.scanning():  # the load's scan, continued
            res.since_load = self._former_step(bpf, res, SCAN_STEP_SECONDS)
        self._check_unprobed(res)
        return res

    def scanning(self) -> bool:
        """Whether the load's former-file scan has processes left to read (their files unknown)."""
        return self._scan is not None and not self._scan.done

    def _know(self, key: Key, ident: tuple[int, int], contents: tuple[int, int]) -> None:
        """Remember a file probed at ``key``'s path for the agent's later loads (a former file of
        the path renamed away is known by its identity then), at most ``MAX_KNOWN`` per path."""
        files = self.known.setdefault(path_of(self._target(key)), {})
        files.pop(ident, None)
        files[ident] = contents
        while len(files) > MAX_KNOWN:
            del files[next(iter(files))]

    def unseen_at_stop(self) -> bool:
        """As the probes stop with the scan unfinished: whether a process not read yet ran a former
        file all along (the rest read for ``STOP_SCAN_SECONDS``, nothing attached: one found, or
        not done)."""
        if not self.scanning():
            return False
        assert self._scan is not None
        skip = {(n, ident) for n, key in enumerate(self._scan_keys) for ident in self.probed.get(key, ())}
        return bool(self._scan.step(skip, STOP_SCAN_SECONDS)) or not self._scan.done

    def _attach_copy(self, bpf: Any, key: Key, t: Target) -> bool:
        """Whether the file at ``key``'s path, rewritten at the same inode number, is another real
        file in its overlay's upper layer than the one probed (a copy-up, not the same inode
        rewritten: that stays a gap), now probed too."""
        real = upper_identity(t.binary)
        if real is None or real == self.upper.get(key):
            return False
        try:
            fd, _st = open_path(t.binary)
        except OSError:
            return False
        if self._attach_fd(bpf, key, t, fd, f"the copied-up file at {t.binary}"):
            return False
        self.upper[key] = real
        return True

    def _attach_path(self, bpf: Any, key: Key, t: Target) -> str:
        """'' when the file now at the path was attached, 'probed' when it already was, else why not."""
        try:  # checked through O_PATH first: a device put there is never opened for reading
            fd, st = open_path(t.binary)
        except OSError as e:
            self.idents[key] = identity(t.binary)  # looked at: not tried again until it changes
            return f"the new file at {t.binary} cannot be opened: {e.strerror or e}"
        ident = (st.st_dev, st.st_ino)
        self.idents[key] = ident  # looked at: not tried again until it changes
        self.contents[key] = (st.st_size, st.st_mtime_ns)
        if ident in self.probed.get(key, ()):
            os.close(fd)
            return "probed"
        if self.added >= MAX_FOLLOWED:
            os.close(fd)
            return f"{t.binary} was replaced, more than {MAX_FOLLOWED} new files since the load: not probed"
        why = self._attach_fd(bpf, key, t, fd, f"the new file at {t.binary}")
        if not why:
            self.probed.setdefault(key, set()).add(ident)
            self._know(key, ident, (st.st_size, st.st_mtime_ns))
            # its real file in the overlay's upper layer, when there: a later rewrite of it in place
            # is no copy-up (attached again, each call would count twice)
            self.upper[key], self.ctimes[key] = upper_identity(t.binary), st.st_ctime_ns
        return why

    def _attach_fd(self, bpf: Any, key: Key, t: Target, fd: int, what: str) -> str:
        """Attach ``key``'s programs to the file of ``fd`` (kept open when attached, else closed,
        also when ``idle``, the reader, raised meanwhile)."""
        try:
            if isinstance(t, UprobeTarget):
                why = follow_attach.uprobe(
                    bpf, key[1], t, fd, what, idle=self.idle, debug_files=self.debug_files
                )
            else:
                loaded = self.usdt_loaded.get(key[1], ())
                pfds, why = follow_attach.usdt_sites(bpf, key[1], t, loaded, fd, what, idle=self.idle)
                self.perf_fds += pfds
        except BaseException:
            os.close(fd)
            raise
        if why:
            os.close(fd)
        else:
            self.added += 1
            self.fds.append(fd)  # the probe holds the file; the descriptor stays open with it
        return why

    def close(self) -> None:
        """Close the descriptors (after the probes using them were detached) and the USDT events."""
        for fd in self.perf_fds + self.fds + list(self.held.values()):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()
        self.perf_fds.clear()
        self.held.clear()
