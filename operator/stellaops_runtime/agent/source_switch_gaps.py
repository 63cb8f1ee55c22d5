"""The source switch's gaps: no source watched the node between two sources, or the probes dropped.

Split from :mod:`stellaops_runtime.agent.source_switch` (a mixin of ``SourceSwitch``: the
attributes are the switch's). A switch from Tetragon to the native probes, or back, leaves a span
in which no source watched the node: it is opened when the active source is lost, marked as a
node-wide gap (hotsymbols/gaps.py ``source_gap``) up to now every ``GAP_MARK_SECONDS`` and when
the next source delivers, and handed to agent/outages.py through :meth:`SwitchGaps.take_outage`
so an agent stopped right after a switch still records all of it; a wall-clock step inside it
widens each span to hold both clocks' sides (hotsymbols/clock_span.py, measured by boottime, so
a step back never drops it). The probes' own kernel drops
become gaps too, never lost between two marks. The watch record (agent/watch_record.py) asks
:meth:`SwitchGaps.watching_ns` for the last moment a source was known to watch.

Probes limited to cgroups (``native.cgroupAllow``) watched no other container of the node, nor its
host processes, and saw nothing of them to tell which images ran there: the span they run is a
node-wide gap too (:meth:`SwitchGaps._mark_limited`), marked with their drops (so a watch record
never claims past it) and up to the switch's own gap when they stop; their counted calls stay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from stellaops_runtime.agent.source_switch_stats import BCC, TETRAGON, SwitchStats
from stellaops_runtime.hotsymbols.clock_span import boot_bracket, boot_of, covering, now_pair

if TYPE_CHECKING:
    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.native.config import NativeConfig
    from stellaops_runtime.native.source import NativeProbeSource
    from stellaops_runtime.sources.tetragon_grpc import TetragonGrpcSource

log = logging.getLogger("stellaops_runtime.agent.source_switch")

GAP_MARK_SECONDS = 1.0  # an open gap is marked up to now this often
MAX_UNREAD = 256  # spans the switch back keeps of one BCC period; older ones merge


class SwitchGaps:
    """The switch's open gap and the probes' drops (a mixin: see the module docstring)."""

    pipeline: Pipeline
    in_pipeline: Callable[..., Awaitable[Any]]
    tetragon: TetragonGrpcSource
    bcc: NativeProbeSource | None
    mode: str
    stats: SwitchStats
    _gap_from: int | None
    _gap_marked: int
    _gap_boots: tuple[int, int]  # boottime of _gap_from and of _gap_marked
    _gap_mark_at: float
    _stopped: bool
    _tetragon_seen_ns: int
    _bcc_unread: list[tuple[int, int]]  # spans taken since the switch to BCC: the probes counted nothing
    _drops_marked_ns = 0  # the probes' drops and unwatched spans up to here are marked (noted_ns, last taken)

    _bcc_since_ns: int  # the latest switch to BCC
    _load_since_ns: int  # ... and reload since then
    _limited_from: int | None = None  # limited loads' spans are marked up to here (None: none yet)
    _limited_closed: tuple[tuple[int, int], ...] = ()  # spans of stopped limited loads, to mark

    if TYPE_CHECKING:  # agent/source_switch_back.py

        def _resume_loads(self, cut_ns: int) -> None: ...
        def _probes_config(self) -> NativeConfig | None: ...

    # -- gaps ---------------------------------------------------------------------

    def _open_gap(self, from_ns: int) -> None:
        if self._gap_from is None:
            if (start := self._limited_start()) is not None:  # the switch's gap goes on from here
                self._limited_closed = (*self._limited_closed, (min(start, from_ns), max(start, from_ns)))
                self._limited_from = from_ns
            self._gap_from = self._gap_marked = from_ns
            boot = boot_of(from_ns)
            self._gap_boots = (boot, boot)
            self._gap_mark_at = 0.0

    async def _mark_gap(self, to_ns: int) -> None:
        """Mark the open gap up to ``to_ns`` (a recent wall-clock moment); a moment already marked
        (by boottime: the wall clock may have stepped) marks nothing more."""
        start, (from_boot, start_boot) = self._gap_marked, self._gap_boots
        # ``to_ns`` ends this span at its latest boottime and starts the next at its earliest
        next_boot, to_boot = boot_bracket(to_ns)
        if to_boot > start_boot:
            a, b = covering(start, start_boot, to_ns, to_boot)
            await self.in_pipeline(self.pipeline.gaps.source_gap, self.pipeline.node_name, a, b)
            self._gap_marked, self._gap_boots = to_ns, (from_boot, next_boot)
        self._gap_mark_at = time.monotonic() + GAP_MARK_SECONDS

    async def _close_gap(self, to_ns: int) -> None:
        await self._mark_gap(to_ns)
        if self._gap_from is None:  # take_outage (agent/outages.py) closed it, and said so, meanwhile
            return
        log.info(
            "source %s delivers: no source observed this node for %.1fs (recorded as a gap)",
            self.mode, self._gap_seconds(),
        )  # fmt: skip
        self._gap_from = None

    def _gap_seconds(self) -> float:
        """How long the open gap has lasted so far (boottime: steady whatever the wall clock did)."""
        return (self._gap_boots[1] - self._gap_boots[0]) / 1e9

    async def _mark_at_stop(self, wait_seconds: float) -> None:
        """At the switch's end (the agent's shutdown): what :meth:`_mark_native_drops` marks, each job
        handed to the pipeline thread at once and in order, then waited for at most ``wait_seconds``.

        Marked one by one, each awaited behind the job holding that thread (a first drain attributing
        for a minute on a loaded node), the switch's stop, which the shutdown awaits with no deadline
        before its last drain, final flush and spool, outlasted the grace and could outlast the pod's
        (SIGKILL: the rows held, never spooled). Handed over, the jobs run on that thread ahead of the
        last drain, queued after them, whether or not they were waited for."""
        waits, handed = self.in_pipeline, []

        async def hand_over(fn: Callable[..., Any], *args: Any) -> None:
            job = asyncio.ensure_future(waits(fn, *args))
            job.add_done_callback(_retrieved)
            handed.append(job)
            await asyncio.sleep(0)  # the job's first step puts it on the pipeline thread's queue, in order

        self.in_pipeline = hand_over
        try:
            await self._mark_native_drops()
        finally:
            self.in_pipeline = waits
        if handed:
            await asyncio.wait(handed, timeout=wait_seconds)

    async def _mark_native_drops(self) -> None:
        """The probes' kernel drops become gaps; one not marked (a failed or cancelled call) is put back
        in front of the source's queue and marked by the next call, never lost."""
        b = self.bcc
        through = b.noted_ns if b is not None else 0  # every drop and unwatched span before it is taken now
        drops = b.take_drops() if b is not None else []
        while drops:
            d = drops[0]
            try:
                await self.in_pipeline(
                    self.pipeline.gaps.native_drop,
                    self.pipeline.node_name,
                    d.start_ns,
                    d.end_ns,
                    d.total,
                    BCC,
                )
            except BaseException:
                b.stats.drops[:0] = drops  # type: ignore[union-attr]
                raise
            drops.pop(0)
            self.stats.native_drop_gaps += 1
            self._note_unread(d.start_ns, d.end_ns)
        spans = b.take_unwatched() if b is not None else []
        while spans:  # a probed file replaced: its new processes were unwatched until followed
            try:
                await self.in_pipeline(self.pipeline.gaps.source_gap, self.pipeline.node_name, *spans[0])
            except BaseException:
                b.stats.unwatched[:0] = spans  # type: ignore[union-attr]
                raise
            self._note_unread(*spans.pop(0))
        await self._mark_limited(through)
        self._drops_marked_ns = through

    def _limited_start(self) -> int | None:
        """Where the running probes' unmarked span begins when they are limited to cgroups
        (``native.cgroupAllow``); None when they are not, or have not attached since their load."""
        native, b = self._probes_config(), self.bcc
        if native is None or b is None or not native.cgroup_allow or self.mode != BCC:
            return None
        attached = b.stats.attached_ns
        if not attached or attached < max(self._bcc_since_ns, self._load_since_ns):
            return None  # this load has not attached yet: the switch's own gap holds its time
        return attached if self._limited_from is None else max(self._limited_from, attached)  # a new load

    async def _mark_limited(self, through: int) -> None:
        """Probes limited to cgroups watched no other container, nor the host's processes: their span
        up to ``through`` (and the spans of such loads stopped since) is a node-wide gap, unknown,
        never "not observed" about a run nobody probed. Both ends ordered: a wall clock stepped back
        marks the time before the last mark, never nothing."""
        while self._limited_closed:
            a, b = self._limited_closed[0]
            await self.in_pipeline(self.pipeline.gaps.source_gap, self.pipeline.node_name, a, b)
            self._limited_closed = self._limited_closed[1:]
        start = self._limited_start()
        if start is None or through == start:
            return
        a, b = min(start, through), max(start, through)
        await self.in_pipeline(self.pipeline.gaps.source_gap, self.pipeline.node_name, a, b)
        self._limited_from = through

    def _note_unread(self, start_ns: int, end_ns: int) -> None:
        """Keep a span the probes counted nothing in for the switch back's Overlap (a taken span
        must not let it skip Tetragon's cached calls of then: their only count); past
        MAX_UNREAD the two oldest merge (wider: fewer skips, never a lost count)."""
        spans = self._bcc_unread
        spans.append((start_ns, end_ns))
        if len(spans) > MAX_UNREAD:
            first, second = spans[0], spans.pop(1)
            spans[0] = (min(first[0], second[0]), max(first[1], second[1]))

    def take_outage(self) -> tuple[int, int] | None:
        """What agent/outages.py records as a gap: the switch's own open gap up to now (closed once
        Tetragon delivers again, so an agent stopped right after a switch still records all of it),
        else Tetragon's own outages while it is the source."""
        if self._gap_from is not None:
            end, end_boot = now_pair()
            start, start_boot = self._gap_marked, self._gap_boots[1]
            span = covering(start, start_boot, end, end_boot) if end_boot > start_boot else None
            if span is not None:
                self._gap_marked, self._gap_boots = end, (self._gap_boots[0], end_boot)
            if self._stopped or (self.mode == TETRAGON and self.tetragon.delivering):  # it listens
                log.info(
                    "source %s %s: no source observed this node for %.1fs (recorded as a gap)",
                    self.mode, "stopped" if self._stopped else "delivers", self._gap_seconds(),
                )  # fmt: skip
                self._gap_from = None
            return span if span is not None and span[1] > span[0] else None
        return self.tetragon.take_outage() if self.mode == TETRAGON else None

    def resume_outage(self, from_ns: int, from_boot: int | None = None) -> None:
        """Nobody watched since ``from_ns`` (boottime ``from_boot``; the last agent's record,
        agent/watch_record.py): Tetragon's outage until its first stream opens, or the switch's gap
        until the probes attach."""
        self.tetragon.resume_outage(from_ns, from_boot)
        self._tetragon_seen_ns = min(self._tetragon_seen_ns, from_ns)
        self._resume_loads(from_ns)  # the last agent stored its probes' counts up to then

    def first_agent(self) -> None:
        """The node's first agent (agent/watch_record_store.py): the hold before Tetragon's first
        stream is a gap (sources/tetragon_grpc.py ``first_agent``)."""
        self.tetragon.first_agent()

    def watching_ns(self) -> int | None:
        """The last moment the active source was known to watch; None during an outage or a switch."""
        return self._watching(in_flight=True)

    def live_ns(self) -> int | None:
        """The node's proof of life's moment (agent/watch_record.py ``claimed``): Tetragon's stream's
        while it reads it (sources/tetragon_grpc.py ``live_ns``: now less the hold while a stream that
        delivered is open, silent or not), the probes' watching moment while they run; None during
        the switch's gap. Without it a silent stream read through the switch claimed its last message
        only, and a live idle node read as down (store/coverage_live.py)."""
        if self._gap_from is not None:
            return None
        return self.tetragon.live_ns() if self.mode == TETRAGON else self.watching_ns()

    def flush_moment_ns(self) -> int | None:
        """:meth:`watching_ns` as a flush starts (agent/watch_record.py ``flush_starts``), while the
        probes run only: then no outage waits for the outage marker's tick (the switch's own gap
        makes the moment None while open, Tetragon's are forgotten at the switch, the probes' drops
        hold the moment until marked). Tetragon's stream outages and loop stalls wait for that tick,
        which samples after marking them: a flush between two ticks must not claim past them."""
        return self.watching_ns() if self.mode == BCC else None

    def watching_at_stop_ns(self) -> int | None:
        """:meth:`watching_ns` as a graceful stop is asked (agent/runner.py: its final record). The
        probes' last read then takes each call still in flight as a record at its entry, or marks the
        time since their load as a gap when it cannot (native/source_read.py ``_final_counters``), so
        a call running for long does not hold the moment, as it does for an agent killed during it."""
        return self._watching(in_flight=False)

    def _watching(self, *, in_flight: bool) -> int | None:
        if self._gap_from is not None:
            return None
        if self.mode == TETRAGON:
            return self.tetragon.watching_ns()
        # the probes: the start of their last poll queued whole, not now (a call since may still be in
        # the kernel's buffer), no later than their drops and unwatched spans are marked (one not marked
        # yet would die unmarked with a killed agent: native/source_gaps.py noted_ns), nor than the
        # entry of a probed call still running (it is recorded at its return, stamped at its entry):
        # a record claiming more would hide a loss
        # (watch_record.py), and the next agent would skip Tetragon's copy (source_switch_loads.py)
        b = self.bcc
        if b is None or not b.stats.connected:
            return None
        read = min(b.queued_ns, self._drops_marked_ns)
        return min(read, b.in_flight_ns) if in_flight else read


def _retrieved(job: asyncio.Future[Any]) -> None:
    """A mark handed over at the stop and not waited for: its error is logged, never left unretrieved."""
    if not job.cancelled() and (e := job.exception()) is not None:
        log.error("marking the probes' drops as gaps at the stop failed: %r", e)
