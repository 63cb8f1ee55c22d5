"""The hot-symbol aggregator's counting of a kernel event's user stack: each distinct function once.

Why this module exists: split from hotsymbols/aggregate.py (which observes
events, counts keys and drains them), it holds the per-frame loop that the
stream whose stacks never repeat spends most of the aggregator's time in:
each distinct (module, function) of a user stack observed once
(``on_stack``), the functions the compiler inlined at a frame as frames of
their own, and each frame's caller (the chain of key hashes noted in the
callers table, hotsymbols/callers.py). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable

from stellaops_runtime.canonical.function_id import function_entry_id
from stellaops_runtime.canonical.resolution import RESOLVED_SOURCES
from stellaops_runtime.contracts.events import RuntimeCallEvent, StackFrame
from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.hotsymbols.callers import CallerTable, NotedChains
from stellaops_runtime.hotsymbols.slots import Group, Slot

_STACK = EvidenceKind.ON_STACK


class StackCounting:
    """Mixed into HotSymbolAggregator, which sets these attributes and defines ``_add``/``_new_slot``."""

    _enabled: dict[EvidenceKind, bool]
    _build_ids: dict[str, dict[str, str]]
    _groups: dict[Group, dict[str, Slot]]
    _share: Callable[[str], str]
    _callers: CallerTable
    _chains: NotedChains
    touched: list[Slot] | None
    below_threshold: int
    epoch: int

    def _add(
        self,
        group: Group,
        function: str,
        ev: RuntimeCallEvent,
        build_id: str,
        *,
        function_id: str = "",
        frame: StackFrame | None = None,
    ) -> int:  # pragma: no cover - HotSymbolAggregator's
        raise NotImplementedError

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
    ) -> Slot:  # pragma: no cover - HotSymbolAggregator's
        raise NotImplementedError

    def _observe_stack(self, win: int, image: str, ev: RuntimeCallEvent) -> int:
        """Each distinct (module, function) of the user stack once, and each frame's caller (the
        stack's key hashes in order, noted in the callers table once per chain: NotedChains).

        The repeat branch of :meth:`_add` is inlined here (per frame: the stream whose stacks
        never repeat spends most of the aggregator's time in this loop); a new key goes through
        :meth:`_new_slot`, as in ``_add``.
        """
        stack = ev.user_stack
        if not self._enabled[_STACK]:  # below the threshold: neither counted nor callers kept
            self.below_threshold += len(
                {(f.module, fn) for f in stack for fn in (*f.inlined, f.symbol or f"0x{f.offset:x}")}
            )
            return 0
        ids = self._build_ids.get(ev.process.exec_id)
        seen: set[tuple[str, str, str]] = set()
        groups = self._groups
        touched = self.touched
        ts = ev.timestamp_ns
        lat = ev.latency_ns or 0
        chain: list[int] = []  # each frame's key hash, innermost first: a frame's caller is the next one
        n = 0
        for f in stack:
            module = f.module
            if f.inlined:  # functions inlined here: frames of their own, just above this one
                n += self._observe_inlined(win, image, ev, f, chain, seen, ids)
            fn = f.symbol or f"0x{f.offset:x}"  # frame_function, inlined
            key = (image, module, fn)  # one tuple per frame: seen, and hashed for the callers
            chain.append(hash(key))
            if key in seen:
                continue  # recursion: one observation, but every caller counts
            seen.add(key)
            group = (win, image, module, _STACK)
            slots = groups.get(group)
            slot = slots.get(fn) if slots is not None else None
            if slot is None:
                build_id = f.build_id or (ids.get(module, "") if ids else "")
                slot = self._new_slot(group, slots, fn, ev, ts, lat, build_id, "", f)
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
                if not slot.build_id and (build_id := f.build_id or (ids.get(module, "") if ids else "")):
                    slot.build_id = self._share(build_id)
                # frame_entry_id, inlined: an unresolved frame (most here) fails the first test
                if not slot.function_id and f.source in RESOLVED_SOURCES and f.build_id and f.symbol:
                    slot.function_id = function_entry_id(f.build_id, f.symbol)
            if touched is not None:
                touched.append(slot)
            n += 1
        if len(chain) > 1 and (started_over := self._chains.note(self._callers, chain)):
            self.epoch += started_over  # the table started over: repeats must note their callers again
        return n

    def _observe_inlined(
        self,
        win: int,
        image: str,
        ev: RuntimeCallEvent,
        f: StackFrame,
        chain: list[int],
        seen: set[tuple[str, str, str]],
        ids: dict[str, str] | None,
    ) -> int:
        """The functions the compiler inlined at frame ``f`` (canonical/inlines.py), innermost first,
        each observed as a stack frame of its own: its caller is the next one out, the outermost's is
        ``f``'s function. Their key hashes go on ``chain`` (NotedChains.note notes them); returns the
        number of observations."""
        module = f.module
        build_id = f.build_id or (ids.get(module, "") if ids else "")
        resolved = f.source in RESOLVED_SOURCES and bool(f.build_id)
        group = (win, image, module, _STACK)
        n = 0
        for name in f.inlined:
            key = (image, module, name)
            chain.append(hash(key))
            if key in seen:
                continue
            seen.add(key)
            fid = function_entry_id(f.build_id, name) if resolved else ""
            n += self._add(group, name, ev, build_id, function_id=fid)
        return n
