"""One agent per node: a second agent waits for the first to exit before it reads anything.

Two agents of one node (a rolling update someone gave ``maxSurge``, an agent
run by hand beside the DaemonSet's pod, a second operator install) would each
read the node's Tetragon stream or export file and each store what it
counted: every event of the time both run would be in the store twice, with
no error anywhere. The flush ledger cannot tell: each agent's batches are its
own and stored once.

So each agent holds an exclusive ``flock`` on ``.<spool name>.agent.lock``
beside ``store.spoolPath`` (the node's hostPath, shared by every agent pod of
the node) for its whole life. The kernel releases it when the process ends,
by SIGKILL or OOM kill too, so a dead agent never holds it. The CLI takes it
before the agent is built (:func:`wait_for_node`): an agent that finds it
held logs an error and waits, reading no event and touching neither the spool
nor the watch record, until the other agent is gone; SIGTERM or SIGINT while
it waits ends it with exit 0 (it has nothing to store). Then it starts as any
agent does after another: the watch record makes the time between the two a
gap, and the export source resumes where the other stopped. The operator's
DaemonSet never overlaps two pods on a node (``maxUnavailable: 1``, no
surge), so its agents never wait.

While it waits there is no HTTP endpoint (nothing to serve yet): a pod given
a surge would fail its probes and be restarted, and its rollout would stop
there, with one agent counting.

:class:`NodePresence` also keeps the not-ready report for an agent built
without the CLI's wait (``Agent`` in tests and tools): ``other_agent`` and
``stellaops_runtime_node_other_agent``.

Without ``store.spoolPath`` there is no node path to meet on, and nothing is
checked (the same holds for the watch record, agent/watch_record.py).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import signal
import threading

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0


def lock_path(spool_path: str) -> str:
    """The node's agent lock beside the spool file ("" without a spool path)."""
    if not spool_path:
        return ""
    head, name = os.path.split(spool_path)
    return os.path.join(head, f".{name}.agent.lock")


class NodePresence:
    """Holds the node's agent lock, or says that another agent holds it."""

    def __init__(self, spool_path: str) -> None:
        self.path = lock_path(spool_path)
        self._fd: int | None = None
        self.other_agent = False  # another live agent holds the lock now
        self.conflicts = 0  # times another agent was found holding it

    @property
    def held(self) -> bool:
        return self._fd is not None

    def check(self) -> bool:
        """Try to take the lock (once); True while this agent holds it."""
        if not self.path or self._fd is not None:
            return self._fd is not None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as e:  # a read-only or missing directory: nothing to meet on
            log.warning("node agent lock %s cannot be made (%s): a second agent goes unnoticed", self.path, e)
            self.path = ""
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                log.warning("node agent lock %s: %s; a second agent would go unnoticed", self.path, e)
                self.path = ""
                return False
            if not self.other_agent:
                self.conflicts += 1
                log.error(
                    "another agent of this node is running (it holds %s): this agent waits for it to "
                    "exit before reading any event, so that no event is counted twice; run one agent "
                    "per node",
                    self.path,
                )
            self.other_agent = True
            return False
        self._fd = fd
        if self.other_agent:
            log.info("the node's other agent is gone; this agent holds %s now", self.path)
        self.other_agent = False
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Retry the lock every :data:`RETRY_SECONDS` until held or stopped."""
        while self.path and self._fd is None and not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), RETRY_SECONDS)
            except TimeoutError:
                self.check()

    def close(self) -> None:
        """Release the lock (the kernel would at exit anyway)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def wait_for_node(presence: NodePresence, *, poll: float = RETRY_SECONDS) -> bool:
    """Take the node's agent lock, waiting while another agent holds it; False if stopped meanwhile.

    Runs before the event loop exists: SIGTERM and SIGINT end the wait (and
    their previous handlers are put back either way). They are taken over
    before the first check, which logs that this agent waits: a SIGTERM sent
    on that line is a clean stop, never the default action's death (-15); one
    that comes while the lock is being taken stops the agent before it reads.
    """
    if not presence.path:
        return True
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    old = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        held = presence.check() or not presence.path  # no path left: the lock cannot be made
        while not held and not stop.wait(poll):
            held = presence.check() or not presence.path
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if stop.is_set():
        log.info("stopped while waiting for the node's other agent: nothing was read")
        return False
    return True
