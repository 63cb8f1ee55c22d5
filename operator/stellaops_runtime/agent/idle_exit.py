"""``--exit-when-idle``: when a replay or a script's agent may stop, and say it stored everything.

Split from :mod:`stellaops_runtime.agent.runner`. "No event for a while" alone
is not enough: an export-file reader behind (busy with a long line, starved on
a loaded machine) or still starting looked idle, and the agent exited 0 with
part of its file unread, or before its first write. So the agent stops only
once no event arrived for ``idle`` seconds, the export file was read to its
end, and a flush that began after that quiet moment stored everything (or
failed: the exit code then says what is left). An agent whose source never
connected stops as "never reachable" (exit 2).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stellaops_runtime.agent.runner import Agent

log = logging.getLogger(__name__)


async def idle_watch(agent: Agent, idle: float) -> None:
    """``--exit-when-idle``: stop once no event arrived for ``idle`` s, the source is read to its end,
    and a flush after that stored everything (or failed: the exit code then says what is left).

    "No event" alone stopped an agent whose export-file reader was behind
    (busy with a long line, starved on a loaded machine) or still starting:
    it exited 0 with part of its file unread, or before its first write.
    """
    quiet_since: float | None = None  # since when no event came and the source was at its end
    # From now: the agent's own start-up (seconds on a loaded machine) is not time without events;
    # counted, it stopped a source still connecting as "never reachable".
    started = time.monotonic()
    while not agent.stop_event.is_set():
        await asyncio.sleep(min(0.2, idle / 4))
        if len(agent.queue) or time.monotonic() - max(agent.queue.last_arrival, started) < idle:
            quiet_since = None
            continue
        if not agent.source_stats.connects:
            agent.never_connected = True
            agent.stop(f"source never reachable in {idle:g}s")
            return
        if not source_read_to_end(agent):
            quiet_since = None
            continue
        if quiet_since is None:
            quiet_since = time.monotonic()
        # Everything counted is stored once a flush that began after the quiet moment
        # succeeded; a failed one means the store does not take it now (the final flush
        # then spools or reports what is left, and the exit code says so).
        if agent.flusher.stored_through > quiet_since:
            log.info("idle: the source is quiet and everything counted is stored")
            agent.stop(f"no event for {idle:g}s")
            return
        if agent.flusher.failed_at > quiet_since:
            log.warning("idle: the source is quiet but the store is not taking the rows")
            agent.stop(f"no event for {idle:g}s")
            return


def source_read_to_end(agent: Agent) -> bool:
    """The export file was read to its end after the last event arrived (other sources: True).

    A gRPC stream has no end to reach: for it, idle is only the time without an event.
    """
    if agent.source.name != "tetragon-export":
        return True
    seen = agent.source.watching_ns()  # every complete line written before it was queued
    arrived_ns = time.time_ns() - int((time.monotonic() - agent.queue.last_arrival) * 1e9)
    return seen is not None and seen > arrived_ns
