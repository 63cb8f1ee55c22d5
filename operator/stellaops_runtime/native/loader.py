"""Compile the selected probes into one BPF program with BCC, attach them, and read what they write.

One program holds every probe so the filters, counters and the output
channel are shared. A probe that cannot attach (a missing binary or symbol)
is reported and left out; the others keep working. Compilation runs against
the kernel's headers when installed, else against our header tree
(headershim.py), chosen through ``BCC_KERNEL_SOURCE``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from stellaops_runtime.native import bpfsys, records
from stellaops_runtime.native.bccimport import load_bcc
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.detect import TRACEFS_DIRS
from stellaops_runtime.native.follow import Followed, TargetWatch
from stellaops_runtime.native.probes import exec as exec_probe
from stellaops_runtime.native.probes import prelude, syscalls, tcp, uprobes, usdtprobes


class LoadError(Exception):
    """The program could not be compiled or loaded; the message says why."""


@contextlib.contextmanager
def compile_env(kernel_source: str) -> Iterator[None]:
    """BCC reads ``BCC_KERNEL_SOURCE`` while compiling; set it only for that time."""
    old = os.environ.get("BCC_KERNEL_SOURCE")
    if kernel_source:
        os.environ["BCC_KERNEL_SOURCE"] = kernel_source
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("BCC_KERNEL_SOURCE", None)
        else:
            os.environ["BCC_KERNEL_SOURCE"] = old


MAX_DIAGNOSTICS = 4000
IDLE_MS = 20  # a poll of the buffer while a lookup runs on its own thread (native/lookup.py)
HELD_RECORDS = 65_536  # records read into memory while a lookup runs during the load
IN_FLIGHT_LIMIT = 1024  # uprobe calls in flight looked at each second (ProbeSet.oldest_in_flight)
# The former-file scan at the load (None: all of it); its rest runs between reads of the buffer.
LOAD_SCAN_SECONDS: float | None = 1.0


@contextlib.contextmanager
def captured_output(into: list[str]) -> Iterator[None]:
    """Collect what libbcc/clang write to fd 1 and fd 2 meanwhile into ``into``.

    Their diagnostics are their only error channel, and BCC prints some of
    them to stdout, where they would corrupt ``probes run --json``. What was
    captured is written to stderr afterwards, so other threads' log lines of
    that second are delayed, not lost.
    """
    import sys
    import tempfile

    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as tmp:
        saved = [os.dup(1), os.dup(2)]
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            data = tmp.read(1 << 20)
            into.append(data.decode("utf-8", "replace"))
            if data:  # anything else the process wrote meanwhile (log lines) is not lost: to stderr
                with contextlib.suppress(OSError):
                    os.write(2, data)


def tracepoint_exists(name: str) -> bool:
    """Whether tracefs describes ``subsys:event`` (BCC cannot compile a TRACEPOINT_PROBE without it)."""
    subsys, _, event = name.partition(":")
    return any(os.path.isfile(os.path.join(d, "events", subsys, event, "format")) for d in TRACEFS_DIRS)


def _tcp_wanted(cfg: NativeConfig) -> bool:
    return cfg.tcp_state and tracepoint_exists(tcp.TRACEPOINT)


def program_text(cfg: NativeConfig, *, ring_buffer: bool, usdt_sites: usdtprobes.Sites | None = None) -> str:
    parts = ["#include <uapi/linux/ptrace.h>\n"]  # struct pt_regs, for USDT arguments
    parts += [records.c_struct(k) for k in records.BODIES]
    for k in records.STACK_KINDS:
        slots = sum(prelude.stack_slots(cfg, k))
        if slots:
            parts.append(records.c_struct(k, slots=slots))
    parts.append(prelude.c_source(cfg, ring_buffer=ring_buffer))
    if cfg.exec_events:
        parts.append(exec_probe.c_source(ring_buffer=ring_buffer))
    if cfg.syscalls:
        parts.append(syscalls.c_source(cfg, ring_buffer=ring_buffer))
    if cfg.uprobes:
        parts.append(uprobes.c_source(cfg, ring_buffer=ring_buffer))
    if cfg.usdt:
        parts.append(usdtprobes.c_source(cfg, ring_buffer=ring_buffer, sites_of=usdt_sites))
    if _tcp_wanted(cfg):
        parts.append(tcp.c_source(cfg, ring_buffer=ring_buffer))
    return "\n".join(parts)


@dataclass(slots=True)
class ProbeSet:
    """A loaded program: poll it for records, read its counters, close it."""

    bpf: Any
    cfg: NativeConfig
    ring_buffer: bool
    attached: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (probe, why)
    perf_lost: int = 0  # records the perf buffer lost (its lost callback), when used
    _pending: list[bytes] = field(default_factory=list)
    _perf_fds: list[int] = field(default_factory=list)  # USDT perf events we opened ourselves
    _closed: bool = False  # close() ran (it runs once)
    watch: TargetWatch | None = None  # the uprobe and USDT targets' files (native/follow.py)
    usdt_sites: usdtprobes.Sites | None = None  # read once at the load: compiled and attached
    former: Followed = field(default_factory=Followed)  # deleted former files found at the load

    def poll(self, timeout_ms: int) -> list[bytes]:
        """Records written since the last poll (waits up to ``timeout_ms`` for the first)."""
        if self.ring_buffer:
            self.bpf.ring_buffer_poll(timeout_ms)
        else:
            self.bpf.perf_buffer_poll(timeout_ms)
        out = self._pending[:]  # the callbacks hold this very list: empty it in place
        self._pending.clear()
        return out

    def held_idle(self) -> bool:
        """While a lookup runs during the load (native/lookup.py): read the buffer into memory (the
        first :meth:`poll` returns it), at most :data:`HELD_RECORDS` records; past that they wait in
        the buffer (what does not fit is counted ``lost`` in the kernel: a gap)."""
        if len(self._pending) < HELD_RECORDS:
            if self.ring_buffer:
                self.bpf.ring_buffer_poll(IDLE_MS)
            else:
                self.bpf.perf_buffer_poll(IDLE_MS)
        else:
            time.sleep(IDLE_MS / 1000)
        return True

    def detach_uprobes(self) -> None:
        """Detach every uprobe and uretprobe (the load's and those followed since): no return program
        runs after this, so what :meth:`in_flight` then finds never returned while the probes ran."""
        fds = getattr(self.bpf, "uprobe_fds", None)
        for name in list(fds or ()):
            with contextlib.suppress(Exception):  # already gone: nothing to undo
                self.bpf.detach_uprobe_event(name)

    def in_flight(self, alive: Callable[[int, int, int], bool]) -> list[bytes]:
        """The uprobe calls entered and not returned (after :meth:`detach_uprobes`) whose thread is
        ``alive(pid, tid, entry time)`` (still inside), as records at their entry
        (records.in_flight_record): returning later, no load would count them."""
        if not self.cfg.uprobes:
            return []
        out = []
        for key, start in self.bpf[b"stella_up_starts"].items():
            pid, tid = key.pid_tgid >> 32, key.pid_tgid & 0xFFFFFFFF
            if alive(pid, tid, start.ts):
                out.append(records.in_flight_record(key.pid_tgid, key.target, start.ts, start.cg, start.uid))
        return out

    def oldest_in_flight(
        self, alive: Callable[[int, int, int], bool], limit: int = IN_FLIGHT_LIMIT
    ) -> int | None:
        """The entry time (monotonic ns) of the oldest uprobe call entered and not returned whose
        thread is ``alive(pid, tid, entry time)`` (still inside: recorded at its return, which a killed
        agent never reads); None when there is none; 0 when more than ``limit`` entries are kept
        (not looked at: any time since the load)."""
        if not self.cfg.uprobes:
            return None
        starts: list[tuple[int, int]] = []
        # a key at a time: BCC's items() lists the whole map first (65,536 entries of the LRU, those
        # of threads gone inside a call included) on the probes' thread, which reads no record meanwhile
        for key, start in self.bpf[b"stella_up_starts"].iteritems():
            if len(starts) >= limit:
                return 0
            starts.append((start.ts, key.pid_tgid))
        for ts, pid_tgid in sorted(starts):  # the oldest live one: entries of gone threads stay (LRU)
            if alive(pid_tgid >> 32, pid_tgid & 0xFFFFFFFF, ts):
                return int(ts)
        return None

    def counters(self) -> dict[str, dict[str, int]]:
        """Per probe kind, every filter decision summed over CPUs (records.COUNTERS)."""
        table = self.bpf[b"stella_counters"]
        n = len(records.COUNTERS)
        out: dict[str, dict[str, int]] = {}
        for kind, name in records.KIND_NAMES.items():
            out[name] = {}
            for i, cname in enumerate(records.COUNTERS):
                values = table[ctypes.c_int(kind * n + i)]
                out[name][cname] = int(sum(values))
        if not self.ring_buffer:
            out["perf_buffer"] = {"lost": self.perf_lost}
        missed = self.recursion_missed()
        if missed is not None:
            out["programs"] = {"recursion_missed": missed}
        return out

    def recursion_missed(self) -> int | None:
        """Runs of our programs the kernel skipped because another BPF program ran on that CPU.

        The sum of ``recursion_misses`` over every loaded program (kernel 5.12+);
        None where the kernel does not report it (or no program could be asked).
        """
        total: int | None = None
        for fn in list(getattr(self.bpf, "funcs", {}).values()):
            fd = getattr(fn, "fd", -1)
            if not isinstance(fd, int) or fd < 0:
                continue
            info, _ = bpfsys.prog_info(fd)
            n = bpfsys.recursion_misses(info)
            if n is not None:
                total = (total or 0) + n
        return total

    def allow_cgroup(self, cgroup_id: int, allowed: bool = True) -> None:
        """Add or remove one cgroup id in the allow map (only checked when cgroup_allow was set)."""
        m = self.bpf[b"stella_cgroup_allow"]
        key = ctypes.c_uint64(cgroup_id)
        if allowed:
            m[key] = ctypes.c_uint8(1)
        else:
            with contextlib.suppress(KeyError):
                del m[key]

    def follow(self) -> Followed:
        """Probe the new file of each target replaced on disk since the load (native/follow.py)."""
        return self.watch.follow(self.bpf) if self.watch is not None else Followed()

    def close(self) -> None:
        """Detach and free everything; a second call does nothing (a cancelled stop closes once more)."""
        if self._closed:
            return
        self._closed = True
        for fd in self._perf_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._perf_fds.clear()
        with contextlib.suppress(Exception):
            self.bpf.cleanup()
        if self.watch is not None:
            self.watch.close()  # the files followed: their probes are gone now


def load(
    cfg: NativeConfig,
    *,
    kernel_source: str,
    ring_buffer: bool,
    known: dict[str, dict[tuple[int, int], tuple[int, int]]] | None = None,
    debug_files: bool = True,
) -> ProbeSet:
    """Compile, load and attach; raises LoadError with BCC's reason when nothing could be loaded.

    ``known``: the files earlier loads probed at each path (native/follow.py), kept up to date.
    ``debug_files``: whether a uprobe's symbol is looked for in separate debug files (the agent's
    ``symbols.debugFiles``)."""
    bcc, why = load_bcc()
    if bcc is None:
        raise LoadError(why)
    # each target's file before the sites are read and the probes attach: a file put there later
    # is followed (native/follow.py)
    watch = TargetWatch.before_attach(cfg.uprobes, cfg.usdt, known) if cfg.uprobes or cfg.usdt else None
    if watch is not None:
        watch.debug_files = debug_files
    diagnostics: list[str] = []
    try:
        # the uprobes' addresses, before any probe attaches: a slow lookup (a hostile symbol table,
        # up to 120 s) then delays the attach, a gap, and costs no record of probes already writing
        resolved = (
            uprobes.resolve(cfg, watch.paths("uprobe") if watch else None, debug_files=debug_files)
            if cfg.uprobes
            else {}
        )
        sites = usdtprobes.probe_sites(cfg, watch.paths("usdt") if watch else None) if cfg.usdt else None
        text = program_text(cfg, ring_buffer=ring_buffer, usdt_sites=sites)
        with compile_env(kernel_source), captured_output(diagnostics):
            b = bcc.BPF(text=text.encode())
    except Exception as e:  # BCC raises bare Exception; clang's diagnostics went to stderr
        if watch is not None:
            watch.close()  # the files held for the attach (a load retried later holds its own)
        detail = "\n".join(diagnostics).strip()[-MAX_DIAGNOSTICS:]
        raise LoadError(
            f"BCC could not compile or load the probes: {e}" + (f"\n{detail}" if detail else "")
        ) from None
    ps = ProbeSet(bpf=b, cfg=cfg, ring_buffer=ring_buffer, watch=watch, usdt_sites=sites)
    try:
        _attach(ps, bcc, resolved)
        if watch is not None:
            # a former file's lookup runs on its own thread while the buffer is read into memory
            watch.idle = ps.held_idle
            watch.usdt_loaded = {i: tuple(s) for i, (s, _) in enumerate(sites or [])}
            watch.attached({label.split(" ", 1)[1] for label in ps.attached if " " in label})
            # processes still running a file replaced before the load: the scan's rest goes on at
            # the reads of the counters, while the buffer is read (native/follow.py)
            ps.former = watch.former(b, seconds=LOAD_SCAN_SECONDS)
            ps.failed += ps.former.failed
    except Exception as e:  # BCC raises bare Exception (a perf buffer refused: fds, locked memory)
        ps.close()
        # a LoadError, so the source reports it and tries again later (it ended the source before)
        raise LoadError(f"the probes could not be attached: {type(e).__name__}: {e}") from None
    return ps


def _attach(ps: ProbeSet, bcc: Any, resolved: dict[int, int | str]) -> None:
    b, cfg = ps.bpf, ps.cfg
    if cfg.exec_events:
        ps.failed += exec_probe.attach(b)
        ps.attached.append(exec_probe.TRACEPOINT)
    if cfg.syscalls:
        ps.failed += syscalls.attach(b, cfg)
        ps.attached.append(f"{syscalls.TRACEPOINT} ({', '.join(sorted(cfg.syscalls))})")
    if cfg.uprobes:
        failed = uprobes.attach(b, cfg, ps.watch.paths("uprobe") if ps.watch else None, resolved)
        bad = {label for label, _ in failed}
        ps.failed += failed
        ps.attached += [f"uprobe {t.label()}" for t in cfg.uprobes if t.label() not in bad]
    if cfg.usdt:
        held = ps.watch.paths("usdt") if ps.watch else None
        fds, failed = usdtprobes.attach(b, bcc, cfg, ps.usdt_sites, held)
        ps._perf_fds += fds
        bad = {label for label, _ in failed}
        ps.failed += failed
        ps.attached += [f"usdt {t.label()}" for t in cfg.usdt if t.label() not in bad]
    if cfg.tcp_state:
        if _tcp_wanted(cfg):
            ps.failed += tcp.attach(b)
            ps.attached.append(tcp.TRACEPOINT)
        else:
            ps.failed.append((tcp.TRACEPOINT, "the tracepoint is not in tracefs (kernel 4.16+ has it)"))
    m = b[b"stella_cgroup_allow"]
    for cg in cfg.cgroup_allow:
        m[ctypes.c_uint64(cg)] = ctypes.c_uint8(1)
    pending = ps._pending
    if ps.ring_buffer:

        def on_ring(_ctx: Any, data: Any, size: int) -> int:
            pending.append(ctypes.string_at(data, size))
            return 0

        b[b"stella_events"].open_ring_buffer(on_ring)
    else:

        def on_perf(_cpu: int, data: Any, size: int) -> None:
            pending.append(ctypes.string_at(data, size))

        def on_lost(count: int) -> None:
            ps.perf_lost += int(count)

        b[b"stella_events"].open_perf_buffer(on_perf, page_cnt=ps.cfg.ring_buffer_pages, lost_cb=on_lost)
