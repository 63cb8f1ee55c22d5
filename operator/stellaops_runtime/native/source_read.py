"""The native probe source's reads of the probes' output buffer, each record given its /proc trailer.

Split from :mod:`stellaops_runtime.native.source` (a mixin of ``NativeProbeSource``: the
attributes are the source's), which runs the probes and hands the batches to the agent's
EventQueue. Everything here runs on the probes' ``bcc`` thread except :meth:`SourceReader._deliver`
(the event loop's): a poll blocks, and BCC is called from one thread only.

A record leaves here as the kernel wrote it, its stacks taken out, followed
by what /proc knows of its process now (events.encode_trailer: binary, exec
time, frames). While a file's address lookup runs on a thread of its own
(native/lookup.py), :meth:`SourceReader._idle` reads the buffer as the reader
does, so a slow (hostile) file costs no record. The last read, when the probes
stop, takes the records written since the reader's last poll and the uprobe
calls still in flight, then the counters (:meth:`SourceReader._final_counters`).
"""

from __future__ import annotations

import asyncio
import logging
import time

from stellaops_runtime.native import records
from stellaops_runtime.native.events import encode_trailer, names_file
from stellaops_runtime.native.loader import ProbeSet
from stellaops_runtime.native.procinfo import ProcCache
from stellaops_runtime.native.source_stats import NativeStats
from stellaops_runtime.sources.queue import EventQueue

log = logging.getLogger("stellaops_runtime.native.source")  # the source's own lines

IDLE_POLL_MS = 20  # a poll while a file's lookup runs on its own thread (native/lookup.py)
# Before a running call's entry, the moment stops this much earlier: Tetragon's copy of that call is
# stamped by its own uprobe (fired just before or after ours) and its own monotonic-to-wall reads,
# so a few microseconds either way (NTP slews the offset by at most 16 ms over the 32 s hold)
IN_FLIGHT_SLACK_NS = 100_000_000
_EXEC = records.STRUCTS[records.KIND_EXEC]


class SourceReader:
    """Polls of the probes' buffer (a mixin: see the module docstring)."""

    queue: EventQueue
    stats: NativeStats
    procs: ProcCache
    probes: ProbeSet | None
    _loop: asyncio.AbstractEventLoop | None
    _stop: asyncio.Event | None
    _queued_ns: int  # wall clock at the start of the latest poll whose records are all queued
    _load_ns: int  # wall clock of the start of the last load
    _tail_lost_since: int | None  # the last read could not read all since then (None: it could)

    def _in_flight_since(self, ps: ProbeSet | None) -> int:
        """Wall clock: every uprobe call entered before it has returned (its record written), or is
        still running in a live thread and entered no earlier. Such a call is recorded at its return,
        stamped at its entry, so a killed agent never counted it: a watch record claiming past its
        entry would let the next agent skip Tetragon's copy (agent/source_switch_gaps.py
        ``watching_ns``), less :data:`IN_FLIGHT_SLACK_NS`. The load's start when too many calls are
        in flight to look at."""
        looked, mono = time.time_ns(), time.monotonic_ns()
        oldest = ps.oldest_in_flight(self.procs.thread_since) if ps is not None else None
        if oldest is None:
            return looked
        if oldest == 0:
            return self._load_ns
        return min(looked, oldest + looked - mono - IN_FLIGHT_SLACK_NS)  # bpf_ktime_get_ns: monotonic

    def _final_counters(self, ps: ProbeSet) -> list[bytes]:
        """The counters' last read, and the records written since the reader's last poll (before, they
        were read here and thrown away: counted emitted in the kernel, never processed), then the
        uprobe calls still in flight: the uprobes are detached first, so a call that returns from
        now on is counted here, at its entry, and by nobody else (the next load never saw it enter).
        What could not be read is a gap from :attr:`_tail_lost_since` (None: all was read)."""
        self._tail_lost_since = None
        ps.detach_uprobes()
        try:
            tail = self._poll_batch(0, ps)
        except Exception:  # the reader's own failure: the counters are still read
            log.warning("the native probes' last poll failed: its records are a gap", exc_info=True)
            self._tail_lost_since = self._queued_ns  # what it took from the buffer reached nobody
            tail = []
        try:  # a call of a thread gone exited inside it: never returned, not counted (as before)
            alive = self.procs.thread_since
            tail += [self._with_trailer(ps, rec) for rec in ps.in_flight(alive)]
        except Exception:  # the map could not be read: those calls, entered since the load, are a gap
            log.warning("the native probes' calls in flight could not be read: a gap", exc_info=True)
            self._tail_lost_since = self._load_ns
        self.stats.kernel = ps.counters()
        return tail

    def _idle(self) -> bool:
        """While a file's lookup runs on its own thread (native/lookup.py, called on the probes'
        thread): read the buffer as the reader does and hand the records to the event loop, so a
        slow (hostile) file costs no record. False once the probes are asked to stop."""
        if self._stop is None or self._stop.is_set() or self._loop is None:
            return False
        polled = time.time_ns()
        batch = self._poll_batch(IDLE_POLL_MS)
        self._loop.call_soon_threadsafe(self._deliver, batch, polled)
        return True

    def _deliver(self, batch: list[bytes], polled_ns: int = 0) -> None:
        """Records read by :meth:`_idle`, queued on the event loop's thread (in the order read);
        ``polled_ns``: the wall clock at the start of their poll."""
        put = self.queue.put
        for payload in batch:
            put(payload)
        self.stats.received += len(batch)
        self._queued_ns = max(self._queued_ns, polled_ns)

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
