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
for each other too (one Tetragon per node writes one export file).

A follower that finds the lock held logs an error once, reports ``other_agent`` (the agent's
``node_other_agent`` gauge and ``/readyz``'s ``other_agent_on_node``) and reads nothing until
it gets the lock; :attr:`ExportLock.waited_since` then tells where the gap of its wait starts.
Where no lock can be taken (a file system without ``flock``, a directory it may not read) the
follower goes on unguarded, with a warning.
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


class ExportLock:
    """The follower's lock on its export file's directory."""

    def __init__(self, path: str) -> None:
        self.dir = os.path.dirname(os.path.abspath(path))
        self._fd: int | None = None
        self._held = False
        self._unguarded = False
        self.other_agent = False  # another agent holds it now: this one reads nothing
        self.conflicts = 0  # times another agent was found holding it
        # (wall, boottime) ns this follower first found another holding it (None: it never waited):
        # it cannot know which lines written since that agent counted.
        self.waited_since: tuple[int, int] | None = None

    def take(self) -> Taken:
        """Try to take the lock (once, without blocking)."""
        if self._held:
            return "held"
        if self._unguarded:
            return "unguarded"
        if self._fd is None:
            try:
                self._fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                return "missing"  # not made yet: the export file cannot be there either
            except OSError as e:
                return self._unguard(e)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
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

    def _unguard(self, e: OSError) -> Taken:
        log.warning(
            "cannot lock the export file's directory %s (%s): a second agent following it would go "
            "unnoticed",
            self.dir, e.strerror or e,
        )  # fmt: skip
        self.release()
        self._unguarded = True
        return "unguarded"

    def release(self) -> None:
        """Stop following: the lock goes (the kernel would at exit anyway)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._held = self.other_agent = False
