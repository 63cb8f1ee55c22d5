"""What the first Tetragon stream after the native probes must not count again.

The source switch (agent/source_switch.py) separates its two sources by the
*arrival* time of their payloads. Tetragon's event cache does not respect that
line: an event whose process or pod Tetragon did not know yet is held (up to
15 retries 2 s apart) and sent to the listeners present when it is finally
sent. So the stream opened after a BCC-to-Tetragon switch receives events
stamped while the agent's own probes still ran, and for a function the probes
had attached they already counted that very call: counted twice.

An :class:`Overlap` rides on that first Tetragon segment. It holds one
:class:`Load` per probe load of the BCC period (a reload that changed the
attach list leaves the earlier load's functions counted in its own time) and
skips an event stamped in a load's ``[since_ns, detached_ns)`` whose function
that load had attached (its attach list, not only its configuration: a probe
that failed to attach counted nothing), and counts the skip. The file is
matched as the node knows it: the probes name a ``binaryPath`` file
``/proc/1/root<path>`` and Tetragon ``<tetragonHostRoot><path>`` (default
``/procRoot/1/root``, or the bare path), so both prefixes of the node's root
are dropped before comparing (``node_path``); any other ``/proc/<pid>/root`` is
another mount namespace's file. A policy's other ``tetragonHostRoot`` comes in
the probe ConfigMap (``NativeConfig.tetragon_roots``), and ``<root><path>`` is
matched too. Probes limited to cgroups (``cgroupAllow``)
counted only those cgroups' calls, and Tetragon's events carry the container id,
not the cgroup id: the containers those cgroups are (native/cgroup_ids.py) are
matched; when some of those cgroups were not seen in the node's tree (unreadable,
cgroup v1, gone), whose call an event is cannot be told: every cached call of the
load's functions in its span is skipped, and the switch marks that span a gap.
A PURL target is one container's file (or the file its image's containers
share), found at the load: only the calls of those containers are the probes'.
Anything else is counted: a function only Tetragon traces, a call stamped before
the probes started or after their last read began (the uprobes are detached
first, and what is written after its poll is read by nobody:
native/source_stats.py ``last_read_ns``), an event whose time Tetragon did not
give (the pipeline stamps it with its arrival, after the switch), a span the
probes did not read.

It ends (``live`` false) once the segment delivers an event stamped at or past
the last detach plus the event hold (sources/event_hold.py: how far back the
events Tetragon still holds may reach), since the cache has then sent what it
held from the probes' time; an event stamped ahead of the node's clock (a
clock step, a hostile or replayed stream) proves nothing and does not end it;
a node clock that reads before the last detach (stepped back) ends it at once,
since a fresh call is then stamped inside the probes' time.
It decodes each payload once more while live (the time and function are
needed before the fast path, which would count a repeat without decoding it),
so the cost is bounded by that time.

Pure logic apart from reading the wall clock: the switch hands it the probes'
configurations and attach lists and calls :meth:`Overlap.keep` on the
pipeline thread.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from stellaops_runtime.adapter import from_proto
from stellaops_runtime.adapter.common import AdapterStats
from stellaops_runtime.contracts.events import EventKind, RuntimeCallEvent
from stellaops_runtime.native.cgroup_ids import names_container
from stellaops_runtime.native.config import NativeConfig

# The native loader's attach-list labels (native/loader.py _attach; the probes' modules are not
# imported here: they need BCC).
EXEC_LABEL = "sched:sched_process_exec"  # native/probes/exec.py TRACEPOINT
SYSCALLS_LABEL = "raw_syscalls:sys_enter"  # native/probes/syscalls.py TRACEPOINT (+ " (names)")
TCP_LABEL = "sock:inet_sock_set_state"  # native/probes/tcp.py TRACEPOINT
SYSCALL_PREFIX = "__x64_sys_"  # native/events.py SYSCALL_PREFIX
TCP_FUNCTION = "sock/inet_sock_set_state"  # native/events.py TCP_FUNCTION
# The node's root: the probes' (native/policy_config.py DEFAULT_HOST_ROOT) and Tetragon's default
# (contracts/crd_names.py DEFAULT_TETRAGON_HOST_ROOT); pid 1 only, any other pid's root is a container's.
_NODE_ROOT = re.compile(r"/proc(?:Root/1|/1)/root(?=/)")
CLOCK_SLACK_NS = 1_000_000_000  # an event stamped further ahead of the node's clock is not taken as now
MAX_LOADS = 64  # earlier loads kept per BCC period (the oldest go first: fewer skips, never a loss)
# In Load.cgroup_containers: an allowed cgroup was found naming no container (a host service, a
# runtime's monitor, a container's cgroup holding cgroups, or one gone by the look). Tetragon's cached
# call of a host process carries no container, and which host cgroup it ran in cannot be told: each
# is taken as the probes' (skipped, inside the limited load's node-wide gap: source_switch_gaps.py)
HOST = ""
RUNNING = 1 << 62  # the end of a load still running (agent/source_switch_loads.py writes it as 0)

Key = tuple[EventKind, str, str]  # (kind, module, function name); module "" for kernel functions


def node_path(module: str) -> str:
    """``module`` without a leading node root (``/proc/1/root``, ``/procRoot/1/root``)."""
    m = _NODE_ROOT.match(module)
    return module[m.end() :] if m is not None else module


def bare_id(container: str) -> str:
    """A container id without its runtime prefix (``containerd://``), as events carry it."""
    return container.rpartition("://")[2]


@dataclass(frozen=True, slots=True)
class Load:
    """One probe load: its watched time and what it attached (see the module docstring)."""

    since_ns: int  # wall clock: the probes could count from here (the switch to BCC, or the reload)
    detached_ns: int  # wall clock: ... until here
    keys: frozenset[Key]  # every container's calls
    own: Mapping[Key, frozenset[str]]  # PURL targets: only these containers' calls (bare ids)
    exec_events: bool = False
    cgroups: frozenset[int] = frozenset()  # the kernel's cgroup allow list (empty: every cgroup)
    # ... the containers those cgroups are (native/cgroup_ids.py): Tetragon's events carry no cgroup id
    cgroup_containers: frozenset[str] = frozenset()
    # ... some of those cgroups were not seen in the node's tree (cgroup_ids.look_up): whose call a
    # cached event of the load's functions is cannot be told, so each is taken as the probes' (skipped)
    # and the load's span is a gap (SwitchBack._mark_undecided): never counted twice
    cgroups_unseen: bool = False

    @classmethod
    def of(
        cls,
        cfg: NativeConfig,
        attached: Iterable[str],
        *,
        since_ns: int,
        detached_ns: int,
        cgroup_containers: Iterable[str] = (),
        cgroups_unseen: bool = False,
    ) -> Load | None:
        """The load of ``cfg`` whose loader attached ``attached``; None when it counted nothing."""
        on = set(attached)
        if not detached_ns or not on or detached_ns <= since_ns:
            return None
        keys: set[Key] = set()
        own: dict[Key, frozenset[str]] = {}
        for t in cfg.uprobes:
            if f"uprobe {t.label()}" not in on:
                continue
            if t.root:  # one container's file (and its image's, shared), not every file at that path
                k = (EventKind.UPROBE, t.module, t.symbol)
                own[k] = own.get(k, frozenset()) | {bare_id(c) for c in t.containers}
            else:
                path = node_path(t.module or t.binary)
                keys.add((EventKind.UPROBE, path, t.symbol))
                keys.update((EventKind.UPROBE, r + path, t.symbol) for r in cfg.tetragon_roots)
        for u in cfg.usdt:
            if f"usdt {u.label()}" in on:
                keys.add((EventKind.USDT, node_path(u.binary), f"{u.provider}:{u.name}"))
        if any(a.startswith(SYSCALLS_LABEL) for a in on):
            keys.update((EventKind.SYSCALL, "", SYSCALL_PREFIX + name) for name in cfg.syscalls)
        if TCP_LABEL in on:
            keys.add((EventKind.TRACEPOINT, "", TCP_FUNCTION))
        exec_events = cfg.exec_events and EXEC_LABEL in on
        if not keys and not own and not exec_events:
            return None
        cgroups = frozenset(cfg.cgroup_allow)
        ids = frozenset(cgroup_containers) if cgroups else frozenset()
        unseen = bool(cgroups) and cgroups_unseen
        return cls(since_ns, detached_ns, frozenset(keys), own, exec_events, cgroups, ids, unseen)

    def _allowed(self, ev: RuntimeCallEvent) -> bool:
        """The call was in a cgroup the probes were limited to: its id, or its container's; a host
        process's, when a cgroup naming no container was allowed (:data:`HOST`)."""
        c = ev.container
        if c is None or not c.id:
            return HOST in self.cgroup_containers
        if c.cgroup_id in self.cgroups:
            return True
        return bool(c.id) and names_container(self.cgroup_containers, c.id)

    def counted(self, ev: RuntimeCallEvent) -> bool:
        """This load counted the call: stamped while it watched, a function it attached."""
        if not self.since_ns <= ev.timestamp_ns < self.detached_ns:
            return False
        if self.cgroups and not self.cgroups_unseen and not self._allowed(ev):
            return False
        kind = ev.kind
        if kind is EventKind.EXEC:
            return self.exec_events
        module = node_path(ev.module) if kind is EventKind.UPROBE or kind is EventKind.USDT else ""
        key = (kind, module, ev.function_name)
        if key in self.keys:
            return True
        ids = self.own.get(key)
        return ids is not None and ev.container is not None and ev.container.id in ids


@dataclass(slots=True)
class Overlap:
    """The probe loads of one BCC period and what they counted (see the module docstring)."""

    loads: tuple[Load, ...]
    unwatched: tuple[tuple[int, int], ...] = ()  # wall spans the probes did not read (a read cut short)
    live: bool = True
    skipped: int = 0
    _stats: AdapterStats = field(default_factory=AdapterStats)  # the extra decode's counters, thrown away

    @property
    def detached_ns(self) -> int:
        return max(ld.detached_ns for ld in self.loads)

    @property
    def undecided(self) -> list[tuple[int, int]]:
        """The spans of loads whose cached calls cannot be told from others' (``Load.cgroups_unseen``):
        skipped whatever their container, so each span must be a gap."""
        return [(ld.since_ns, ld.detached_ns) for ld in self.loads if ld.cgroups_unseen]

    @classmethod
    def of(
        cls,
        cfg: NativeConfig,
        attached: list[str],
        *,
        since_ns: int,
        detached_ns: int,
        unwatched: list[tuple[int, int]] | None = None,
        earlier: Iterable[Load] = (),
    ) -> Overlap | None:
        """The overlap of probes loaded with ``cfg`` whose loader attached ``attached``, after the
        ``earlier`` loads of the same BCC period; None when none counted anything (never detached,
        nothing attached). ``unwatched``: the spans the probes recorded as not read
        (native/source.py ``_note_cut``): calls there were not counted."""
        last = Load.of(cfg, attached, since_ns=since_ns, detached_ns=detached_ns)
        loads = (*earlier, last) if last is not None else tuple(earlier)
        if not loads:
            return None
        return cls(loads, tuple(sorted(unwatched or ())))

    def counted_by_probes(self, ev: RuntimeCallEvent) -> bool:
        """The probes counted this call already: stamped while a load watched, a function it attached."""
        t = ev.timestamp_ns
        if any(a <= t < b for a, b in self.unwatched):
            return False
        return any(ld.counted(ev) for ld in self.loads)

    def keep(self, items: list[tuple[bytes, int]], hold_ns: int, depth: int) -> list[tuple[bytes, int]]:
        """``items`` (GetEventsResponse payloads, arrival time) less the calls the probes counted."""
        out: list[tuple[bytes, int]] = []
        end, now = self.detached_ns + hold_ns, time.time_ns()
        if now < self.detached_ns:  # the clock stepped back into the probes' time: a fresh call may be
            self.live = False  # stamped inside a load's, and was never theirs (counted twice at worst)
            return items
        ahead = now + CLOCK_SLACK_NS  # a stamp past this is not the node's present
        for i, (payload, received) in enumerate(items):
            try:
                ev = from_proto.adapt_payload(payload, received, self._stats, depth)
            except Exception:  # the ordinary path meets it again and counts the failure
                ev = None
            if ev is not None and end <= ev.timestamp_ns <= ahead:
                self.live = False  # the cache has sent what it held from the probes' time
                out.extend(items[i:])
                break
            if ev is not None and self.counted_by_probes(ev):
                self.skipped += 1
                continue
            out.append((payload, received))
        self._stats = AdapterStats()  # nothing of the extra decode is kept
        return out
