"""One follower of a node's export file at a time: a second agent waits instead of counting twice.

The node's agent lock (agent/node_presence.py) lies beside ``store.spoolPath``, so two agents
of one node given different spool paths, or one given none (a second install, an agent run by
hand beside the DaemonSet's pod), both followed Tetragon's export file and stored every line
twice, both ready, both exiting 0. What every follower of the node's export file shares is the
file's directory (the DaemonSet's pods mount it read-only), so the follower
(sources/tetragon_export.py) holds an exclusive ``flock`` on that directory, opened read-only
(no file is made; a read-only mount serves), from before it opens the file until it stops
following it. The kernel drops the lock when the process ends, by SIGKILL or an OOM kill too.

It is the directory and not the file: Tetragon rotates by renaming the file and starting a new
one, and a lock on a file's inode would let a waiting agent take the new file's lock before the
follower has opened it. The cost: two agents following different files of one directory wait
for each other too (one Tetragon per node writes one export file). It is the directory of the
file really followed: a configured path that is a symlink (``/a/tetragon.log`` pointing at
``/b/tetragon.log``) is resolved, so an agent given the link and one given the target lock the
same directory (each lock on the link's own directory let both follow the file). A link
pointed elsewhere while it is followed is a directory made again at the path (below).

A follower that finds the lock held logs an error once, reports ``other_agent`` (the agent's
``node_other_agent`` gauge and ``/readyz``'s ``other_agent_on_node``) and reads nothing until
it gets the lock; :attr:`ExportLock.waited_since` then tells where the gap of its wait starts.
Where no lock can be taken (a file system without ``flock``, a directory it may not read) the
follower goes on unguarded, with a warning, and says so for as long as it follows (the agent's
``export_unguarded`` gauge and ``/readyz``'s ``export_unguarded``; the agent stays ready: such a
node must not go blind); it tries the lock again every :data:`RETRY_POLLS` polls, and says it
when another agent took it meanwhile. A directory renamed away and made again at the path
while it is followed (the follower goes on to the new directory's file) is locked too on the
follower's next poll (:meth:`ExportLock.keep`), so an agent started after that waits; while it
is not locked (another locked it first, too many, refused) the follower is ``unguarded`` too.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from typing import Literal

from stellaops_runtime.hotsymbols.clock_span import now_pair

log = logging.getLogger("stellaops_runtime.sources.tetragon_export")

Taken = Literal["held", "other", "missing", "unguarded"]
MAX_LATER = 16  # directories made again at the path that one follower locks too (open files)
RETRY_POLLS = 50  # polls between two tries at a lock refused (a lock manager back: NFS's lockd)


def _flock(fd: int) -> None:
    """Take an exclusive lock on ``fd`` without blocking (raises OSError): the one call to the
    kernel's ``flock``, so a file system refusing it can be simulated here."""
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def real_dir(path: str) -> str:
    """The directory of the file ``path`` names, symlinks resolved (one not made yet: as far as
    they resolve); the path's own directory if it cannot be resolved (a NUL byte)."""
    try:
        return os.path.dirname(os.path.realpath(path))
    except (OSError, ValueError):
        return os.path.dirname(os.path.abspath(path))


class ExportLock:
    """The follower's lock on its export file's directory."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.dir = real_dir(path)
        self._fd: int | None = None
        self._held = False
        # Directories made at the path since (the first one renamed away): locked too, kept until
        # the follower stops, (dev, ino) -> fd.
        self._later: dict[tuple[int, int], int] = {}
        self._bound_warned = False  # more than MAX_LATER directories: said once
        self._first_warned = False  # another agent locked a directory made again first: said once
        self._later_refused_warned = False  # a directory made again refuses the lock: said once
        self._refused = False  # no lock can be taken: followed anyway, a second agent unnoticed
        self._later_unlocked = False  # the directory now at the path (made again) is not locked
        self._polls = 0  # polls while unguarded: the lock is tried again every RETRY_POLLS
        self._beside_warned = False  # another agent took it while this one followed unguarded
        self.other_agent = False  # another agent holds it now: this one reads nothing
        self.conflicts = 0  # times another agent was found holding it
        # (wall, boottime) ns this follower first found another holding it (None: it never waited):
        # it cannot know which lines written since that agent counted.
        self.waited_since: tuple[int, int] | None = None

    def take(self) -> Taken:
        """Try to take the lock (once, without blocking)."""
        if self._held:
            return "held"
        if self._refused:
            return "unguarded"
        if (now := real_dir(self.path)) != self.dir:  # a symlink at the path pointed elsewhere meanwhile
            self.dir = now
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        if self._fd is None:
            try:
                self._fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                return "missing"  # not made yet: the export file cannot be there either
            except OSError as e:
                return self._unguard(e)
        try:
            _flock(self._fd)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                return self._unguard(e)
            if not self.other_agent:
                self.conflicts += 1
                self.waited_since = self.waited_since or now_pair()
                log.error(
                    "another agent follows the export files in %s (it holds a lock on the "
                    "directory): this agent reads nothing until it exits, so that no line is "
                    "counted twice; run one agent per node",
                    self.dir,
                )
            self.other_agent = True
            return "other"
        self._held = True
        if self.other_agent:
            log.warning(
                "the other agent following the export files in %s is gone; following them now", self.dir
            )
        self.other_agent = False
        return "held"

    def covers(self, path: str) -> bool:
        """The directory now at ``path`` is the one locked (or one locked since)."""
        try:
            st = os.stat(path)
        except OSError:
            return False
        ident = (st.st_dev, st.st_ino)
        if ident in self._later:
            return True
        if self._fd is None:
            return False
        held = os.fstat(self._fd)
        return (held.st_dev, held.st_ino) == ident

    def keep(self) -> None:
        """While following: a directory made at the path since (the first one renamed away, made
        again) is locked too, at once. The follower goes on to the new directory's file; an agent
        started after that would lock the new directory, find it free and follow the same file.
        Unguarded, the lock is tried again every RETRY_POLLS polls (a refusal may pass)."""
        if self._refused:
            self._try_again()
            return
        self.dir = real_dir(self.path)  # the directory of the file followed now (a symlink repointed)
        if not self._held or self.covers(self.dir):
            self._later_unlocked = False
            return
        if len(self._later) >= MAX_LATER:  # a directory made again and again: open files bounded
            self._later_unlocked = True
            if not self._bound_warned:
                self._bound_warned = True
                log.error(
                    "the export directory %s was made again more than %d times: it is no longer "
                    "locked, and a second agent following its files would go unnoticed",
                    self.dir, MAX_LATER,
                )  # fmt: skip
            return
        try:
            fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return  # gone again, or not made yet: looked at on the next poll
        self._later_unlocked = True  # until it is locked below
        try:
            _flock(fd)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES) and not self._first_warned:
                self._first_warned = True
                log.error(
                    "the export directory %s was made again, and another agent locked it before "
                    "this one saw it: both follow its files, so lines may be counted twice; run "
                    "one agent per node",
                    self.dir,
                )
            elif e.errno not in (errno.EAGAIN, errno.EACCES) and not self._later_refused_warned:
                self._later_refused_warned = True
                log.warning(
                    "the export directory %s was made again and cannot be locked (%s): a second "
                    "agent following its files would go unnoticed (export_unguarded 1)",
                    self.dir, e.strerror or e,
                )  # fmt: skip
            return
        st = os.fstat(fd)
        self._later[(st.st_dev, st.st_ino)] = fd
        self._later_unlocked = False

    @property
    def held(self) -> bool:
        """This follower holds the lock now (read from another thread too: a plain attribute)."""
        return self._held

    @property
    def unguarded(self) -> bool:
        """The file is followed and nothing keeps a second agent from following it too: no lock
        can be taken, or the directory made again at the path is not locked (refused, too many)."""
        return self._refused or self._later_unlocked

    def _try_again(self) -> None:
        self._polls += 1
        if self._polls % RETRY_POLLS:
            return
        self.dir = real_dir(self.path)
        try:
            fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            _flock(fd)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES) and not self._beside_warned:
                self._beside_warned = True
                log.error(
                    "another agent locked the export directory %s while this one followed its files "
                    "unguarded: both follow them, so lines may be counted twice; run one agent per node",
                    self.dir,
                )  # fmt: skip
            return
        self._fd, self._held, self._refused = fd, True, False
        log.warning("the export directory %s can be locked now: a second agent will wait", self.dir)

    def _unguard(self, e: OSError) -> Taken:
        log.warning(
            "cannot lock the export file's directory %s (%s): a second agent following it would go "
            "unnoticed (export_unguarded 1)",
            self.dir, e.strerror or e,
        )  # fmt: skip
        self.release()
        self._refused = True
        return "unguarded"

    def release(self) -> None:
        """Stop following: the lock goes (the kernel would at exit anyway)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        for fd in self._later.values():
            os.close(fd)
        self._later.clear()
        self._held = self.other_agent = self._later_unlocked = False
