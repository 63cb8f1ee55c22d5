"""The agent's shutdown sequence: everything it holds stored or spooled within ``shutdown.graceSeconds``.

Split from :mod:`stellaops_runtime.agent.runner` (its ``Agent._shutdown``).
The order matters, and each step has its share of the deadline:

1. the source is cancelled (an idle stream never looks at the stop event);
2. the consumer processes what is queued, for at most half of what is left;
   past that, queued events are counted as dropped and are a gap in the last
   drain (like every drop of the queue), never silently lost: over the wall-clock
   time they arrived in and over their own event times (a replayed stream's);
3. a flush already running may finish, for at most half of what is left (the last flush's drain
   needs the rest): its batch is frozen, so aborting it when it must be cut short loses nothing
   and its retry cannot count twice;
4. the other tasks end (one that does not end when cancelled is left running, said by name, after
   half of the time left to the drain's deadline: the last flush keeps the rest); Tetragon's
   metrics are read once more (what it lost since the last scrape: sources/tetragon_metrics.py);
   an outage of the source still open, and those losses, become gaps (agent/outages.py) so the
   last drain carries them;
5. the final flush drains the pipeline and writes, spooling what the store
   did not take (a reserve of the deadline is kept for writing the spool);
   a drain still running at the deadline holds counts that reach neither:
   they are reported lost and the agent exits non-zero;
6. when every count was stored (none spooled), the node's export position is marked final
   (agent/export_final.py), still under the export lock;
7. the last witnesses are signed from what was just stored, if time is left;
8. the HTTP server and the store are closed in what is left (agent/runner.py): no step waits past
   the deadline, since the pod's ``terminationGracePeriodSeconds`` kills it there, maybe in its
   spool write. A write, an abort or a close that does not return in time is left on its daemon
   thread (store/threads.py; its batch is frozen, spooled, and replayed exactly once), a scrape
   still being answered is cancelled (agent/httpserver.py).

``tasks`` is the runner's list: source, consumer, flush loop, then the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from stellaops_runtime.agent.export_final import all_stored, mark_final
from stellaops_runtime.agent.flusher import ABORT_WAIT_SECONDS
from stellaops_runtime.sources.payload_times import read_event_times

if TYPE_CHECKING:
    from stellaops_runtime.agent.runner import Agent

log = logging.getLogger("stellaops_runtime.agent.runner")

# The share of the time left to the last drain's deadline that reading the event times of the payloads
# dropped at the deadline may take (~3 us each; queueSize may be 10,000,000, ~30 s): the drain, the
# flush and the rest of the shutdown need the remainder.
READ_TIMES_SHARE = 0.25


class _NotesDrops(Protocol):
    def note_own_drops(
        self, first_ns: int, last_ns: int, count: int, event_span: tuple[int, int] | None = None
    ) -> None: ...


def note_dropped(
    pipeline: _NotesDrops,
    drops: tuple[int, int, int],
    discarded: Sequence[bytes],
    *,
    json_lines: bool,
    drain_deadline: float,
) -> None:
    """The queue's drops as a gap (on the pipeline thread, ahead of the last drain): over their
    wall-clock span and over the event times of ``discarded`` read within :data:`READ_TIMES_SHARE`
    of the time left to ``drain_deadline`` (monotonic). Cut short, the event-time gap spans the
    times read (both ends of the queue first: sources/payload_times.py) and a WARNING says how
    many were not read; the count carried is every drop's."""
    start = time.monotonic_ns()
    until = start + int(max(0.0, drain_deadline - start / 1e9) * READ_TIMES_SHARE * 1e9)
    got = read_event_times(
        discarded, json_lines=json_lines, now_ns=time.time_ns(), until_ns=until, clock=time.monotonic_ns
    )
    if got.unread:
        log.warning("shutdown deadline: the event times of %d of %d dropped events were not read (no "
                    "time left); their gap in event time spans the %d read, from both ends of the queue",
                    got.unread, len(discarded), got.read)  # fmt: skip
    pipeline.note_own_drops(*drops, event_span=got.span)


async def shutdown(agent: Agent, tasks: list[asyncio.Task[Any]]) -> bool:
    """Stop within ``shutdown.graceSeconds``: drain, flush, and spool what the store did not take."""
    grace = agent.config.shutdown.grace_seconds
    agent.deadline = deadline = time.monotonic() + grace
    reserve = min(2.0, grace / 4)  # kept back for writing the spool file
    agent.drain_deadline = deadline - reserve
    log.info("stopping: draining the queue and flushing (at most %gs)", grace)
    tasks[0].cancel()  # an idle stream would never look at stop_event
    await asyncio.gather(tasks[0], return_exceptions=True)
    # The consumer ends once the source is done and the queue is empty.
    budget = max(0.0, (deadline - reserve) - time.monotonic()) / 2
    done, _ = await asyncio.wait({tasks[1]}, timeout=budget)
    discarded: list[bytes] = []
    if not done:
        tasks[1].cancel()
        await asyncio.gather(tasks[1], return_exceptions=True)
        discarded = agent.queue.discard_queued()
        agent.dropped_at_shutdown = len(discarded)
        log.error("shutdown deadline: %d queued events were not processed (counted as dropped, "
                  "a gap)", agent.dropped_at_shutdown)  # fmt: skip
    if (drops := agent.queue.take_drops()) is not None:
        # Dropped events nobody reported yet (the consumer was cut short, or these): a gap in the
        # last drain, over their wall-clock span and their own event times. Queued on the pipeline
        # thread ahead of that drain, so it is in it even when the thread is still busy now.
        # Their times are read within a share of what is left then (note_dropped).
        json_lines = bool(agent.config.tetragon.export_file)
        note = functools.partial(note_dropped, agent.pipeline, drops, discarded, json_lines=json_lines,
                                 drain_deadline=deadline - reserve)  # fmt: skip
        noted = asyncio.ensure_future(agent.in_pipeline(note))
        await asyncio.wait({noted}, timeout=max(0.0, deadline - reserve - time.monotonic()))
    # A running flush may finish: its batch is frozen, so if it must be cut
    # short, aborting it loses nothing and its retry cannot count twice.
    # Half of what is left at most: a flush hung in the store (its start row, its pairings, its rows:
    # each waits up to store.flushTimeout) must leave the last flush time to drain the aggregator,
    # whose counts since that flush's drain are in neither the buffer nor the spool until then.
    agent._flush_stop.set()
    done, _ = await asyncio.wait({tasks[2]}, timeout=max(0.0, deadline - reserve - time.monotonic()) / 2)
    if not done:
        agent.flusher.abort()  # its wait comes out of the spool's reserve: past the deadline, none
        done, _ = await asyncio.wait({tasks[2]}, timeout=min(ABORT_WAIT_SECONDS, reserve / 2))
        if not done:
            tasks[2].cancel()
        await asyncio.gather(tasks[2], return_exceptions=True)
    # Half of what is left at most (as the consumer's share): the last flush keeps the rest, which a
    # task deaf to its cancel took whole before (its counts then reached neither store nor spool).
    await end_tasks(tasks[3:], deadline - reserve - max(0.0, deadline - reserve - time.monotonic()) / 2)
    # Native records still waiting for the container lookup: decoded with what it says now.
    held = asyncio.ensure_future(agent.in_pipeline(agent.pipeline.release_native_held, True))
    await asyncio.wait({held}, timeout=max(0.0, deadline - reserve - time.monotonic()))
    agent.watch.unanswered_at_stop(agent.source)  # the hole before this agent, if never placed
    if (poller := agent._poller) is not None:  # Tetragon's losses since its last scrape: this agent's gap
        with contextlib.suppress(Exception):
            left = deadline - reserve - time.monotonic()
            await asyncio.wait_for(poller.scrape_last(), timeout=max(0.1, min(poller.timeout, left)))
    with contextlib.suppress(Exception):  # an outage still open is a gap in the last drain too
        await asyncio.wait_for(agent.outages.mark(), timeout=max(0.1, deadline - reserve - time.monotonic()))
    ok = await agent.flusher.final_flush(deadline - reserve)
    if agent.watch.unrecorded:
        # Drains held (agent/watch_record.py): the export file's position could not be recorded, so
        # the counts read since are neither stored nor spooled. Retrying until the deadline would
        # not change that; the file keeps the lines for the next agent (read again from the
        # position on disk, or, with no record left, the store makes the time a gap).
        log.error("shutdown: the watch record cannot be written, so the counts of the export lines "
                  "read since the last recorded position were not stored (%d drains held); the next "
                  "agent reads those lines again", agent.watch.export.held)  # fmt: skip
        ok = False
    if agent.drains_running:
        # A drain still running (a slow first attribution, a loaded node) holds counts that never
        # reached the buffer, so neither the store nor the spool has them: say so, exit non-zero.
        agent.drains_lost = len(agent.drains_running)
        log.error("shutdown deadline: %d drain(s) of the hot-symbol aggregator still running after "
                  "%gs; the counts they hold were neither stored nor spooled (raise "
                  "shutdown.graceSeconds)", agent.drains_lost, grace)  # fmt: skip
        ok = False
    if all_stored(agent, ok):  # the export position says no count of it is spooled or lost
        await mark_final(agent, deadline)
    if agent.witness is not None and ok:  # the last witnesses, from what was just stored
        await last_witnesses(agent.witness, agent._store_engine, deadline)
    return ok


async def end_tasks(tasks: Sequence[asyncio.Task[Any]], until: float) -> None:
    """Cancel ``tasks`` and wait for them until ``until`` (monotonic; half-way to the drain's
    deadline): one that does not end (deaf to its cancel, a step shielded from it) is left
    running, said by name, and the last drain still has its time."""
    for t in tasks:
        t.cancel()
    if not tasks:
        return
    done, pending = await asyncio.wait(tasks, timeout=max(0.0, until - time.monotonic()))
    for t in done:  # as gather(return_exceptions=True): an error of an ending task is not raised
        if not t.cancelled():
            t.exception()
    if pending:
        log.warning("shutdown deadline: task(s) %s did not end when cancelled; left running",
                    ", ".join(sorted(t.get_name() for t in pending)))  # fmt: skip


async def last_witnesses(witness: Any, engine: Callable[[], Any], deadline: float) -> None:
    """Sign the witnesses due from what was just stored, within ``deadline``; claims left without
    one are said, whether the signing timed out or no time was left to start it (the earlier steps,
    against a hung store, can use the whole grace)."""
    witness.stored()
    left = deadline - time.monotonic()
    if left > 0:
        try:
            await asyncio.wait_for(witness.flush(engine()), timeout=left)
            return
        except TimeoutError:
            pass
    elif not witness.marked:  # no time left, and nothing was due
        return
    log.warning("shutdown deadline: %d claims left without a new witness", witness.marked)
