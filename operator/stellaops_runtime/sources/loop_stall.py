"""Event-loop stalls of a gRPC stream: time the agent did not read, recorded as unwatched.

Tetragon keeps a bounded queue per gRPC client and drops events for a client that
does not read, silently (nothing in the stream says so). The receive loop of
sources/tetragon_grpc.py reads on the agent's event loop, so while that loop does
not run (a long garbage collection, a slow call holding the loop, the process
stopped by SIGSTOP or a debugger, the node suspended), the stream is not read and
events may be lost without a trace, with the stream still open and no outage. A
"not observed" answer must not rest on that time.

:class:`LoopStalls` ticks on the loop every :data:`TICK_SECONDS`; a tick that comes
more than :data:`STALL_SECONDS` late, while the stream was open, makes the span
from the previous tick to this one (read on the wall and boot clocks, so a clock
step inside it widens it: hotsymbols/clock_span.py) an outage of the source,
handed to the agent like a reconnect's (agent/outages.py) and stored as a
node-wide gap. Shorter stalls stay within what Tetragon's per-client queue holds.
The JSON export file keeps what was not read, so its source needs none of this.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from stellaops_runtime.hotsymbols.clock_span import covering, now_pair

log = logging.getLogger(__name__)

TICK_SECONDS = 0.25  # coarse: the threshold is seconds, and each tick wakes the loop
# A loop this late (beyond one tick) may have let Tetragon's per-client queue (--event-queue-size,
# 10,000 events) overflow: 2,000 events/s fill it in 5 s. Shorter lags are left unmarked: on a
# loaded machine (2 cores, several agents and a database) lags of 1-3 s were seen around a
# reconnect while a store migration ran on a thread, and marking them made ordinary reconnects'
# gaps start seconds early (tests/e2e/test_agent_e2e.py under -n 2).
STALL_SECONDS = 5.0
MAX_SPANS = 1024  # stalls not handed over yet; past it they merge into the last one


class LoopStalls:
    """Spans (wall ns) in which the event loop stalled while the stream was open."""

    def __init__(self, *, threshold: float = STALL_SECONDS, tick: float = TICK_SECONDS) -> None:
        self.threshold = threshold
        self.tick = tick
        self.stalls = 0  # stalls recorded
        self.seconds = 0.0  # their total length
        self.longest = 0.0
        self._spans: deque[tuple[int, int]] = deque()

    async def run(self, watching: Callable[[], bool]) -> None:
        """Tick until cancelled; ``watching()``: the stream is open (asked before and after a tick)."""
        before, was = now_pair(), watching()
        while True:
            await asyncio.sleep(self.tick)
            after, now = now_pair(), watching()
            late = (after[1] - before[1]) / 1e9 - self.tick
            if late > self.threshold and (was or now):
                self._record(before, after)
            before, was = after, now

    def _record(self, before: tuple[int, int], after: tuple[int, int]) -> None:
        span = covering(before[0], before[1], after[0], after[1])
        length = (after[1] - before[1]) / 1e9
        self.stalls += 1
        self.seconds += length
        self.longest = max(self.longest, length)
        if len(self._spans) >= MAX_SPANS:
            start, end = self._spans.pop()
            span = (min(start, span[0]), max(end, span[1]))
        self._spans.append(span)
        log.warning(
            "the agent's event loop did not run for %.1fs while the Tetragon stream was open "
            "(a long pause, a slow call on the loop, SIGSTOP): Tetragon may have dropped events "
            "for this client meanwhile; recorded as a gap",
            length,
        )

    def take(self) -> tuple[int, int] | None:
        """The oldest stall not handed over yet (start, end wall ns), or None."""
        return self._spans.popleft() if self._spans else None
