"""What the first Tetragon stream after the native probes must not count again.

The source switch (agent/source_switch.py) separates its two sources by the
*arrival* time of their payloads. Tetragon's event cache does not respect that
line: an event whose process or pod Tetragon did not know yet is held (up to
15 retries 2 s apart) and sent to the listeners present when it is finally
sent. So the stream opened after a BCC-to-Tetragon switch receives events
stamped while the agent's own probes still ran, and for a function the probes
had attached they already counted that very call: counted twice.

An :class:`Overlap` rides on that first Tetragon segment. It skips an event
stamped in ``[since_ns, detached_ns)`` (the probes watched then) whose function
the probes had attached (their attach list, not only their configuration: a
probe that failed to attach counted nothing), and counts the skip. Anything
else is counted: a function only Tetragon traces, a call stamped before the
probes started or after they detached, an event whose time Tetragon did not
give (the pipeline stamps it with its arrival, after the switch).

It ends (``live`` false) once the segment delivers an event stamped at or past
``detached_ns`` plus the event hold (sources/event_hold.py: how far back the
events Tetragon still holds may reach), since the cache has then sent what it
held from the probes' time. It decodes each payload once more while live (the
time and function are needed before the fast path, which would count a repeat
without decoding it), so the cost is bounded by that time.

Pure logic: the switch hands it the probes' configuration and attach list and
calls :meth:`Overlap.keep` on the pipeline thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stellaops_runtime.adapter import from_proto
from stellaops_runtime.adapter.common import AdapterStats
from stellaops_runtime.contracts.events import EventKind, RuntimeCallEvent
from stellaops_runtime.native.config import NativeConfig

# The native loader's attach-list labels (native/loader.py _attach; the probes' modules are not
# imported here: they need BCC).
EXEC_LABEL = "sched:sched_process_exec"  # native/probes/exec.py TRACEPOINT
SYSCALLS_LABEL = "raw_syscalls:sys_enter"  # native/probes/syscalls.py TRACEPOINT (+ " (names)")
TCP_LABEL = "sock:inet_sock_set_state"  # native/probes/tcp.py TRACEPOINT
SYSCALL_PREFIX = "__x64_sys_"  # native/events.py SYSCALL_PREFIX
TCP_FUNCTION = "sock/inet_sock_set_state"  # native/events.py TCP_FUNCTION

Key = tuple[EventKind, str, str]  # (kind, module, function name); module "" for kernel functions


@dataclass(slots=True)
class Overlap:
    """The probes' watched time and what they counted in it (see the module docstring)."""

    since_ns: int  # wall clock: the probes could count from here (the switch to BCC)
    detached_ns: int  # wall clock: ... until here
    keys: frozenset[Key]
    exec_events: bool = False
    cgroups: frozenset[int] = frozenset()  # the kernel's cgroup allow list (empty: every cgroup)
    unwatched: tuple[tuple[int, int], ...] = ()  # wall spans the probes did not read (a read cut short)
    live: bool = True
    skipped: int = 0
    _stats: AdapterStats = field(default_factory=AdapterStats)  # the extra decode's counters, thrown away

    @classmethod
    def of(
        cls,
        cfg: NativeConfig,
        attached: list[str],
        *,
        since_ns: int,
        detached_ns: int,
        unwatched: list[tuple[int, int]] | None = None,
    ) -> Overlap | None:
        """The overlap of probes loaded with ``cfg`` whose loader attached ``attached``; None when
        they counted nothing (never detached, nothing attached). ``unwatched``: the spans the probes
        recorded as not read (native/source.py ``_note_cut``): calls there were not counted."""
        if not detached_ns or not attached or detached_ns <= since_ns:
            return None
        on = set(attached)
        keys: set[Key] = set()
        for t in cfg.uprobes:
            if f"uprobe {t.label()}" in on:
                keys.add((EventKind.UPROBE, t.module or t.binary, t.symbol))
        for u in cfg.usdt:
            if f"usdt {u.label()}" in on:
                keys.add((EventKind.USDT, u.binary, f"{u.provider}:{u.name}"))
        if any(a.startswith(SYSCALLS_LABEL) for a in on):
            keys.update((EventKind.SYSCALL, "", SYSCALL_PREFIX + name) for name in cfg.syscalls)
        if TCP_LABEL in on:
            keys.add((EventKind.TRACEPOINT, "", TCP_FUNCTION))
        exec_events = cfg.exec_events and EXEC_LABEL in on
        if not keys and not exec_events:
            return None
        return cls(
            since_ns, detached_ns, frozenset(keys), exec_events, frozenset(cfg.cgroup_allow),
            tuple(sorted(unwatched or ())),
        )  # fmt: skip

    def counted_by_probes(self, ev: RuntimeCallEvent) -> bool:
        """The probes counted this call already: stamped while they watched, a function they attached."""
        t = ev.timestamp_ns
        if not self.since_ns <= t < self.detached_ns or any(a <= t < b for a, b in self.unwatched):
            return False
        if self.cgroups and (ev.container is None or ev.container.cgroup_id not in self.cgroups):
            return False
        kind = ev.kind
        if kind is EventKind.EXEC:
            return self.exec_events
        module = ev.module if kind is EventKind.UPROBE or kind is EventKind.USDT else ""
        return (kind, module, ev.function_name) in self.keys

    def keep(self, items: list[tuple[bytes, int]], hold_ns: int, depth: int) -> list[tuple[bytes, int]]:
        """``items`` (GetEventsResponse payloads, arrival time) less the calls the probes counted."""
        out: list[tuple[bytes, int]] = []
        end = self.detached_ns + hold_ns
        for i, (payload, received) in enumerate(items):
            try:
                ev = from_proto.adapt_payload(payload, received, self._stats, depth)
            except Exception:  # the ordinary path meets it again and counts the failure
                ev = None
            if ev is not None and ev.timestamp_ns >= end:
                self.live = False  # the cache has sent what it held from the probes' time
                out.extend(items[i:])
                break
            if ev is not None and self.counted_by_probes(ev):
                self.skipped += 1
                continue
            out.append((payload, received))
        self._stats = AdapterStats()  # nothing of the extra decode is kept
        return out
