"""A second agent on this node: found, logged, shown in metrics and ``/readyz``.

Two agents of one node (a rolling update someone gave ``maxSurge``, an agent
run by hand beside the DaemonSet's pod) each read the node's Tetragon stream
or export file, and each stores what it counted: every event of the time both
run is counted twice in the store, with no error anywhere. The flush ledger
cannot tell: each agent's batches are its own and stored once.

The operator's DaemonSet never overlaps two pods on a node (``maxUnavailable:
1`` and no surge: the next pod starts after the last one is gone), so this
only happens when someone adds one. It must then be loud, not silent: each
agent holds an exclusive ``flock`` on ``.<spool name>.agent.lock`` beside
``store.spoolPath`` (the node's hostPath, shared by every agent pod of the
node) for its whole life. The kernel releases it when the process ends, by
SIGKILL or OOM kill too, so a dead agent never holds it. An agent that finds
it held logs an error, reports ``stellaops_runtime_node_other_agent 1`` and
``/readyz`` 503 (``other_agent_on_node``), and tries again every
:data:`RETRY_SECONDS`; once the other agent is gone it takes the lock, logs
so, and is ready again. The pod of the agent that came second shows 0/1
ready, which is what people look at.

What this does not do: the second agent still reads and stores while the
other runs, so the counts of that time are in the store twice; the log line,
the metric and ``/readyz`` say when (docs/operations.md, "One agent per
node"). A DaemonSet given ``maxSurge`` would stop its rollout at the first
new pod, both agents counting. Holding the second agent's source back until
the lock is free (and reporting it ready as a standby) would count nothing
twice; it changes the start order (spool, watch record) that the
spool-sharing agents of tests/e2e/test_spool_shared.py rely on, and is left
for later.

Without ``store.spoolPath`` there is no node path to meet on, and nothing is
checked (the same holds for the watch record, agent/watch_record.py).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os

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
                    "another agent of this node is running (it holds %s): while both run, both count "
                    "the node's events and the store gets both counts; this agent reports not ready "
                    "(other_agent_on_node) until the other is gone: run one agent per node",
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
