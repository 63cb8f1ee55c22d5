"""The native probes as an agent source: the same interface as the Tetragon sources.

``run(stop)`` loads the probes, then moves every record into the agent's
EventQueue with the /proc facts it needs (procinfo.py, events.encode_trailer)
until ``stop`` is set; ``stats`` has the fields the agent reads from any source
(``connects``, ``connected``, ``received``, ``last_error``) plus the probes'
in-kernel counters. All BCC calls run on one dedicated thread: polling blocks,
and the event loop must not. A file's address lookup (up to 120 s on a hostile
file) runs on a thread of its own, while that thread goes on reading the
buffer (:meth:`_idle`, native/lookup.py).

A load failure (no BCC, no tracefs, a kernel that refuses the program) is
not retried in a tight loop: it is reported in ``last_error`` (its message
through contracts/redact.py, as are the log lines and the reader's traceback:
BCC's or a reader's message may quote a path, a DSN or an event's text) and tried again
after ``retry_seconds``; so is an unexpected error while the probes run (they
are closed, their counters read a last time, then loaded again), which the
switch marks as a gap from the moment they were detached.

``run`` may be called again after it returned (the agent's source switch,
agent/source_switch.py, stops and restarts the probes as Tetragon comes and
goes): counters add up across runs, and ``attached_ns`` / ``detached_ns`` say
(wall clock) when the probes of the latest run were attached and detached,
the edges of the observation gaps around a switch. ``cfg`` may be replaced
between runs (the probe ConfigMap is read again at every switch).

What no record holds is kept for the switch to mark as gaps
(native/source_gaps.py): what the probes dropped between two reads of their
kernel counters (about once a second), and the time a replaced target's new
file, or a former file found late, was run unprobed; the buffer's reads and
each record's /proc trailer are native/source_read.py's. A read that a
cancel cuts short (the switch waits STOP_WAIT_SECONDS for a stopping source,
then cancels it; the ``bcc`` thread goes on and its records reach nobody) is
a gap too (the last read after a cancel waits at most ``CUT_LAST_READ_SECONDS``
behind what held the thread, then is given up: its time a gap, and the stop
is never held for ever), as is a read an unexpected error of the reader ends (the batch it
had taken from the buffer): from the start of the last poll whose records
were queued (or the previous look at the counters or the targets' files, if
earlier; the load, while its former-file scan had processes left as of the
last answer taken from it, or when the last read's uprobe calls in flight,
each a record at its entry, reached nobody) to the detach
(:meth:`NativeProbeSource._note_cut`), both sides of a wall-clock step inside
it (:meth:`SourceGaps._span`). Probes stopped before that scan ended read
its rest: a former file there (or processes still unread after
``STOP_SCAN_SECONDS``) makes their whole run unwatched. The files the loads probed are kept for
a renamed-away former file's sake: across reloads in memory, across agent
restarts in ``known_path`` (native/known_files.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
import traceback

from stellaops_runtime.contracts.redact import redact, redact_error
from stellaops_runtime.native import known_files
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.drop_counters import Key
from stellaops_runtime.native.follow import Followed
from stellaops_runtime.native.loader import LoadError, ProbeSet, load
from stellaops_runtime.native.probe_thread import ProbeThread
from stellaops_runtime.native.procinfo import ProcCache
from stellaops_runtime.native.source_gaps import SourceGaps
from stellaops_runtime.native.source_owned import owned
from stellaops_runtime.native.source_read import SourceReader
from stellaops_runtime.native.source_stats import NativeStats
from stellaops_runtime.native.symcancel import cancellable
from stellaops_runtime.sources.queue import EventQueue

log = logging.getLogger(__name__)

POLL_MS = 100
# After the switch's cancel, the last read waits behind whatever held the probes' thread past
# STOP_WAIT_SECONDS; past this it is given up (its time a gap): shutdown is never held for ever.
# More than a last read takes (its scan's rest is at most follow.STOP_SCAN_SECONDS).
CUT_LAST_READ_SECONDS = 10.0


class NativeProbeSource(SourceGaps, SourceReader):
    """Streams native probe records (with their /proc trailer) into an EventQueue until stopped."""

    name = "bcc"

    def __init__(
        self,
        cfg: NativeConfig,
        *,
        queue: EventQueue,
        kernel_source: str,
        ring_buffer: bool = True,
        retry_seconds: float = 30.0,
        proc_root: str = "/proc",
        known_path: str = "",
        debug_files: bool = True,
    ) -> None:
        self.cfg = cfg
        self.queue = queue
        self.kernel_source = kernel_source
        self._ring_buffer_ok = ring_buffer  # the kernel has one (detect.py)
        self.ring_buffer = ring_buffer and not cfg.force_perf_buffer
        self.retry_seconds = retry_seconds
        self.stats = NativeStats()
        self.procs = ProcCache(proc_root=proc_root)
        self.probes: ProbeSet | None = None
        self._thread: ProbeThread | None = None
        # the cut last read's wait when less than CUT_LAST_READ_SECONDS: the switch's share of
        # shutdown.graceSeconds (agent/source_switch.py), so a hung thread cannot hold the shutdown past it
        self.cut_wait_seconds: float | None = None
        self.ready = asyncio.Event()  # set once the probes are attached (or the load failed)
        self._drop_prev: dict[Key, int] = {}  # drop counters at the previous read of this run
        self._drop_read_ns = 0  # wall clock of that read (of the load, before the first)
        self._episode: dict[Key, int] | None = None  # drops of the current episode (None: none)
        self._episode_logged = 0.0  # monotonic time of its last log line
        self._follow_ns = 0  # wall clock of the last look at the uprobe targets' files
        self._load_ns = 0  # wall clock of the start of the last load
        self._queued_ns = 0  # wall clock at the start of the latest poll whose records are all queued
        self._in_flight_ns = (
            0  # wall clock: no uprobe call entered before it is still running (source_read.py)
        )
        self._tail_lost_since: int | None = None  # set by the last read when it could not read all
        self._tail_queued = False  # the last read of this run queued its tail (the calls in flight)
        self._scan_open = False  # the load's former-file scan unfinished as of the last answer taken
        # wall clock minus boottime since the load: the largest, the latest, whether it stepped
        self._offset_hi: int | None = None  # None: not sampled (no run yet; source_gaps._clock_seen)
        self._offset_last = 0
        self._stepped = False
        # the files the loads probed per target path: a later load knows one renamed away by them
        self._known: dict[str, dict[tuple[int, int], tuple[int, int]]] = {}
        # ... kept on disk for the agent's next start (native/known_files.py; '': not kept)
        self.known_path = known_path
        self.debug_files = debug_files  # the agent's symbols.debugFiles: a uprobe's symbol in debug files
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._known_saved: dict[str, dict[tuple[int, int], tuple[int, int]]] = {}
        if known_path:
            try:
                self._known = known_files.read(known_path)
            except known_files.KnownFileError as e:
                self.stats.known_errors += 1
                log.warning(
                    "the native probes' files of the last agent (%s) cannot be used: %s; a file renamed "
                    "away before this start is not recognised", redact(known_path), e,
                )  # fmt: skip
            self._known_saved = {p: dict(f) for p, f in self._known.items()}

    @property
    def queued_ns(self) -> int:
        """Wall clock at the start of the latest poll whose records are all queued (of this run: its
        load's start until its first poll): a call stamped before it and returned is queued (one
        still running is recorded at its return, or at the probes' stop: native/loader.py in_flight)."""
        return self._queued_ns

    @property
    def in_flight_ns(self) -> int:
        """Wall clock: no uprobe call entered before it was still running at the last look (about
        once a second, taken before a poll and applied once that poll is queued, so a call that
        returned before the look is queued by then; of this run: its load's start until then). A call
        running when the agent is killed is never recorded, and Tetragon's copy is stamped at its entry."""
        return self._in_flight_ns

    async def _call(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def run(self, stop: asyncio.Event) -> None:
        if self._thread is not None:  # a cancelled run's load may still go on there: one load at a time
            self._thread.shutdown(wait=False)  # awaited here, not in a thread the exit joins
            await asyncio.shield(asyncio.wrap_future(self._thread.ended))
        self._thread = ProbeThread("bcc")  # a daemon: one that never returns holds no exit
        self._loop, self._stop = asyncio.get_running_loop(), stop
        self.ready.clear()
        self.ring_buffer = self._ring_buffer_ok and not self.cfg.force_perf_buffer
        try:
            while not stop.is_set():
                self._drop_prev, self._drop_read_ns = {}, time.time_ns()  # a new program counts from zero
                self._follow_ns = self._drop_read_ns  # the targets' files are looked at in the load
                self._load_ns = self._queued_ns = self._in_flight_ns = self._drop_read_ns
                self._clock_seen(reset=True)
                self._tail_queued = False
                given_up = threading.Event()  # the load's lookups end at their next step once set
                try:  # cancelled meanwhile (the switch gave up waiting): what it loads is closed
                    self.probes = await owned(
                        self._thread, functools.partial(self._load_until, given_up), lambda ps: ps.close()
                    )
                except asyncio.CancelledError:  # no lookup reads on for a load nobody takes
                    given_up.set()
                    raise
                except LoadError as e:
                    self.stats.connect_failures += 1
                    self.stats.last_error = redact_error(e)
                    log.warning("native probes not loaded: %s", self.stats.last_error)
                    self.ready.set()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.retry_seconds)
                    continue
                if self.stats.connects:
                    self.stats.reconnects += 1
                self.stats.connects += 1
                self._scan_open = self._scanning()
                self.stats.attached_ns = time.time_ns()
                self.stats.detached_ns = self.stats.last_read_ns = 0
                self.stats.connected = True
                self.ready.set()
                failed: Exception | None = None
                cut_from: int | None = None  # a read cut short (a cancel, an error): unsure since then
                cancelled = False
                try:
                    await self._stream(stop)
                except asyncio.CancelledError:  # the switch gave up waiting: the poll under way is lost
                    cancelled = True
                    cut_from = self._unread_since(self.probes)
                    raise
                except Exception as e:  # no error may end the node's observation: closed, loaded again
                    failed = e  # a batch it had taken from the buffer reached nobody: a gap too
                    cut_from = self._unread_since(self.probes)
                finally:
                    self.stats.connected = False
                    probes, self.probes = self.probes, None
                    try:
                        if probes is not None and cancelled:  # behind what held the thread: bounded
                            await asyncio.wait_for(self._last_read(probes), self._cut_wait())
                        elif probes is not None:
                            await self._last_read(probes)
                    except (asyncio.CancelledError, TimeoutError) as e:  # given up: closed, after
                        if probes is not None:
                            self._thread.submit(probes.close)
                        since = self._unread_since(probes, in_flight=not self._tail_queued)
                        cut_from = since if cut_from is None else min(cut_from, since)
                        if isinstance(e, asyncio.CancelledError):
                            raise
                        log.warning(
                            "the native probes' last read did not end within %.0f s of the cancel: given "
                            "up", self._cut_wait(),
                        )  # fmt: skip  # the cancel goes on as this finally ends
                    except Exception as e:  # the last read's own error: closed all the same, loaded again
                        since = self._unread_since(probes, in_flight=not self._tail_queued)
                        cut_from = since if cut_from is None else min(cut_from, since)  # before a cancel
                        failed = failed or e
                        if probes is not None:
                            await self._call(probes.close)  # ProbeSet.close raises nothing
                    finally:
                        self.stats.detached_ns = time.time_ns()
                        if cut_from is not None:
                            self._note_cut(cut_from, self.stats.detached_ns)
                if failed is not None:
                    why = redact(str(failed))
                    self.stats.last_error = f"the probes' reader failed: {type(failed).__name__}: {why}"
                    # The traceback as text, redacted: its last line repeats the message.
                    trace = redact("".join(traceback.format_exception(failed)))
                    stopping = stop.is_set()  # asked to stop meanwhile: no next load
                    then = (
                        "not loaded again: asked to stop"
                        if stopping
                        else f"loaded again in {self.retry_seconds:.0f} s"
                    )
                    log.error("native probes stopped after an unexpected error (%s)\n%s", then, trace)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.retry_seconds)
        finally:
            self._thread.shutdown(wait=False)

    def _cut_wait(self) -> float:
        """How long a last read after a cancel may wait behind what holds the probes' thread."""
        cut = self.cut_wait_seconds
        return CUT_LAST_READ_SECONDS if cut is None else min(CUT_LAST_READ_SECONDS, cut)

    async def _last_read(self, probes: ProbeSet) -> None:
        polled = self.stats.last_read_ns = time.time_ns()  # the uprobes are detached from here on
        tail = await self._call(self._final_counters, probes)
        for payload in tail:  # written between the reader's last poll and now
            self.queue.put(payload)
        self.stats.received += len(tail)
        self._tail_queued = True
        if self._tail_lost_since is not None:  # its poll or the calls in flight could not be read
            self._note_cut(self._tail_lost_since, time.time_ns())
        self._queued_ns = max(self._queued_ns, polled)
        self._note_drops(self.stats.kernel, time.time_ns())
        self._end_episode()
        watch = probes.watch
        if watch is not None and await self._call(watch.unseen_at_stop):
            # a process the scan had not read yet ran a former file unprobed all along
            self._note_followed(Followed(since_load=True), time.time_ns())
        self._scan_open = False  # its answer taken
        await self._call(probes.close)

    def _load_until(self, given_up: threading.Event) -> ProbeSet:
        """:meth:`_load`, whose address lookups end at their next step once ``given_up`` is set
        (native/symcancel.py): a load the switch gave up on reads no hostile file on for nobody."""
        with cancellable(given_up):
            return self._load()

    def _load(self) -> ProbeSet:
        ps = load(
            self.cfg, kernel_source=self.kernel_source, ring_buffer=self.ring_buffer, known=self._known,
            debug_files=self.debug_files,
        )  # fmt: skip
        if ps.watch is not None:  # from now on a lookup's wait reads the buffer as _stream does
            ps.watch.idle = self._idle
        self.stats.attached = list(ps.attached)
        self.stats.failed = [(label, redact(why)) for label, why in ps.failed]  # shown by probes, /readyz
        self.stats.former += ps.former.former
        self.stats.reload_wanted = False
        for label, why in ps.failed:
            log.warning("native probe %s not attached: %s", redact(label), redact(why))  # loader text
        self._save_known()
        return ps

    def _save_known(self) -> None:
        """Write the files probed per path for the next start, when they changed (the probes' thread)."""
        if not self.known_path or self._known == self._known_saved:
            return
        try:
            known_files.write(self.known_path, self._known)
        except OSError as e:
            self.stats.known_errors += 1
            log.warning(
                "the native probes' files cannot be kept for the next start in %s: %s; a file renamed away "
                "before it is not recognised then", redact(self.known_path), e.strerror or e,
            )  # fmt: skip
        self._known_saved = {p: dict(f) for p, f in self._known.items()}  # tried once per change

    async def _stream(self, stop: asyncio.Event) -> None:
        put = self.queue.put
        last_counters = 0.0
        while not stop.is_set():
            now = time.monotonic()
            look = now - last_counters >= 1.0
            # the calls in flight looked at before the poll: one that returned before the look wrote
            # its record before the poll began, so both moments hold once the poll is queued (after
            # it, one returning during the poll would be in neither until the next poll)
            flight = await self._call(self._in_flight_since, self.probes) if look else None
            polled = time.time_ns()
            self._clock_seen()
            batch = await self._call(self._poll_batch, POLL_MS)
            for payload in batch:
                put(payload)
            self.stats.received += len(batch)
            self._queued_ns = max(self._queued_ns, polled)
            if flight is not None:
                self._in_flight_ns = flight
            if look:
                last_counters = now
                self.stats.kernel = await self._call(self.probes.counters)  # type: ignore[union-attr]
                self._note_drops(self.stats.kernel, time.time_ns())
                self._note_followed(*await self._call(self._follow))
                self._scan_open = self._scan_open and self._scanning()  # the scan's answers taken
        polled = time.time_ns()
        batch = await self._call(self._poll_batch, 0)  # what arrived up to the stop
        for payload in batch:
            put(payload)
        self.stats.received += len(batch)
        self._queued_ns = max(self._queued_ns, polled)

    def _unread_since(self, probes: ProbeSet | None, *, in_flight: bool = False) -> int:
        """As a cancel cuts a read short: the wall clock since which records, drops or a target's
        file may be in no record and no span (the earliest of the last poll queued whole, the last
        look at the counters and at the targets' files; the load while its scan had processes left,
        or, ``in_flight``, while the last read's uprobe calls in flight reached nobody: each is a
        record at its entry, any time since the load)."""
        since = min(self._queued_ns, self._drop_read_ns, self._follow_ns)
        # the scan unfinished as of its last answer taken (not as of now: a step the cut took may have
        # ended it, its find lost): its rest may hold a process run unprobed since the load
        if self._scan_open:
            since = min(since, self._load_ns)
        if in_flight and probes is not None and probes.cfg.uprobes:
            since = min(since, self._load_ns)
        return since

    def _scanning(self) -> bool:
        """Whether the running probes' former-file scan has processes left (read between calls to
        the probes' thread, which alone steps it)."""
        watch = self.probes.watch if self.probes is not None else None
        return watch is not None and watch.scanning()

    def _note_cut(self, since_ns: int, now_ns: int) -> None:
        """A read cut short (a cancel, the reader's error): the span since ``since_ns`` is unwatched."""
        start, end = self._span(since_ns, now_ns)
        self._note_unwatched(start, end)
        log.warning(
            "a read of the native probes was cut short: the %.1fs it may not have read are recorded "
            "as an observation gap", (end - start) / 1e9,
        )  # fmt: skip

    def _follow(self) -> tuple[Followed, int, int]:
        """Probe replaced targets' new files (on the probes' thread); the wall clock after, and
        before (the files were looked at then: a file put there during the look's attaches and the
        former-file scan's step is the next look's)."""
        ps = self.probes
        looked_ns = time.time_ns()
        res = ps.follow() if ps is not None else Followed()
        self._save_known()
        return res, time.time_ns(), looked_ns
