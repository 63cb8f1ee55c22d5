"""Source outages become observation gaps: the time nobody watched is never "not observed".

Tetragon's gRPC stream replays nothing after a reconnect, so every moment
between a stream that ended and the next one is unwatched, even a reconnect
of a fraction of a second. The source (sources/tetragon_grpc.py, or the
source switch, agent/source_switch.py) reports each outage's span through
``take_outage``; this loop hands the spans to the gap tracker on the
pipeline thread once a second, as node-wide gaps of the agent's node
(hotsymbols/gaps.py ``source_gap``). An outage still open is marked up to
now each time, so a drain in the middle of it already carries it.

A source without ``take_outage`` (Tetragon's JSON export file: the file
keeps what the agent has not read yet) has no outages.

Each tick also hands over the spans in which Tetragon had not loaded our
policies yet (agent/policy_load_gaps.py, when the ObservationNode writer
reads their states), and samples the source's last watching moment for the node's
watch record (agent/watch_record.py), so the hole between this agent and the
next one on the node is a gap too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from stellaops_runtime.hotsymbols.clock_span import now_pair

log = logging.getLogger(__name__)

MARK_SECONDS = 1.0
BCC = "bcc"  # agent/source_switch_stats.py BCC: the switch's mode while the native probes watch


def unknown_counts(source: Any) -> bool:
    """Tetragon's unreadable counters make the time unknown only while Tetragon is the source: while
    the source switch runs the native probes (Tetragon down, its metrics server too) they watch."""
    return getattr(source, "mode", None) != BCC


class OutageMarker:
    """Moves the source's outages into the pipeline's gap tracker (see the module docstring)."""

    def __init__(self, source: Any, *, pipeline: Any, in_pipeline: Callable[..., Awaitable[Any]]) -> None:
        self.source = source
        self.take = getattr(source, "take_outage", None)
        self.record: Any = None  # agent/watch_record.py WatchRecord: sampled on every tick
        self.policies: Any = None  # agent/policy_load_gaps.py PolicyLoadWatch: its spans are gaps too
        # sources/tetragon_metrics.py TetragonMetricsPoller: spans in which Tetragon counted lost events
        self.drops: Any = None
        self.node_files: Any = None  # agent/node_file_gaps.py NodeFileGaps: a probed node file replaced
        self.pipeline = pipeline
        self.in_pipeline = in_pipeline
        self.outages = 0  # spans handed over (stellaops_runtime_source_outage_marks_total)
        self.seconds = 0.0  # unwatched seconds recorded as gaps
        self._held: tuple[int, int] | None = None  # a span taken from the source, not marked yet
        self._probes_ticked = False  # the last tick found the source switch's native probes watching
        # One mark at a time: the tick, a drain (agent/draining.py) and shutdown each call mark(), and
        # two at once would hand the same held span over twice.
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self.take is not None

    async def mark(self) -> None:
        """Hand over what the source reports now (every tick, at shutdown, and before a drain while an
        export file's first-line span is due: agent/draining.py ``_mark_outages``)."""
        async with self._lock:
            await self._mark_now()

    async def _mark_now(self) -> None:
        await self._mark_drops()
        await self._mark_node_files()
        if self.take is None:
            return
        await self._mark_unloaded()
        # A span taken but not marked (a cancelled or failed call) is kept and marked next time,
        # merged with what the source reports then: a gap is never lost between the two.
        span = self.take()
        if self._held is not None:  # the union: a span widened by a clock step may start earlier
            held = self._held
            span = held if span is None else (min(held[0], span[0]), max(held[1], span[1]))
        if span is None:
            return
        self._held = span
        start, end = span
        await self.in_pipeline(self.pipeline.gaps.source_gap, self.pipeline.node_name, start, end)
        self._held = None
        self.outages += 1
        self.seconds += (end - start) / 1e9

    async def _mark_unloaded(self) -> None:
        """The policy watch's spans (agent/policy_load_gaps.py): our policies not loaded yet."""
        if self.policies is None:
            return
        spans = self.policies.take()
        for i, (start, end) in enumerate(spans):
            try:
                await self.in_pipeline(self.pipeline.gaps.source_gap, self.pipeline.node_name, start, end)
            except BaseException:
                self.policies.give_back(spans[i:])  # marked next time: a gap is never lost
                raise
        self.policies.marked()  # in the pipeline: the watch record may claim past them now

    async def _mark_node_files(self) -> None:
        """A node file Tetragon probes was replaced (agent/node_file_gaps.py): node-wide gaps while
        Tetragon is the source (the switch's own probes follow the file)."""
        if self.node_files is None:
            return
        spans = self.node_files.take(counts=unknown_counts(self.source))
        for i, (start, end) in enumerate(spans):
            try:
                await self.in_pipeline(self.pipeline.gaps.source_gap, self.pipeline.node_name, start, end)
            except BaseException:
                self.node_files.give_back(spans[i:])  # marked next time: a gap is never lost
                raise
        self.node_files.marked()

    async def _mark_drops(self) -> None:
        """The metrics poller's spans (sources/tetragon_metrics.py): Tetragon said it lost events."""
        if self.drops is None:
            return
        through = self.drops.known_through()  # every loss before it is in these spans or marked before
        spans = self.drops.take()
        for i, (start, end, count) in enumerate(spans):
            try:
                await self.in_pipeline(
                    self.pipeline.gaps.tetragon_drop, self.pipeline.node_name, start, end, count
                )
            except BaseException:
                self.drops.give_back(spans[i:])  # marked next time: a gap is never lost
                raise
        # Scrapes failing for over an interval (sources/tetragon_metrics.py take_unknown): what Tetragon
        # lost since the last good one is unknown, a node-wide gap up to now.
        now, now_boot = now_pair()
        unknown = self.drops.take_unknown(now, now_boot)
        if not unknown_counts(self.source):
            if not self._probes_ticked:
                # the first tick since the switch to the native probes: Tetragon was the source from its
                # last read until the switch, and what it lost then no scrape tells any more (the
                # baseline moves on below): that time up to now is a gap (review RTM)
                start = self.drops.unread_from()
                if start is not None and start != now:  # a clock step back: the span reversed
                    span = (min(start, now), max(start, now))
                    unknown = (
                        span if unknown is None else (min(span[0], unknown[0]), max(span[1], unknown[1]))
                    )
                if unknown is not None:
                    try:
                        await self.in_pipeline(
                            self.pipeline.gaps.tetragon_unread, self.pipeline.node_name, *unknown
                        )
                    except BaseException:
                        self.drops.give_back_unknown(unknown)  # this tick is the first again next time
                        raise
                self._probes_ticked = True
            # the native probes watch: Tetragon's losses from here do not matter (its next good scrape
            # counts from here: BCC's time is no gap)
            self.drops.watched_elsewhere(now)
            through = self.drops.known_through()
        elif unknown is not None:
            self._probes_ticked = False
            try:
                await self.in_pipeline(self.pipeline.gaps.tetragon_unread, self.pipeline.node_name, *unknown)
            except BaseException:
                self.drops.give_back_unknown(unknown)
                raise
            through = unknown[1] if through is None else max(through, unknown[1])
        else:
            self._probes_ticked = False
        # a flush starting from here drains them: the watch record may claim up to here
        self.drops.marked_through = through

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.mark()
            except asyncio.CancelledError:
                raise
            except Exception:  # never end gap marking over one failure
                log.exception("marking a source outage as a gap failed (retried)")
            if self.record is not None:
                self.record.tick(self.source)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), MARK_SECONDS)
