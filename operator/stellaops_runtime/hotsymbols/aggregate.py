"""Hot-symbol bridge: turn normalized events into windowed hot-symbol counts.

What counts as an observation (issue #2, DESIGN.md):

- a uprobe or USDT event is one invocation of its function (``invoked``);
- a kprobe, tracepoint or LSM event is one call of the kernel function it
  fired on (``kernel_call``), and, when it carries a user stack, one
  observation of each *distinct* function on that stack (``on_stack``); the
  frame below a function is its caller. Tetragon emits user stacks only on
  kprobes, so syscall kprobes with user stacks are how a Tetragon-first node
  sees which library functions run;
- an exec observes its binary (``executed``), a process_loader observes a file
  being mapped (``loaded``): loaded, not called, the evidence
  PotentiallyReachable rests on.

Functions are keyed on their canonical names (the frame canonicalizer ran
before this stage): a stack frame under the symbol it resolved to, or, when
nothing resolved, under Tetragon's hint or its file offset (``0x1a2b``); each
key also carries the function's canonical ID, ``<build-id>:<symbol>+0x0``,
when the symbol was resolved from the file itself (not for a hint).

Every event also marks its image as under observation in its window, at the
posture the event evidences (``contracts.posture.event_rank``: exec, exit and
loader are Passive; kernel probes, uprobes and USDT ActiveTracing; a kernel
probe whose user stack was counted here EbpfDeep, the only events that show
the image's functions): a window's posture is the highest any of its events
showed, what backs a "not observed" its weakest container's (window_units.py),
never what was asked for. A window also says which source delivered its events
(``tetragon`` or ``bcc``, the agent's own probes; ``bcc,tetragon`` when the
agent switched sources inside it; ``source`` for events that name none).

Counts accumulate in memory per (aggregation window, key) and are drained as
deltas by the flush loop; the store adds them up, so nothing here needs to
know what was flushed before. This module is pure: no I/O, no clock.

Memory per key is what bounds the agent (issue 13), so a key costs one dict
entry and one ``__slots__`` record, nothing more: keys are grouped by
(window, image, module, evidence), and inside a group the function name
itself is the dict key (no tuple per key); functionless keys (exec, loaded)
are one flat dict. The strings a key keeps (image, module, node, build-id) and
its example observation are shared with equal ones (hotsymbols/samples.py).
Distinct callers are kept across drains as hashes in arrays, no object
per key (hotsymbols/callers.py); observation windows are counted in
hotsymbols/window_counts.py; a kernel event's user stack is counted in
hotsymbols/stack_counting.py; what the fast path asks of the aggregator is in
hotsymbols/repeats.py. The aggregator holds at most what the agent lets
it: the agent drains it early once ``hotSymbols.maxKeys`` keys are held
(agent/runner.py). A drain leaves nothing of the drained keys behind: the
string and sample tables start over with the next window's keys, and the
``on_drain`` callbacks let the fast path drop the slots it held.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from stellaops_runtime.adapter.common import KERNEL_MODULE
from stellaops_runtime.contracts.events import EventKind, RuntimeCallEvent, StackFrame
from stellaops_runtime.contracts.hotsymbols import (
    CONFIDENCE,
    EvidenceKind,
    HotSymbolDelta,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import EVENT_POSTURE, STACK_KINDS, STACK_POSTURE
from stellaops_runtime.hotsymbols.callers import CallerTable, NotedChains
from stellaops_runtime.hotsymbols.repeats import RepeatCounting
from stellaops_runtime.hotsymbols.samples import SampleTable, StringTable, frame_entry_id
from stellaops_runtime.hotsymbols.slots import Group, Slot, id_symbol, slot_deltas
from stellaops_runtime.hotsymbols.stack_counting import StackCounting
from stellaops_runtime.hotsymbols.window_counts import WindowCounts

if TYPE_CHECKING:
    from stellaops_runtime.hotsymbols.run_windows import RunWindows

_INVOKED = EvidenceKind.INVOKED
_KERNEL = EvidenceKind.KERNEL_CALL
_STACK = EvidenceKind.ON_STACK
_EXEC = EvidenceKind.EXECUTED
_LOADED = EvidenceKind.LOADED

# Event kinds as module names: an enum class attribute read costs ~90 ns (per event here).
_UPROBE, _USDT, _EXEC_KIND = EventKind.UPROBE, EventKind.USDT, EventKind.EXEC
_LOADER_KIND, _EXIT_KIND = EventKind.LOADER, EventKind.EXIT
_KERNEL_KINDS = STACK_KINDS  # the kinds whose user stacks are counted

# Posture rank per event kind, keyed by the kind's string value: a str hashes from
# its cache, an Enum member through a Python-level __hash__ (this is per event).
_POSTURE_RANK: dict[str, int] = {k.value: p.rank for k, p in EVENT_POSTURE.items()}
_STACK_RANK = STACK_POSTURE.rank  # contracts.posture.event_rank, inlined in observe()


class HotSymbolAggregator(StackCounting, RepeatCounting):
    """Windowed counts per hot-symbol key, drained as deltas."""

    def __init__(
        self,
        *,
        window_seconds: int,
        min_confidence: float,
        max_callers_per_symbol: int = 256,
        max_tracked_caller_keys: int = 200_000,
        symbol_id_only: bool = False,
        source: str = "tetragon",
        started_ns: int | None = None,
    ) -> None:
        self._window_ns = window_seconds * 1_000_000_000
        self._window_seconds = window_seconds
        self.source = source
        self._max_caller_keys = max_tracked_caller_keys
        self._enabled = {e: c >= min_confidence for e, c in CONFIDENCE.items()}
        self._groups: dict[Group, dict[str, Slot]] = {}
        self._keys = 0
        # the agent's start (wall clock): the days up to it are judged without the calls an agent
        # before it saw (hotsymbols/day_calls.py)
        self._windows = WindowCounts(window_seconds, started_ns)
        # Distinct callers per stack key, kept across drains (bounded).
        self._callers = CallerTable(max_callers=max_callers_per_symbol, max_keys=max_tracked_caller_keys)
        self._chains = NotedChains()  # stacks' caller chains already in that table (emptied at drain)
        # exec_id -> {path: build-id} from process_loader events, for stack frames.
        self._build_ids: dict[str, dict[str, str]] = {}
        self._symbol_id_only = symbol_id_only
        self._share = StringTable()
        self._samples = SampleTable(self._share, symbol_id_only=symbol_id_only)
        # Called (no arguments) after every drain: holders of slots let them go (agent/fastpath.py).
        self.on_drain: list[Callable[[], None]] = []
        self.observations = 0
        self.below_threshold = 0
        self.peak_keys = 0  # the most keys held at once (the bench and tests read it)
        # Windows of images that ran here while watched (lifecycle registry; agent/lifecycle_part.py).
        self.runs: RunWindows | None = None
        # Bumped whenever slots or callers are dropped (drain, the callers' bound): slots handed
        # out by observe_bound() are only valid for repeat() while it is unchanged (agent/fastpath.py).
        self.epoch = 0
        # When a list, observe() appends every slot it counts in (the fast path keeps them).
        self.touched: list[Slot] | None = None

    @property
    def key_count(self) -> int:
        """Distinct (window, key) pairs held."""
        return self._keys

    def blind_through(self, ns: int) -> None:
        """An agent before this one watched the node until ``ns`` (agent/history_days.py)."""
        self._windows.blind_through(ns)

    def await_history(self, awaiting: bool = True) -> None:
        """The store's moment of the agents before is awaited, or came (agent/history_days.py)."""
        self._windows.await_history(awaiting)

    @property
    def rows(self) -> int:
        """Rows a drain would hand over: keys plus observation windows (what the agent bounds)."""
        return self._keys + len(self._windows)

    # -- observing -------------------------------------------------------

    def observe(self, ev: RuntimeCallEvent) -> int:
        """Record what one event observes; returns the number of observations."""
        ts = ev.timestamp_ns
        win = ts - ts % self._window_ns
        c = ev.container  # RuntimeCallEvent.image_key, inlined (once per event: no property call)
        if c is None:
            image = f"host:{ev.node_name}"
        else:
            image = c.image_digest or c.image_id or c.image_ref or f"container:{c.id}"
        kind = ev.kind
        level = _POSTURE_RANK[kind._value_]
        if ev.user_stack and kind in _KERNEL_KINDS and self._enabled[_STACK]:
            level = _STACK_RANK  # its stack's functions are counted below: they were seen
        if ev.posture_cap is not None and ev.posture_cap.rank < level:  # e.g. Python USDT: Passive
            level = ev.posture_cap.rank
        self._windows.note(image, ev.node_name, win, level, ev.source, self._share, c.id if c else "")
        n = 0
        if kind is _UPROBE or kind is _USDT:
            fid = ev.function_id
            name = id_symbol(fid) if fid else ev.function_name
            bid = fid[: fid.index(":")] if fid else ev.build_id
            n += self._add((win, image, ev.module, _INVOKED), name, ev, bid, function_id=fid)
        elif kind in _KERNEL_KINDS:
            fid = ev.function_id
            if self._enabled[_KERNEL]:  # _add, inlined (once per kernel event); the build-id cut when used
                group = (win, image, KERNEL_MODULE, _KERNEL)
                slots = self._groups.get(group)
                slot = slots.get(ev.function_name) if slots is not None else None
                ts, lat = ev.timestamp_ns, ev.latency_ns or 0
                if slot is None:
                    bid = fid[: fid.index(":")] if fid else ""
                    slot = self._new_slot(group, slots, ev.function_name, ev, ts, lat, bid, fid, None)
                else:
                    slot.count += 1
                    if ts < slot.first_ns:
                        slot.first_ns = ts
                    elif ts > slot.last_ns:
                        slot.last_ns = ts
                    if lat:
                        slot.total_latency_ns += lat
                        if lat > slot.max_latency_ns:
                            slot.max_latency_ns = lat
                    if fid and not slot.build_id:
                        slot.build_id = self._share(fid[: fid.index(":")])
                    if fid and not slot.function_id:
                        slot.function_id = fid
                if self.touched is not None:
                    self.touched.append(slot)
                n = 1
            else:
                self.below_threshold += 1
            if ev.user_stack:
                n += self._observe_stack(win, image, ev)
        elif kind is _EXEC_KIND:
            n += self._add((win, image, ev.process.binary, _EXEC), "", ev, "")
        elif kind is _LOADER_KIND:
            if ev.build_id:
                self._remember_build_id(ev.process.exec_id, ev.module, ev.build_id)
            n += self._add((win, image, ev.module, _LOADED), "", ev, ev.build_id)
        elif kind is _EXIT_KIND:
            self._build_ids.pop(ev.process.exec_id, None)
        self.observations += n
        if self._keys > self.peak_keys:
            self.peak_keys = self._keys
        return n

    def _add(
        self,
        group: Group,
        function: str,
        ev: RuntimeCallEvent,
        build_id: str,
        *,
        function_id: str = "",
        frame: StackFrame | None = None,
    ) -> int:
        """Count one observation of ``function`` in ``group``; a stack ``frame``'s entry ID is built
        only when the key's slot has none yet (not per event)."""
        evidence = group[3]
        if not self._enabled[evidence]:
            self.below_threshold += 1
            return 0
        ts = ev.timestamp_ns
        lat = ev.latency_ns or 0
        slots = self._groups.get(group)
        slot = slots.get(function) if slots is not None else None
        if slot is None:
            slot = self._new_slot(group, slots, function, ev, ts, lat, build_id, function_id, frame)
        else:
            slot.count += 1
            if ts < slot.first_ns:
                slot.first_ns = ts
            elif ts > slot.last_ns:
                slot.last_ns = ts
            if lat:
                slot.total_latency_ns += lat
                if lat > slot.max_latency_ns:
                    slot.max_latency_ns = lat
            if build_id and not slot.build_id:
                slot.build_id = self._share(build_id)
            if not slot.function_id:
                if frame is not None:
                    function_id = frame_entry_id(frame)
                if function_id:
                    slot.function_id = function_id
        if self.touched is not None:
            self.touched.append(slot)
        return 1

    def _new_slot(
        self,
        group: Group,
        slots: dict[str, Slot] | None,
        function: str,
        ev: RuntimeCallEvent,
        ts: int,
        lat: int,
        build_id: str,
        function_id: str,
        frame: StackFrame | None,
    ) -> Slot:
        share = self._share
        if slots is None:
            win, image, module, evidence = group
            slots = self._groups[(win, share(image), share(module), evidence)] = {}
        if frame is not None:
            function_id = frame_entry_id(frame)
        slot = slots[function] = Slot(
            ts, lat, share(ev.node_name), share(build_id), function_id, self._samples.of(ev)
        )
        self._keys += 1
        return slot

    def _remember_build_id(self, exec_id: str, path: str, build_id: str) -> None:
        ids = self._build_ids.get(exec_id)
        if ids is None:
            if len(self._build_ids) >= self._max_caller_keys:
                self._build_ids.clear()
            ids = self._build_ids[exec_id] = {}
        ids[path] = build_id

    # -- draining --------------------------------------------------------

    def drain(self) -> tuple[list[HotSymbolDelta], list[ObservationWindow]]:
        """Everything counted since the last drain, as deltas; resets the counts.

        Nothing of the drained keys stays behind: the string and sample tables
        start over (the next keys share among themselves), and every
        :attr:`on_drain` callback runs once the deltas are built.
        """
        groups, self._groups = self._groups, {}
        self.epoch += 1
        self._keys = 0
        deltas = slot_deltas(groups, self._callers)
        self._chains.clear()  # nothing of the window's stacks outlives it
        del groups
        obs = self._windows.drain(self.source, self.runs)  # the lifecycle: silent containers too
        if self.runs is not None:
            obs = self._windows.quiet(self.runs.drain(obs, self.source), self.runs)
        self._share = StringTable()
        self._samples = SampleTable(self._share, symbol_id_only=self._symbol_id_only)
        for release in self.on_drain:
            release()
        return deltas, obs
