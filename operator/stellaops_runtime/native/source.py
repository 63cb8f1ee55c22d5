"""The native probes as an agent source: the same interface as the Tetragon sources.

``run(stop)`` loads the probes, then moves every record into the agent's
EventQueue with the /proc facts it needs (procinfo.py, events.encode_trailer)
until ``stop`` is set; ``stats`` has the fields the agent reads from any source
(``connects``, ``connected``, ``received``, ``last_error``) plus the probes'
in-kernel counters. All BCC calls run on one dedicated thread: polling blocks,
and the event loop must not.

A load failure (no BCC, no tracefs, a kernel that refuses the program) is
not retried in a tight loop: it is reported in ``last_error`` and tried again
after ``retry_seconds``.

``run`` may be called again after it returned (the agent's source switch,
agent/source_switch.py, stops and restarts the probes as Tetragon comes and
goes): counters add up across runs, and ``attached_ns`` / ``detached_ns`` say
(wall clock) when the probes of the latest run were attached and detached,
the edges of the observation gaps around a switch. ``cfg`` may be replaced
between runs (the probe ConfigMap is read again at every switch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from stellaops_runtime.native import records
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.events import encode_trailer
from stellaops_runtime.native.loader import LoadError, ProbeSet, load
from stellaops_runtime.native.procinfo import ProcCache
from stellaops_runtime.sources.queue import EventQueue

log = logging.getLogger(__name__)

POLL_MS = 100
_EXEC = records.STRUCTS[records.KIND_EXEC]


@dataclass(slots=True)
class NativeStats:
    connects: int = 0  # successful loads
    reconnects: int = 0
    connect_failures: int = 0  # failed loads
    received: int = 0  # records read from the kernel
    connected: bool = False
    last_error: str = ""
    attached: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # probes that could not attach, and why
    kernel: dict[str, dict[str, int]] = field(default_factory=dict)  # ProbeSet.counters(), last read
    attached_ns: int = 0  # wall clock just after the latest load attached the probes (0: never)
    detached_ns: int = 0  # wall clock just after the latest run closed them (0: not yet)


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

    async def _call(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def run(self, stop: asyncio.Event) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bcc")
        self.ready.clear()
        self.ring_buffer = self._ring_buffer_ok and not self.cfg.force_perf_buffer
        try:
            while not stop.is_set():
                try:
                    self.probes = await self._call(self._load)
                except LoadError as e:
                    self.stats.connect_failures += 1
                    self.stats.last_error = str(e)
                    log.warning("native probes not loaded: %s", e)
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
                try:
                    await self._stream(stop)
                finally:
                    self.stats.connected = False
                    probes, self.probes = self.probes, None
                    if probes is not None:
                        await self._call(self._final_counters, probes)
                        await self._call(probes.close)
                    self.stats.detached_ns = time.time_ns()
        finally:
            self._thread.shutdown(wait=False)

    def _load(self) -> ProbeSet:
        ps = load(self.cfg, kernel_source=self.kernel_source, ring_buffer=self.ring_buffer)
        self.stats.attached = list(ps.attached)
        self.stats.failed = list(ps.failed)
        for label, why in ps.failed:
            log.warning("native probe %s not attached: %s", label, why)
        return ps

    def _final_counters(self, ps: ProbeSet) -> None:
        ps.poll(0)  # what the kernel wrote before the stop
        self.stats.kernel = ps.counters()

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
        batch = await self._call(self._poll_batch, 0)  # what arrived up to the stop
        for payload in batch:
            put(payload)
        self.stats.received += len(batch)

    def _poll_batch(self, timeout_ms: int) -> list[bytes]:
        ps = self.probes
        if ps is None:
            return []
        return [self._with_trailer(ps, rec) for rec in ps.poll(timeout_ms)]

    def _with_trailer(self, ps: ProbeSet, rec: bytes) -> bytes:
        """The record (its stacks taken out) plus what /proc knows now: binary, exec time, frames."""
        if len(rec) < records.HEADER.size:
            return rec  # the decoder counts it as malformed
        kind = rec[0]
        rec = rec[: records.record_size(rec)]  # the perf buffer pads samples; the trailer must follow
        pid = int.from_bytes(rec[4:8], "little")
        if kind == records.KIND_EXEC and len(rec) >= _EXEC.size:
            fields = _EXEC.unpack_from(rec, 0)
            path = fields[-1].split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
            self.procs.exec_seen(pid, path if path.startswith("/") else "", fields[6])
        binary, exec_ktime = self.procs.binary(pid)
        rec, user, kernel = records.split_stacks(rec)  # return addresses carried in the record
        frames = self.procs.frames(pid, user)
        return rec + encode_trailer(binary, exec_ktime, frames, kernel)
