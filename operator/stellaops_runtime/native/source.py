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

Each read of the kernel counters is compared with the previous one of the
same run (the first with zero): what the probes dropped meanwhile
(native/drop_counters.py) is queued as a :class:`NativeDrop` over the wall
time between the two reads, for the source switch to mark as a gap
(:meth:`take_drops`). An episode of drops is logged when it starts, at most
every DROP_LOG_SECONDS while it lasts, and with its totals when a read sees
none again (or the probes stop).

At the same reads, a uprobe or USDT target whose path now names another file
(an upgrade renamed a new file over it) is probed in that file too
(native/follow.py); the wall time between the previous read and that attach,
when the new file's processes may have called it unseen, is queued for the
switch to mark as a gap (:meth:`take_unwatched`). So is the time between two
reads while a process runs a target's file that could not be probed (a
deleted former file found at the load, native/former.py, or a new file
refused). A former file found by the part of that scan left for the reads
after the load (a node of many processes) makes the time since the load
unwatched; probes stopped before the scan ended read its rest, and a former
file there (or processes still unread after ``STOP_SCAN_SECONDS``) makes
their whole run unwatched. The files the loads probed are kept for a renamed-away
former file's sake: across reloads in memory, across agent restarts in
``known_path`` (native/known_files.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

from stellaops_runtime.contracts.redact import redact, redact_error
from stellaops_runtime.native import known_files, records
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.drop_counters import (
    Key,
    NativeDrop,
    add_pending,
    describe,
    drop_values,
    increases,
)
from stellaops_runtime.native.events import encode_trailer, names_file
from stellaops_runtime.native.follow import Followed
from stellaops_runtime.native.loader import LoadError, ProbeSet, load
from stellaops_runtime.native.procinfo import ProcCache
from stellaops_runtime.native.source_owned import owned
from stellaops_runtime.native.source_stats import NativeStats
from stellaops_runtime.sources.queue import EventQueue

log = logging.getLogger(__name__)

POLL_MS = 100
IDLE_POLL_MS = 20  # a poll while a file's lookup runs on its own thread (native/lookup.py)
MAX_UNWATCHED = 1_000  # spans not yet taken by the switch; older ones merge
DROP_LOG_SECONDS = 60.0  # while an episode of drops lasts, logged at most this often
_EXEC = records.STRUCTS[records.KIND_EXEC]


class NativeProbeSource:
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
        self._thread: ThreadPoolExecutor | None = None
        self.ready = asyncio.Event()  # set once the probes are attached (or the load failed)
        self._drop_prev: dict[Key, int] = {}  # drop counters at the previous read of this run
        self._drop_read_ns = 0  # wall clock of that read (of the load, before the first)
        self._episode: dict[Key, int] | None = None  # drops of the current episode (None: none)
        self._episode_logged = 0.0  # monotonic time of its last log line
        self._follow_ns = 0  # wall clock of the last look at the uprobe targets' files
        self._load_ns = 0  # wall clock of the start of the last load
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

    async def _call(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def run(self, stop: asyncio.Event) -> None:
        if self._thread is not None:  # a cancelled run's load may still go on there: one load at a time
            await asyncio.to_thread(self._thread.shutdown)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bcc")
        self._loop, self._stop = asyncio.get_running_loop(), stop
        self.ready.clear()
        self.ring_buffer = self._ring_buffer_ok and not self.cfg.force_perf_buffer
        try:
            while not stop.is_set():
                self._drop_prev, self._drop_read_ns = {}, time.time_ns()  # a new program counts from zero
                self._follow_ns = self._drop_read_ns  # the targets' files are looked at in the load
                self._load_ns = self._drop_read_ns
                try:  # cancelled meanwhile (the switch gave up waiting): what it loads is closed
                    self.probes = await owned(self._thread, self._load, lambda ps: ps.close())
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
                self.stats.attached_ns = time.time_ns()
                self.stats.detached_ns = 0
                self.stats.connected = True
                self.ready.set()
                failed: Exception | None = None
                try:
                    await self._stream(stop)
                except Exception as e:  # no error may end the node's observation: closed, loaded again
                    failed = e
                finally:
                    self.stats.connected = False
                    probes, self.probes = self.probes, None
                    try:
                        if probes is not None:
                            await self._last_read(probes)
                    except asyncio.CancelledError:  # the switch gave up waiting: still closed, after
                        if probes is not None:
                            self._thread.submit(probes.close)
                        raise
                    finally:
                        self.stats.detached_ns = time.time_ns()
                if failed is not None:
                    why = redact(str(failed))
                    self.stats.last_error = f"the probes' reader failed: {type(failed).__name__}: {why}"
                    # The traceback as text, redacted: its last line repeats the message.
                    trace = redact("".join(traceback.format_exception(failed)))
                    log.error(
                        "native probes stopped after an unexpected error (loaded again in %.0f s)\n%s",
                        self.retry_seconds, trace,
                    )  # fmt: skip
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.retry_seconds)
        finally:
            self._thread.shutdown(wait=False)

    async def _last_read(self, probes: ProbeSet) -> None:
        tail = await self._call(self._final_counters, probes)
        for payload in tail:  # written between the reader's last poll and now
            self.queue.put(payload)
        self.stats.received += len(tail)
        self._note_drops(self.stats.kernel, time.time_ns())
        self._end_episode()
        watch = probes.watch
        if watch is not None and await self._call(watch.unseen_at_stop):
            # a process the scan had not read yet ran a former file unprobed all along
            self._note_followed(Followed(since_load=True), time.time_ns())
        await self._call(probes.close)

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

    def _final_counters(self, ps: ProbeSet) -> list[bytes]:
        """The counters' last read, and the records written since the reader's last poll (before, they
        were read here and thrown away: counted emitted in the kernel, never processed), then the
        uprobe calls still in flight: the uprobes are detached first, so a call that returns from
        now on is counted here, at its entry, and by nobody else (the next load never saw it enter)."""
        ps.detach_uprobes()
        try:
            tail = self._poll_batch(0, ps)
        except Exception:  # the reader's own failure: the counters are still read
            log.debug("last poll of the native probes failed", exc_info=True)
            tail = []
        try:  # a call of a thread gone exited inside it: never returned, not counted (as before)
            alive = self.procs.thread_since
            tail += [self._with_trailer(ps, rec) for rec in ps.in_flight(alive)]
        except Exception:  # the map could not be read: those calls are not counted (logged)
            log.warning("the native probes' calls in flight could not be read", exc_info=True)
        self.stats.kernel = ps.counters()
        return tail

    async def _stream(self, stop: asyncio.Event) -> None:
        put = self.queue.put
        last_counters = 0.0
        while not stop.is_set():
            batch = await self._call(self._poll_batch, POLL_MS)
            for payload in batch:
                put(payload)
            self.stats.received += len(batch)
            now = time.monotonic()
            if now - last_counters >= 1.0:
                last_counters = now
                self.stats.kernel = await self._call(self.probes.counters)  # type: ignore[union-attr]
                self._note_drops(self.stats.kernel, time.time_ns())
                self._note_followed(*await self._call(self._follow))
        batch = await self._call(self._poll_batch, 0)  # what arrived up to the stop
        for payload in batch:
            put(payload)
        self.stats.received += len(batch)

    def _idle(self) -> bool:
        """While a file's lookup runs on its own thread (native/lookup.py, called on the probes'
        thread): read the buffer as :meth:`_stream` does and hand the records to the event loop, so a
        slow (hostile) file costs no record. False once the probes are asked to stop."""
        if self._stop is None or self._stop.is_set() or self._loop is None:
            return False
        batch = self._poll_batch(IDLE_POLL_MS)
        if batch:
            self._loop.call_soon_threadsafe(self._deliver, batch)
        return True

    def _deliver(self, batch: list[bytes]) -> None:
        """Records read by :meth:`_idle`, queued on the event loop's thread (in the order read)."""
        put = self.queue.put
        for payload in batch:
            put(payload)
        self.stats.received += len(batch)

    def _note_drops(self, kernel: dict[str, dict[str, int]], now_ns: int) -> None:
        """Queue what the probes dropped since the previous read (see the module docstring)."""
        cur = drop_values(kernel)
        inc = increases(self._drop_prev, cur)
        start, self._drop_prev, self._drop_read_ns = self._drop_read_ns, cur, max(now_ns, self._drop_read_ns)
        if not inc:
            self._end_episode()
            return
        drop = NativeDrop(start, self._drop_read_ns, inc)
        add_pending(self.stats.drops, drop)
        self.stats.dropped_total += drop.total
        first = self._episode is None
        ep = self._episode if self._episode is not None else {}
        for k, n in inc.items():
            ep[k] = ep.get(k, 0) + n
        self._episode = ep
        now = time.monotonic()
        if first:
            log.warning(
                "native probes dropped events in the kernel (%s): recorded as observation gaps", describe(inc)
            )
            self._episode_logged = now
        elif now - self._episode_logged >= DROP_LOG_SECONDS:
            log.warning("native probes still dropping events in the kernel (so far: %s)", describe(ep))
            self._episode_logged = now

    def _end_episode(self) -> None:
        """A read without drops (or the probes' stop) ends the episode: its totals, once."""
        if self._episode is None:
            return
        log.info(
            "native probes stopped dropping events: %d in this episode (%s), recorded as observation gaps",
            sum(self._episode.values()), describe(self._episode),
        )  # fmt: skip
        self._episode = None

    def _follow(self) -> tuple[Followed, int, int]:
        """Probe replaced targets' new files (on the probes' thread); the wall clock after, and
        before (the files were looked at then: a file put there during the look's attaches and the
        former-file scan's step is the next look's)."""
        ps = self.probes
        looked_ns = time.time_ns()
        res = ps.follow() if ps is not None else Followed()
        self._save_known()
        return res, time.time_ns(), looked_ns

    def _note_followed(self, res: Followed, now_ns: int, looked_ns: int | None = None) -> None:
        """The span since the previous look is unwatched when a target's file was replaced."""
        if res.reload:
            self.stats.reload_wanted = True  # the source switch reloads (agent/source_switch_purl.py)
        if res.attached or res.failed or res.unwatched or res.since_load:
            spans = self.stats.unwatched
            # a former file found by the scan's rest was run unprobed since the load
            spans.append((self._load_ns if res.since_load else self._follow_ns, now_ns))
            if len(spans) > MAX_UNWATCHED:  # the two oldest merge: wider, never lost
                first, second = spans[0], spans.pop(1)
                spans[0] = (min(first[0], second[0]), max(first[1], second[1]))
            self.stats.followed += len(res.attached)
            self.stats.former += res.former
            now_on = set(res.attached)  # a file there now is probed: no longer failed (a file put later)
            failed = [f for f in self.stats.failed if f[0] not in now_on]
            known = {label for label, _ in failed}
            # shown by probes and /readyz: the reason redacted, as a load's failures are
            new = [(label, redact(why)) for label, why in res.failed if label not in known]
            self.stats.failed = failed + new
            self.stats.attached += [
                f"uprobe {x}" for x in res.attached if f"uprobe {x}" not in self.stats.attached
            ]
        self._follow_ns = max(now_ns if looked_ns is None else looked_ns, self._follow_ns)

    def take_unwatched(self) -> list[tuple[int, int]]:
        """The spans queued since the last call (the event loop's thread only)."""
        out, self.stats.unwatched = self.stats.unwatched, []
        return out

    def take_drops(self) -> list[NativeDrop]:
        """The drops queued since the last call (the event loop's thread only)."""
        out, self.stats.drops = self.stats.drops, []
        return out

    def _poll_batch(self, timeout_ms: int, probes: ProbeSet | None = None) -> list[bytes]:
        ps = probes or self.probes
        if ps is None:
            return []
        recs = ps.poll(timeout_ms)
        self.procs.begin_batch()  # each pid's owner is looked at again (procinfo.py: pid reuse)
        return [self._with_trailer(ps, rec) for rec in recs]

    def _with_trailer(self, ps: ProbeSet, rec: bytes) -> bytes:
        """The record (its stacks taken out) plus what /proc knows now: binary, exec time, frames."""
        if len(rec) < records.HEADER.size:
            return rec  # the decoder counts it as malformed
        kind = rec[0]
        rec = rec[: records.record_size(rec)]  # the perf buffer pads samples; the trailer must follow
        pid = int.from_bytes(rec[4:8], "little")
        ktime = int.from_bytes(rec[16:24], "little")  # when the kernel wrote it (monotonic)
        if kind == records.KIND_EXEC and len(rec) >= _EXEC.size:
            fields = _EXEC.unpack_from(rec, 0)
            path = fields[-1].split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
            self.procs.exec_seen(pid, path if names_file(path) else "", fields[6])
        binary, exec_ktime = self.procs.binary(pid, ktime)
        rec, user, kernel = records.split_stacks(rec)  # return addresses carried in the record
        frames = self.procs.frames(pid, user, ktime)
        return rec + encode_trailer(binary, exec_ktime, frames, kernel)
