"""Tetragon when it is reachable, the agent's own BCC probes otherwise: one source that switches.

A node without Tetragon (or whose Tetragon went away) is still observed: the
switch runs the Tetragon gRPC source, and once Tetragon has not been
connected for ``native.fallbackAfterSeconds`` (or was never reached) it
starts the native probes (native/source.py). While they run, Tetragon is
asked every ``native.tetragonCheckSeconds`` whether it answers again; when it
does, the probes are stopped and the Tetragon stream takes over.

One queue, tagged by time. Both sources fill the agent's one EventQueue, and
their payloads are different formats (GetEventsResponse bytes vs. kernel
records with a /proc trailer). The two never run at once: a switch stops
the old source completely (its last records read, its task ended) before the
new one starts. The queue stamps every payload with its arrival time
(monotonic ns), so the switch records a *segment* at each switch: "payloads
that arrived from this instant on are the new source's". The boundary is
taken after the old source ended and before the new one starts, plus one
nanosecond (the clock is waited on until it has passed it), so every old
payload is stamped before it and every new one at or after it.
:meth:`SourceSwitch.process` (the pipeline thread) splits each batch at
the boundaries and hands each part to ``Pipeline.process_proto`` or
``Pipeline.process_native``. Nothing is tagged per payload and nothing a
source queued is lost in a switch: the queue is never cleared.

No overlap, so nothing counted twice. Since the sources never run together,
no event can reach the pipeline from both, with one exception: Tetragon's
event cache sends the first stream after the probes events stamped while the
probes still ran. That segment carries an Overlap (agent/source_switch_overlap.py)
that skips those the probes had counted. The price of the rule is a moment no source
watches. That moment is recorded as a node-wide observation gap with source
``none`` (hotsymbols/gaps.py ``source_gap``), so no "not observed" answer
covers it:

- Tetragon -> BCC: from the last moment Tetragon was known to deliver (the
  arrival of the stream's last message, or its opening; the agent's start,
  if it never connected) until the probes are attached;
- BCC -> Tetragon: from the moment the probes were asked to stop until the
  Tetragon stream is connected (if Tetragon fails again before that, the gap
  stays open until the probes are back).

While a gap is open it is marked up to now every second, so a drain in the
middle of it already carries it. A Tetragon outage that never reaches the
fallback delay is not a switch: the Tetragon source reports it itself
(``take_outage``, agent/outages.py), and it is a gap all the same.

Functions named by PURL (native/purl_wiring.py). While the probes run, the
PURL functions of the probe ConfigMap are resolved in every running container
of the lifecycle registry (``containers``, set by the agent), and their
targets added to the probes' uprobes. When the set of running containers
(id, pid) or the ConfigMap file (mtime, size) changes, the probes are
*reloaded*: looked at every ``RELOAD_CHECK_SECONDS``, at most once every
``RELOAD_MIN_SECONDS`` (agent/source_switch_purl.py). A reload is a switch from BCC to BCC, with the same
guarantees: the old probes read their last records and are detached before
the new ones attach, so no call is counted by both; a new segment numbers the
new targets; the moment between them is a node-wide gap with source ``none``.
The result per function (attached, not_found, ...) is in
``stats.purl_functions``, which the ObservationNode carries.

What the probes dropped in the kernel (native/drop_counters.py: rate limit,
sampling, a full buffer, recursion misses) is taken from the BCC source at
every tick (and after it stopped) and marked on the pipeline thread as a
node-wide gap carrying the count (hotsymbols/gaps.py ``native_drop``).

When BCC cannot work on the node (no BCC, no tracefs, no BPF permission),
the native probes' capability report (native/detect.py) says why: logged
once, kept in ``stats.native_why``, the posture is None, and the switch
keeps retrying Tetragon only; the agent never crash-loops over it.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stellaops_runtime.agent import source_switch_purl
from stellaops_runtime.agent.source_switch_back import SwitchBack
from stellaops_runtime.agent.source_switch_gaps import SwitchGaps
from stellaops_runtime.agent.source_switch_purl import ProbeReloads
from stellaops_runtime.agent.source_switch_stats import BCC, TETRAGON, SwitchStats, switch_metrics
from stellaops_runtime.contracts.config import AgentConfig
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.contracts.redact import redact
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_grpc import TetragonGrpcSource

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.agent.source_switch_overlap import Load, Overlap
    from stellaops_runtime.native.config import NativeConfig
    from stellaops_runtime.native.policy_config import PurlFunction
    from stellaops_runtime.native.purl_wiring import PurlWiring
    from stellaops_runtime.native.source import NativeProbeSource

log = logging.getLogger(__name__)

TICK_SECONDS = 0.2  # how often the switch looks at its sources
STOP_WAIT_SECONDS = 5.0  # how long a stopping BCC source may take to read its last records
# ... and at most this share of shutdown.graceSeconds, as its last read cut by the cancel after it
# (native/source.py CUT_LAST_READ_SECONDS): the stop of a source whose thread is hung takes at most
# half the grace (it took 15 s, whatever the grace), and the last drain and flush get the rest
STOP_SHARE = 0.25

InPipeline = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Segment:
    """Payloads that arrived at ``since_ns`` (monotonic) or later, until the next segment, are ``kind``'s."""

    since_ns: int
    kind: str  # TETRAGON | BCC
    native: NativeConfig | None = None  # the probes' configuration (BCC): numbers their targets
    # TETRAGON after BCC: the cached calls the probes counted already (agent/source_switch_overlap.py)
    overlap: Overlap | None = None


class SourceSwitch(SwitchGaps, ProbeReloads, SwitchBack):
    """Tetragon's gRPC stream or the native probes, one at a time (see the module docstring)."""

    def __init__(
        self, config: AgentConfig, *, queue: EventQueue, pipeline: Pipeline, in_pipeline: InPipeline
    ) -> None:
        self.config = config
        self.native_cfg = config.native
        self.queue = queue
        self.pipeline = pipeline
        self.in_pipeline = in_pipeline
        self.tetragon = TetragonGrpcSource(config.tetragon, queue=queue)
        self.bcc: NativeProbeSource | None = None
        self.mode = TETRAGON
        self.stats = SwitchStats(self)
        self._segments = [Segment(0, TETRAGON)]
        self._lock = threading.Lock()  # segments: appended on the event loop, read on the pipeline thread
        self._task: asyncio.Task[None] | None = None  # the active source's run
        self._sub_stop = asyncio.Event()
        self._tetragon_seen_ns = time.time_ns()  # wall clock Tetragon was last seen connected (or start)
        self._bcc_since_ns = 0  # wall clock of the latest switch to BCC: the probes count from here
        self._load_since_ns = 0  # ... of the latest reload since then (0: none)
        self._bcc_loads: list[Load] = []  # since then: the earlier loads (agent/source_switch_overlap.py)
        self._carried: Overlap | None = None  # the latest Tetragon segment's (source_switch_back.py)
        self._loads_file = config.store.spool_path + ".probe-loads" if config.store.spool_path else ""
        self._loads_written: object = None  # what was last written there (agent/source_switch_loads.py)
        self._bcc_unread: list[tuple[int, int]] = []  # since then: spans the probes counted nothing in
        self._lost_at: float | None = None  # monotonic time Tetragon was first seen not connected
        self._next_check = 0.0  # monotonic time of the next Tetragon check while BCC runs
        self._gap_from: int | None = None  # wall ns: an open switch gap starts here
        self._gap_marked = 0  # ... and is marked up to here
        self._gap_boots = (0, 0)  # boottime of _gap_from and _gap_marked (hotsymbols/clock_span.py)
        self._gap_mark_at = 0.0
        self._stopped = False  # run() has ended: the agent is stopping
        # Running containers of the lifecycle registry (records with container_id, status, pid).
        self.containers: Callable[[], Iterable[Any]] = tuple
        self.purl: PurlWiring | None = None  # the PURL functions' targets of the running probes
        self._purl_functions: list[PurlFunction] = []  # as of the last ConfigMap read
        self._config_stamp: tuple[int, int] | None = None  # (mtime ns, size) of that read
        self._reload_check_at = 0.0
        self._reloaded_at = 0.0
        self._marked = (0, 0)  # (connects, connect_failures) of the BCC source at the last mark

    @property
    def name(self) -> str:
        return self.bcc.name if self.mode == BCC and self.bcc is not None else self.tetragon.name

    # -- the pipeline side (pipeline thread) -----------------------------------

    def process(self, items: list[tuple[bytes, int]]) -> None:
        """Hand each payload to the pipeline method of the source that queued it (by arrival time)."""
        if not items:
            return
        with self._lock:
            segs = list(self._segments)
        starts = [s.since_ns for s in segs]
        k = max(0, bisect.bisect_right(starts, items[0][1]) - 1)
        i, n = 0, len(items)
        while i < n:
            seg = segs[k]
            nxt = starts[k + 1] if k + 1 < len(segs) else None
            j = n if nxt is None else bisect.bisect_left([r for _, r in items[i:]], nxt) + i
            if j > i:
                self._process(seg, items[i:j] if (i, j) != (0, n) else items)
            i = j
            k += 1
        if k - 1 > 0:  # segments before the last one used are done with
            with self._lock:
                del self._segments[: k - 1]

    def _process(self, seg: Segment, items: list[tuple[bytes, int]]) -> None:
        p = self.pipeline
        # Rows without an event source of their own (own drops after this batch, the lifecycle
        # observer's run windows) are this source's.
        p.gaps.source = p.aggregator.source = seg.kind
        if seg.kind == BCC:
            p.process_native(items, seg.native)
            return
        if (o := seg.overlap) is not None and o.live:  # before the fast path, which counts repeats unread
            before = o.skipped
            items = o.keep(items, self.tetragon.hold.ns(), p.max_stack_depth)
            self.stats.overlap_skipped += o.skipped - before
            if not items:
                return
        p.process_proto(items)

    def _boundary(
        self, kind: str, native: NativeConfig | None = None, overlap: Overlap | None = None
    ) -> None:
        """From now on, payloads are ``kind``'s (the old source has ended; the new has not started)."""
        since = time.monotonic_ns()
        while time.monotonic_ns() <= since:  # every later stamp is past the boundary
            pass
        with self._lock:
            self._segments.append(Segment(since + 1, kind, native, overlap))

    # -- the event loop side ------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._resume_loads(time.time_ns())  # no watch record: the old agent's loads end at this start
        self._start(self.tetragon.run)
        try:
            while not stop.is_set():
                try:
                    await self._tick()
                except asyncio.CancelledError:
                    raise
                except Exception:  # the switch must keep the agent observing whatever went wrong
                    log.exception("source switch: unexpected error (retrying)")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), TICK_SECONDS)
        finally:
            await self._stop_active()
            with contextlib.suppress(Exception):  # what the probes dropped before they stopped
                await self._mark_at_stop(self.config.shutdown.grace_seconds * STOP_SHARE)
            self._stopped = True  # an open gap is taken whole at shutdown (take_outage)

    def _start(self, run: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
        self._sub_stop = asyncio.Event()
        self._task = asyncio.create_task(run(self._sub_stop), name=f"source-{self.mode}")

    async def _stop_active(self) -> None:
        """End the running source: the probes read their last records first; Tetragon is cancelled."""
        task, self._task = self._task, None
        if task is None:
            return
        self._sub_stop.set()
        if self.mode == BCC:
            share = self.config.shutdown.grace_seconds * STOP_SHARE
            if self.bcc is not None:
                self.bcc.cut_wait_seconds = share
            done, _ = await asyncio.wait({task}, timeout=min(STOP_WAIT_SECONDS, share))
            if done:
                await asyncio.gather(task, return_exceptions=True)
                return
        task.cancel()  # an open Tetragon stream never looks at its stop event
        await asyncio.gather(task, return_exceptions=True)

    async def _tick(self) -> None:
        now = time.monotonic()
        await self._mark_undecided()  # loads whose cgroups were not all found (source_switch_back.py)
        if self.mode == TETRAGON:
            await self._tick_tetragon(now)
        else:
            await self._tick_bcc(now)
        if self._gap_from is not None and now >= self._gap_mark_at:
            await self._mark_gap(time.time_ns())

    async def _tick_tetragon(self, now: float) -> None:
        await self._tetragon_facts(now)  # tails and clones its policies do not name (native/host_tails.py)
        if self.tetragon.stats.connected:
            self._lost_at = None
            if not self.tetragon.delivering:  # Tetragon listens on the stream once it delivers
                return
            # the last moment it is known to have delivered (its last message)
            self._tetragon_seen_ns = self.tetragon.alive_ns
            if self._gap_from is not None:
                await self._close_gap(self._tetragon_seen_ns)
            return
        if self._lost_at is None:
            self._lost_at = now
        if not self.native_cfg.enabled or self.stats.native_posture is Posture.NONE:
            return
        if now - self._lost_at >= self.native_cfg.fallback_after_seconds:
            await self._to_bcc()

    async def _tick_bcc(self, now: float) -> None:
        b = self.bcc
        if b is not None and b.stats.connected and self._gap_from is not None:
            await self._close_gap(b.stats.attached_ns)
        elif b is not None and not b.stats.connected and b.stats.detached_ns and self._gap_from is None:
            self._open_gap(b.stats.detached_ns)  # detached on their own (an error): nobody watches
        if b is not None:
            self._mark_purl(b)
            await self._look_up_cgroups()  # once per load, on a thread
            await self._mark_native_drops()
            self._persist_loads(b)
        if now >= self._reload_check_at:
            self._reload_check_at = now + source_switch_purl.RELOAD_CHECK_SECONDS
            if now - self._reloaded_at >= source_switch_purl.RELOAD_MIN_SECONDS and self._reload_wanted():
                await self._reload_bcc()
                return
        if now < self._next_check:
            return
        t = self.config.tetragon
        self._next_check = now + self.native_cfg.tetragon_check_seconds
        from stellaops_runtime.agent.capabilities import probe_tetragon

        info = await probe_tetragon(t.address, timeout_s=min(t.timeout_seconds, 5.0))
        if info.reachable:
            await self._to_tetragon()

    async def _to_bcc(self) -> None:
        if self.bcc is None and not await self._make_bcc():
            return
        assert self.bcc is not None
        waited = self.native_cfg.fallback_after_seconds
        was = "has not been reachable" if not self.tetragon.stats.connects else "has been unreachable"
        log.warning(
            "Tetragon at %s %s for %gs: switching to the agent's own BCC probes (posture %s)",
            redact(self.config.tetragon.address), was, waited, self.stats.native_posture,
        )  # fmt: skip
        await self._stop_active()  # not connected, so it queues nothing more
        self.tetragon.forget_outage()  # the switch's gap (below) covers it from here on
        cfg = await self._configure()
        self.bcc.cfg = cfg
        self._reloaded_at = time.monotonic()
        self._open_gap(self._tetragon_seen_ns)
        self.mode = BCC
        self._boundary(BCC, cfg)
        self.stats.switches["tetragon_to_bcc"] += 1
        self._next_check = time.monotonic() + self.native_cfg.tetragon_check_seconds
        self._bcc_since_ns, self._load_since_ns = time.time_ns(), 0
        self._carry_loads()  # the last period's, while Tetragon's cache may still send their calls
        self._start(self.bcc.run)

    async def _to_tetragon(self) -> None:
        log.info(
            "Tetragon at %s answers again: stopping the BCC probes, streaming from Tetragon",
            redact(self.config.tetragon.address),
        )
        self._open_gap(time.time_ns())  # the probes may detach any moment from now
        await self._look_up_cgroups()  # a load that ran less than a tick (no lookup yet)
        await self._stop_active()
        overlap = self._carried = self._overlap()  # before the unwatched spans are taken (marked as gaps)
        self._keep_loads(overlap)  # for an agent restarted before the cache has sent them
        self._undecided_gaps(overlap)
        await self._mark_undecided()
        await self._mark_native_drops()
        self._set_wiring(None)
        self.mode = TETRAGON
        self._boundary(TETRAGON, overlap=overlap)
        self.stats.switches["bcc_to_tetragon"] += 1
        self._lost_at = None
        self._start(self.tetragon.run)

    async def _make_bcc(self) -> bool:
        """Detect what BCC can do here (once); build the native source, or say why it cannot run."""
        from stellaops_runtime.native.detect import detect
        from stellaops_runtime.native.session import default_cache_dir

        rep = await asyncio.to_thread(
            detect, mount_tracefs=True, compile_test=True, cache_dir=default_cache_dir()
        )
        self.stats.native_posture = rep.posture
        self.stats.native_why = "; ".join(rep.missing)  # what the next posture level lacks
        if rep.posture is Posture.NONE:
            self.stats.native_why = self.stats.native_why or "native probes give posture None"
            log.error(
                "Tetragon at %s is unreachable and the agent's own BCC probes cannot run on this node: %s; "
                "no source observes it (posture None) until Tetragon answers",
                redact(self.config.tetragon.address), self.stats.native_why,
            )  # fmt: skip
            return False
        from stellaops_runtime.native.known_files import known_path
        from stellaops_runtime.native.source import NativeProbeSource

        self.bcc = NativeProbeSource(
            self.native_cfg.probes, queue=self.queue, kernel_source=rep.kernel_source,
            ring_buffer=rep.ok("ring buffer"), retry_seconds=self.native_cfg.retry_seconds,
            known_path=known_path(self.config.store.spool_path),  # the files probed, for the next start
            debug_files=self.config.symbols.debug_files,  # symbols.debugFiles: a probe's symbol too
        )  # fmt: skip
        return True

    @property
    def received_by_source(self) -> dict[str, int]:
        out = {self.tetragon.name: self.tetragon.stats.received}
        if self.bcc is not None:
            out[self.bcc.name] = self.bcc.stats.received
        return out

    def metrics(self) -> Iterator[Metric]:
        return switch_metrics(self)
