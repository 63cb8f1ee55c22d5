"""The FrameCanonicalizer's kernel frames: kallsyms names and the kernel function IDs of kprobe events.

Why this module exists: split from canonical/frames.py (user frames and the cache of
processes' build-ids; the probed functions of uprobe and USDT events are
canonical/eventfunction.py's), it
holds what the canonicalizer does with the kernel's symbols: a kernel frame
(kallsyms symbol + offset) gets module ``[kernel]`` (or ``[<module>]``), the
kernel's build-id and source ``kallsyms`` when the symbol exists on this
kernel, else keeps its symbol as a hint; a kprobe's function gets
``<kernel build-id>:<name>+0x0``. Answers are cached per (symbol, offset).
A kernel stack is filled in one call, its resolved frames counted once per
run (:meth:`KernelFrames._kernel_stack`), with the counts and answers the
frame-by-frame way gives.
"""

from __future__ import annotations

import logging
from collections import Counter

from stellaops_runtime.canonical.addrindex import LRU
from stellaops_runtime.canonical.framefill import KernelHit
from stellaops_runtime.canonical.resolution import Source
from stellaops_runtime.canonical.symbolizer import Symbolizer
from stellaops_runtime.contracts.events import StackFrame

log = logging.getLogger(__name__)

# Enum members as module names (a class attribute read through the enum's metaclass costs ~90 ns).
_HINT, _NONE, _KALLSYMS = Source.HINT, Source.NONE, Source.KALLSYMS


class Counts(Counter[str]):
    """A Counter whose ``c[k] += n`` is dict's: Counter's own ``__delitem__`` (Python code) makes every
    item store go through Python-level slot lookup (~60 ns against ~15 ns on 3.11), and the
    canonicalizer counts several times per event. Deleting a missing key raises, as for a dict."""

    __slots__ = ()
    __delitem__ = dict.__delitem__  # type: ignore[assignment]


class KernelFrames:
    """Mixed into FrameCanonicalizer, which sets these attributes."""

    symbolizer: Symbolizer
    counters: Counter[str]
    _kernel: LRU[tuple[str, int], KernelHit]

    def kernel_function_id(self, name: str) -> str:
        """``<kernel build-id>:<name>+0x0`` for a kernel function this kernel has, else ""."""
        key = (name, 0)
        kernel = self._kernel.data  # LRU.get, inlined: once per kernel event
        hit = kernel.get(key)
        if hit is not None:
            kernel.move_to_end(key)
        else:
            try:
                res = self.symbolizer.resolve_kernel(name, 0)
            except Exception:
                log.exception("resolving kernel function %s failed", name)
                self.counters["events_internal_error"] += 1
                return ""
            hit = KernelHit(res.module, res.build_id, res.symbol, res.offset, res.function_id, str(res.error))
            self._kernel.put(key, hit)
        if hit.error:
            self.counters[f"events_function_kernel_{hit.error}"] += 1
            return ""
        self.counters["events_function_resolved_kallsyms"] += 1
        return hit.function_id

    def _kernel_stack(self, stack: list[StackFrame]) -> None:
        """Each kernel frame as :meth:`_kernel_frame` fills it; a frame the cache resolved is filled here
        (LRU.get inlined) and ``resolved_kallsyms`` counted once for a run of them, not once per frame
        (a Counter's increment costs more than filling the frame). Anything else goes through
        :meth:`_kernel_frame`, after the run so far is counted: the same counts, in the same order."""
        counters = self.counters
        kernel = self._kernel.data
        resolved = 0
        for f in stack:
            try:
                key = (f.symbol, f.offset)
                hit = kernel.get(key)
                if hit is None or hit.error:
                    if resolved:
                        counters["resolved_kallsyms"] += resolved
                        resolved = 0
                    self._kernel_frame(f)
                    continue
                kernel.move_to_end(key)
                f.module = hit.module
                f.build_id = hit.build_id
                f.symbol = hit.symbol
                f.symbol_offset = hit.offset
                f.function_id = hit.function_id
                f.source = _KALLSYMS
                resolved += 1
            except Exception:
                if resolved:
                    counters["resolved_kallsyms"] += resolved
                    resolved = 0
                log.exception("canonicalizing kernel frame %s+%#x failed", f.symbol, f.offset)
                counters["internal_error"] += 1
        if resolved:
            counters["resolved_kallsyms"] += resolved

    def _kernel_frame(self, f: StackFrame) -> None:
        key = (f.symbol, f.offset)
        kernel = self._kernel.data  # LRU.get, inlined
        hit = kernel.get(key)
        if hit is not None:
            kernel.move_to_end(key)
        else:
            res = self.symbolizer.resolve_kernel(f.symbol, f.offset)
            hit = KernelHit(res.module, res.build_id, res.symbol, res.offset, res.function_id, str(res.error))
            self._kernel.put(key, hit)
        f.module = hit.module
        if hit.error:
            self.counters[f"kernel_{hit.error}"] += 1
            f.source = _HINT if f.symbol else _NONE
            f.symbol_offset = f.offset
            return
        f.build_id = hit.build_id
        f.symbol = hit.symbol
        f.symbol_offset = hit.offset
        f.function_id = hit.function_id
        f.source = _KALLSYMS
        self.counters["resolved_kallsyms"] += 1
