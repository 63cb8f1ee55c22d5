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
posture the event evidences (``contracts.posture.EVENT_POSTURE``: exec, exit
and loader are Passive; kernel probes ActiveTracing; uprobes EbpfDeep; USDT
FullInstrumentation): a window's posture is the highest any of its events
showed, so a "not observed" answer rests on what the source delivered, never
on what was asked for.

Counts accumulate in memory per (aggregation window, key) and are drained as
deltas by the flush loop; the store adds them up, so nothing here needs to
know what was flushed before. This module is pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stellaops_runtime.adapter.common import KERNEL_MODULE
from stellaops_runtime.canonical.function_id import function_entry_id
from stellaops_runtime.canonical.resolution import RESOLVED_SOURCES
from stellaops_runtime.contracts.events import EventKind, RuntimeCallEvent, StackFrame
from stellaops_runtime.contracts.hotsymbols import (
    CONFIDENCE,
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import EVENT_POSTURE, ORDER

_INVOKED = EvidenceKind.INVOKED
_KERNEL = EvidenceKind.KERNEL_CALL
_STACK = EvidenceKind.ON_STACK
_EXEC = EvidenceKind.EXECUTED
_LOADED = EvidenceKind.LOADED

_KERNEL_KINDS = frozenset({EventKind.SYSCALL, EventKind.KPROBE, EventKind.TRACEPOINT, EventKind.LSM})

# Posture rank per event kind, keyed by the kind's string value: a str hashes from
# its cache, an Enum member through a Python-level __hash__ (this is per event).
_POSTURE_RANK: dict[str, int] = {k.value: p.rank for k, p in EVENT_POSTURE.items()}

# Internal key: a plain tuple hashes several times faster than a dataclass.
_Key = tuple[str, str, str, EvidenceKind]  # image, module, function, evidence


def frame_function(f: StackFrame) -> str:
    """The function name a frame is counted under.

    The symbol when one is known; otherwise the file offset (``0x1a2b``), so
    that an unsymbolized frame is still one stable key per location.
    """
    return f.symbol or f"0x{f.offset:x}"


def frame_entry_id(f: StackFrame) -> str:
    """The canonical ID of the function a frame is in (its entry), or "" when not resolved."""
    if f.source in RESOLVED_SOURCES and f.build_id and f.symbol:
        return function_entry_id(f.build_id, f.symbol)
    return ""


def frame_text(f: StackFrame) -> str:
    """A frame for a sample: ``module!symbol+0x<offset from the symbol>`` once resolved, else
    ``module!<hint or 0xfile offset>+0x<file offset>`` as the source gave it."""
    off = f.symbol_offset if f.source in RESOLVED_SOURCES else f.offset
    if f.module:
        return f"{f.module}!{frame_function(f)}+0x{off:x}"
    return f"{frame_function(f)}+0x{off:x}"


def _id_symbol(function_id: str) -> str:
    """The symbol part of ``<build-id>:<symbol>+0x<offset>`` (no validation: IDs here are ours)."""
    return function_id[function_id.index(":") + 1 : function_id.rindex("+0x")]


@dataclass(slots=True)
class _Slot:
    count: int
    first_ns: int
    last_ns: int
    total_latency_ns: int
    max_latency_ns: int
    node: str
    build_id: str
    function_id: str
    sample: tuple[Any, ...] | None


class HotSymbolAggregator:
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
    ) -> None:
        self._window_ns = window_seconds * 1_000_000_000
        self._window_seconds = window_seconds
        self.source = source
        self._max_callers = max_callers_per_symbol
        self._max_caller_keys = max_tracked_caller_keys
        self._symbol_id_only = symbol_id_only
        self._enabled = {e: c >= min_confidence for e, c in CONFIDENCE.items()}
        self._slots: dict[tuple[int, _Key], _Slot] = {}
        # (image, node, window start) -> [event count, highest posture rank]
        self._windows: dict[tuple[str, str, int], list[int]] = {}
        # Distinct callers per key, kept across drains (bounded).
        self._callers: dict[_Key, set[str]] = {}
        # exec_id -> {path: build-id} from process_loader events, for stack frames.
        self._build_ids: dict[str, dict[str, str]] = {}
        self._sample_event: RuntimeCallEvent | None = None
        self._sample_value: tuple[Any, ...] = ()
        self.observations = 0
        self.below_threshold = 0

    @property
    def key_count(self) -> int:
        return len(self._slots)

    # -- observing -------------------------------------------------------

    def observe(self, ev: RuntimeCallEvent) -> int:
        """Record what one event observes; returns the number of observations."""
        ts = ev.timestamp_ns
        win = ts - ts % self._window_ns
        image = ev.image_key
        wkey = (image, ev.node_name, win)
        kind = ev.kind
        level = _POSTURE_RANK[kind._value_]
        seen = self._windows.get(wkey)
        if seen is None:
            self._windows[wkey] = [1, level]
        else:
            seen[0] += 1
            if level > seen[1]:
                seen[1] = level
        n = 0
        if kind is EventKind.UPROBE or kind is EventKind.USDT:
            fid = ev.function_id
            name = _id_symbol(fid) if fid else ev.function_name
            bid = fid[: fid.index(":")] if fid else ev.build_id
            n += self._add(win, (image, ev.module, name, _INVOKED), ev, bid, function_id=fid)
        elif kind in _KERNEL_KINDS:
            fid = ev.function_id
            bid = fid[: fid.index(":")] if fid else ""
            n += self._add(win, (image, KERNEL_MODULE, ev.function_name, _KERNEL), ev, bid, function_id=fid)
            if ev.user_stack:
                n += self._observe_stack(win, image, ev)
        elif kind is EventKind.EXEC:
            n += self._add(win, (image, ev.process.binary, "", _EXEC), ev, "")
        elif kind is EventKind.LOADER:
            if ev.build_id:
                self._remember_build_id(ev.process.exec_id, ev.module, ev.build_id)
            n += self._add(win, (image, ev.module, "", _LOADED), ev, ev.build_id)
        elif kind is EventKind.EXIT:
            self._build_ids.pop(ev.process.exec_id, None)
        self.observations += n
        return n

    def _observe_stack(self, win: int, image: str, ev: RuntimeCallEvent) -> int:
        stack = ev.user_stack
        ids = self._build_ids.get(ev.process.exec_id)
        seen: set[tuple[str, str]] = set()
        n = 0
        last = len(stack) - 1
        for i, f in enumerate(stack):
            fn = frame_function(f)
            key = (image, f.module, fn, _STACK)
            caller = ""
            if i < last:
                c = stack[i + 1]
                caller = f"{c.module}!{frame_function(c)}"
            if (f.module, fn) in seen:  # recursion: one observation, but every caller counts
                if caller and self._enabled[_STACK]:
                    self._add_caller(key, caller)
                continue
            seen.add((f.module, fn))
            build_id = f.build_id or (ids.get(f.module, "") if ids else "")
            n += self._add(win, key, ev, build_id, caller, frame=f)
        return n

    def _add(
        self,
        win: int,
        key: _Key,
        ev: RuntimeCallEvent,
        build_id: str,
        caller: str = "",
        *,
        function_id: str = "",
        frame: StackFrame | None = None,
    ) -> int:
        """Count one observation of ``key``; a stack ``frame``'s entry ID is built only when the
        key's slot has none yet (not per event)."""
        if not self._enabled[key[3]]:
            self.below_threshold += 1
            return 0
        ts = ev.timestamp_ns
        lat = ev.latency_ns or 0
        slot = self._slots.get((win, key))
        if slot is None:
            if frame is not None:
                function_id = frame_entry_id(frame)
            self._slots[(win, key)] = _Slot(
                1, ts, ts, lat, lat, ev.node_name, build_id, function_id, self._sample(ev)
            )
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
                slot.build_id = build_id
            if not slot.function_id:
                if frame is not None:
                    function_id = frame_entry_id(frame)
                if function_id:
                    slot.function_id = function_id
        if caller:
            self._add_caller(key, caller)
        return 1

    def _add_caller(self, key: _Key, caller: str) -> None:
        callers = self._callers.get(key)
        if callers is None:
            if len(self._callers) >= self._max_caller_keys:
                self._callers.clear()  # the store keeps the maximum it saw
            callers = self._callers[key] = set()
        if len(callers) < self._max_callers:
            callers.add(caller)

    def _remember_build_id(self, exec_id: str, path: str, build_id: str) -> None:
        ids = self._build_ids.get(exec_id)
        if ids is None:
            if len(self._build_ids) >= self._max_caller_keys:
                self._build_ids.clear()
            ids = self._build_ids[exec_id] = {}
        ids[path] = build_id

    def _sample(self, ev: RuntimeCallEvent) -> tuple[Any, ...]:
        """One example observation for a new key (arguments already privacy-filtered).

        Built once per event and shared by every key that event creates, as a
        compact tuple (strings are the event's own); a dict only at drain.
        """
        if ev is self._sample_event:
            return self._sample_value
        stack = tuple(frame_text(f) for f in ev.user_stack)
        if self._symbol_id_only:
            value: tuple[Any, ...] = (ev.process.binary, stack)
        else:
            pod = ev.pod
            value = (
                ev.process.binary,
                stack,
                ev.process.arguments,
                tuple(f"{a.label}={a.value}" if a.label else a.value for a in ev.arguments),
                pod.namespace if pod else "",
                pod.name if pod else "",
                ev.container.id if ev.container else "",
                tuple(frame_text(f) for f in ev.kernel_stack),
            )
        self._sample_event, self._sample_value = ev, value
        return value

    @staticmethod
    def _sample_dict(value: tuple[Any, ...] | None) -> dict[str, Any]:
        if not value:
            return {}
        out = {"binary": value[0], "stack": list(value[1])}
        if len(value) > 2:
            out |= {
                "arguments": value[2],
                "event_arguments": list(value[3]),
                "namespace": value[4],
                "pod": value[5],
                "container_id": value[6],
                "kernel_stack": list(value[7]),
            }
        return out

    # -- draining --------------------------------------------------------

    def drain(self) -> tuple[list[HotSymbolDelta], list[ObservationWindow]]:
        """Everything counted since the last drain, as deltas; resets the counts."""
        slots, self._slots = self._slots, {}
        windows, self._windows = self._windows, {}
        deltas = []
        for (win, key), s in slots.items():
            callers = self._callers.get(key)
            deltas.append(
                HotSymbolDelta(
                    key=HotSymbolKey(
                        image_digest=key[0], module=key[1], function_name=key[2], evidence=key[3]
                    ),
                    window_start_ns=win,
                    invocation_count=s.count,
                    first_seen_ns=s.first_ns,
                    last_seen_ns=s.last_ns,
                    unique_callers=len(callers) if callers else 0,
                    total_latency_ns=s.total_latency_ns,
                    max_latency_ns=s.max_latency_ns,
                    confidence=CONFIDENCE[key[3]],
                    build_id=s.build_id,
                    function_id=s.function_id,
                    node_name=s.node,
                    sample=self._sample_dict(s.sample),
                )
            )
        obs = [
            ObservationWindow(
                image_digest=i,
                node_name=n,
                window_start_ns=w,
                event_count=count,
                posture=ORDER[rank],
                window_seconds=self._window_seconds,
                source=self.source,
            )
            for (i, n, w), (count, rank) in windows.items()
        ]
        return deltas, obs
