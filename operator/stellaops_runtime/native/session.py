"""Run the native probes for a while and collect what they saw: the engine of ``probes run``.

Also the simplest way to drive the whole native path (detect -> load -> source
-> decoder) from tests and the benchmark without the agent around it.

With kernel stacks on, the kernel symbol table (``/proc/kallsyms``, about a
second to read) is read in a worker thread while the probes load, before the
first event is decoded: the decoder would otherwise read it on the event loop
at the first kernel frame and stall everything else meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stellaops_runtime.canonical.kallsyms import KernelSymbols
from stellaops_runtime.contracts.events import RuntimeCallEvent
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.detect import Report, detect
from stellaops_runtime.native.events import Decoder
from stellaops_runtime.native.source import NativeProbeSource
from stellaops_runtime.sources.queue import EventQueue


def default_cache_dir() -> str:
    """Where the header tree is written: $STELLA_CACHE_DIR, else $XDG_CACHE_HOME or ~/.cache."""
    explicit = os.environ.get("STELLA_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "stellaops-runtime")


@dataclass(slots=True)
class SessionResult:
    report: Report
    events: list[RuntimeCallEvent] = field(default_factory=list)
    decoded: int = 0  # events decoded (kept in ``events`` or handed to ``on_event``)
    kernel_symbols: int = 0  # symbols of the kernel table read ahead (0: no kernel stacks, or unreadable)
    error: str = ""
    attached: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    kernel_counters: dict[str, dict[str, int]] = field(default_factory=dict)
    queue_dropped: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    proc: dict[str, int] = field(default_factory=dict)
    followed: int = 0  # targets probed in a new file put at their path meanwhile (native/follow.py)
    former: int = 0  # deleted former files of targets, still run, probed at the load (native/former.py)
    # Wall-clock spans (ns) when a process may have run a target's file no probe was on: a file put
    # at a target's path before it was followed, a former file found late, not probed, or (a session
    # shorter than the former-file scan) not looked for in every process: calls may be missing there.
    unwatched: list[tuple[int, int]] = field(default_factory=list)

    @property
    def unwatched_seconds(self) -> float:
        """The unwatched spans' total length (overlaps once), in seconds."""
        total, end = 0, 0
        for a, b in sorted(self.unwatched):
            a = max(a, end)
            if b > a:
                total, end = total + b - a, b
        return total / 1e9

    def summary(self) -> dict[str, Any]:
        return {
            "posture": str(self.report.posture),
            "error": self.error,
            "attached": self.attached,
            "failed": [{"probe": p, "reason": r} for p, r in self.failed],
            "kernel": self.kernel_counters,
            "queueDropped": self.queue_dropped,
            "malformed": self.malformed,
            "frames": self.proc,
            "events": self.decoded,
            "kernelSymbols": self.kernel_symbols,
            "followed": self.followed,
            "former": self.former,
            "unwatched": [{"startNs": a, "endNs": b} for a, b in self.unwatched],
            "unwatchedSeconds": round(self.unwatched_seconds, 3),
        }


async def run_session(
    cfg: NativeConfig,
    *,
    seconds: float,
    report: Report | None = None,
    during: Callable[[], Any] | None = None,
    on_event: Callable[[RuntimeCallEvent], None] | None = None,
    queue_capacity: int = 100_000,
) -> SessionResult:
    """Load, run ``during`` (a blocking callable, e.g. a workload, in a thread) or sleep ``seconds``, stop.

    Events are decoded as they arrive; with ``on_event`` they are handed over and not kept.
    """
    report = report or detect(mount_tracefs=True, cache_dir=default_cache_dir())
    res = SessionResult(report=report)
    queue = EventQueue(queue_capacity, max_bytes=256 << 20)
    source = NativeProbeSource(
        cfg,
        queue=queue,
        kernel_source=report.kernel_source,
        ring_buffer=report.ok("ring buffer"),  # else the perf buffer
        retry_seconds=3600,
    )
    preload = (
        asyncio.get_running_loop().run_in_executor(None, _read_kernel_symbols)
        if cfg.kernel_stacks()
        else None
    )
    ksyms: list[KernelSymbols | OSError] = []

    def kernel_symbols() -> KernelSymbols:
        if not ksyms:  # not read ahead (no kernel stacks asked for): read now
            ksyms.append(_read_kernel_symbols())
        if isinstance(ksyms[0], OSError):
            raise ksyms[0]  # the decoder counts every kernel frame as unsymbolized
        return ksyms[0]

    decoder = Decoder(
        node_name=platform.node(),
        targets=cfg.uprobes,
        usdt_targets=cfg.usdt,
        wall_minus_monotonic_ns=time.time_ns() - time.monotonic_ns(),
        kernel_symbols=kernel_symbols,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))

    def drain() -> None:
        for payload, received in queue.take(len(queue)):
            ev = decoder.decode(payload, received_ns=received)
            if ev is None:
                continue
            res.decoded += 1
            if on_event is not None:
                on_event(ev)
            else:
                res.events.append(ev)

    try:
        await source.ready.wait()
        if preload is not None:
            ksyms.append(await preload)
            if isinstance(ksyms[0], KernelSymbols):
                res.kernel_symbols = len(ksyms[0].names)
        if source.stats.connected:
            deadline = time.monotonic() + seconds
            if during is not None:
                work = asyncio.get_running_loop().run_in_executor(None, during)
                while not work.done():
                    await asyncio.wait({work}, timeout=0.05)
                    drain()
                await work
                deadline = time.monotonic() + min(seconds, 0.3)  # the last records are on their way
            while time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                drain()
    finally:
        stop.set()
        await task
    drain()
    st = source.stats
    res.error = "" if st.connects else st.last_error
    res.attached, res.failed, res.kernel_counters = st.attached, st.failed, st.kernel
    res.queue_dropped = queue.dropped
    res.followed, res.former = st.followed, st.former
    res.unwatched = source.take_unwatched()
    res.malformed = dict(decoder.stats.malformed)
    p = source.procs.stats
    res.proc = {
        "resolved": p.frames_resolved,
        "unresolved": p.frames_unresolved,
        "mapsUnreadable": p.maps_unreadable,
        "pidReused": p.pid_reused,
        "staleRecords": p.stale_records,
    }
    return res


def _read_kernel_symbols() -> KernelSymbols | OSError:
    """The kernel symbol table, or why it could not be read (returned, so a worker thread can give it)."""
    try:
        return KernelSymbols()
    except OSError as e:
        return e
