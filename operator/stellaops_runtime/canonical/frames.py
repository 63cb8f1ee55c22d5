"""FrameCanonicalizer: gives every frame of an event (and the probed function) its canonical ID.

The agent calls :meth:`FrameCanonicalizer.canonicalize` on its one pipeline
worker thread (file reads block; never on the event loop) for every event
before the hot-symbol bridge. With ``parse_wait`` set (the agent's
``symbols.parseWaitMilliseconds``) files are parsed on a parse-worker thread
(canonical/parseworker.py): a frame whose file is not parsed within the wait
is left unresolved with reason ``parse_pending`` and resolves in later events.
It fills each StackFrame's ``build_id``, ``symbol`` (canonical demangled
name), ``symbol_offset``, ``function_id``, ``source`` and ``inlined`` (the
functions the compiler inlined at a resolved frame's return address:
canonical/inlines.py), and for uprobe/USDT events the event's ``function_id``.

Tetragon user frames carry a FILE offset inside ``module`` (not an offset from
the symbol) and a ``symbol`` that is only a hint: Tetragon looked it up by
path in its own filesystem, which for a container process may be another
file or none. So frames are keyed on (module, file offset) and:

1. the build-id comes from the ``process_loader`` event of that process and
   path (remembered per exec_id until the process's EXIT), else from the file
   itself (canonical/locate.py);
2. the file's content identity (build-id + the file's stat identity, or the
   SHA-256 of its bytes once another file claims the same build-id:
   canonical/buildidclaims.py) is learnt
   once per (process, module), from the process's own file or the host-root
   file that has the loader's build-id; a warm frame is one dict lookup on
   (identity, file offset), so a file that only *claims* another file's
   build-id never gets that file's names;
3. a cold one is resolved against the Binary canonical/locate.py finds: one
   already indexed for that identity, the process's own file, or the host
   root's file with exactly the loader's build-id; its loaded tables answer
   through the Binary's warm lookup (canonical/quicklookup.py), the Binary
   itself only when they miss (lazy sources, failures);
4. when nothing resolves, the frame keeps module + file offset, its build-id
   when known (function ID ``<build-id>:+0x<file offset>``), Tetragon's hint
   as ``symbol`` with source ``hint`` if there was one, else source ``none``;
   the reason is counted. Nothing raises.

How each kind of frame is filled is in canonical/framefill.py; the probed function of
a uprobe or USDT event is named by canonical/eventfunction.py.

Kernel frames (kallsyms symbol + offset) get module ``[kernel]`` (or
``[<module>]``), the kernel's build-id and source ``kallsyms`` when the symbol
exists on this kernel, else they keep the symbol as a hint
(canonical/kernelframes.py).
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from contextlib import AbstractContextManager

from stellaops_runtime.canonical.addrindex import LRU
from stellaops_runtime.canonical.binary import Binary
from stellaops_runtime.canonical.demangle import demangle
from stellaops_runtime.canonical.eventfunction import EventFunctions
from stellaops_runtime.canonical.framefill import (
    FrameAnswer,
    KernelHit,
    WarmAnswer,
    hint_disagrees,
    resolved_answer,
    unresolved,
)
from stellaops_runtime.canonical.function_id import unresolved_function_id
from stellaops_runtime.canonical.kernelframes import Counts, KernelFrames
from stellaops_runtime.canonical.locate import BinaryLocator, Ids
from stellaops_runtime.canonical.parseworker import ParseGate, ParsePending, ParseWorker
from stellaops_runtime.canonical.resolution import Outcome, Source
from stellaops_runtime.canonical.symbolizer import Symbolizer
from stellaops_runtime.contracts.events import EventKind, RuntimeCallEvent, StackFrame

log = logging.getLogger(__name__)

# Enum members as module names: ``Source.HINT`` is a class attribute read through the enum's
# metaclass (~90 ns, several per event and per frame), a module global is a dict read.
_LOADER, _EXIT, _KPROBE, _SYSCALL = EventKind.LOADER, EventKind.EXIT, EventKind.KPROBE, EventKind.SYSCALL
_UPROBE, _USDT = EventKind.UPROBE, EventKind.USDT
_HINT, _NONE = Source.HINT, Source.NONE


class FrameCanonicalizer(KernelFrames, EventFunctions):
    """Fills the canonical fields of stack frames and of uprobe/USDT events (synchronous)."""

    def __init__(
        self,
        *,
        symbolizer: Symbolizer | None = None,
        max_binaries: int = 64,
        max_frames: int = 65_536,
        max_processes: int = 65_536,
        proc_root: str | None = "/proc",
        host_root: str | None = None,
        kallsyms_path: str = "/proc/kallsyms",
        node_name: str = "",
        parse_wait: float | None = None,
    ) -> None:
        """
        Args:
            symbolizer: a Symbolizer to share (else one is made with ``max_binaries``,
                ``proc_root`` and ``kallsyms_path``).
            max_binaries: parsed binaries kept (LRU, one per build-id).
            max_frames: resolved (build-id, file offset) results kept (LRU).
            max_processes: processes whose loader build-ids are remembered (LRU by exec_id).
            proc_root: where this node's procfs is mounted (``/host/proc`` in a pod with the
                host's procfs mounted); None disables reading process files.
            host_root: a directory holding the host's files (``/`` or ``/host``); used only
                when the file there has the build-id the loader reported. None disables it.
            kallsyms_path: the kernel symbol table.
            node_name: this node's name; events from other nodes never read local /proc.
            parse_wait: seconds to wait for a file being parsed on a parse-worker thread
                (canonical/parseworker.py) before leaving its frames ``parse_pending``; None
                parses on the caller's thread (ignored when ``symbolizer`` is given: its gate decides).
        """
        self.symbolizer = symbolizer or Symbolizer(
            max_binaries=max_binaries,
            proc_root=proc_root or "/proc",
            kallsyms_path=kallsyms_path,
            gate=ParseWorker(parse_wait) if parse_wait is not None else None,
        )
        self.gate: ParseGate = self.symbolizer.gate
        self.proc_root = proc_root
        self.host_root = host_root
        self.node_name = node_name
        self.locator = BinaryLocator(
            self.symbolizer,
            proc_root=proc_root,
            host_root=host_root,
            node_name=node_name,
            max_unavailable=max_binaries * 64,
        )
        self._frames: LRU[tuple[str, int], FrameAnswer] = LRU(max_frames)
        self._functions: LRU[tuple[str, str, str], str] = LRU(max_frames)  # (identity, module, name)
        self._kernel: LRU[tuple[str, int], KernelHit] = LRU(max_frames)
        # exec_id -> {module path: build-id ("" when it could not be read)}
        self._ids: LRU[str, Ids] = LRU(max_processes)
        self.counters: Counter[str] = Counts()

    # -- public ------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        """Counters: ``resolved_<source>`` and one per failure outcome (user frames), ``kernel_<outcome>``,
        ``events_function_<outcome>``, ``cache_hits``, ``hint_disagreements``, ``pid_reused``,
        ``pid_unverified``, cache sizes, and the Symbolizer's own counters prefixed ``symbolizer_``."""
        out = {str(k): v for k, v in self.counters.items()}
        out["cache_frames"] = len(self._frames)
        out["cache_processes"] = len(self._ids)
        out["pid_reused"] = self.locator.pid_reused
        out["pid_unverified"] = self.locator.pid_unverified
        for k, v in self.symbolizer.stats().items():
            out[f"symbolizer_{k}"] = v
        return out

    def batch(self) -> AbstractContextManager[None]:
        """``with fc.batch():`` around a batch of events: they share one parse wait (re-entrant)."""
        return self.gate.batch()

    def canonicalize(self, ev: RuntimeCallEvent) -> None:
        """Fill the canonical fields of ``ev``'s frames (and its function ID); never raises."""
        with self.gate.batch():
            self._canonicalize(ev)

    def _canonicalize(self, ev: RuntimeCallEvent) -> None:
        """Also public as :meth:`canonicalize_in_batch`, for a caller inside :meth:`batch` (the pipeline)."""
        kind = ev.kind
        if kind is _LOADER:
            if ev.module and ev.build_id:
                self.remember_build_id(ev.process.exec_id or f"pid:{ev.process.pid}", ev.module, ev.build_id)
            return
        if kind is _EXIT:
            self._ids.pop(ev.process.exec_id or f"pid:{ev.process.pid}")
            return
        if (kind is _KPROBE or kind is _SYSCALL) and ev.function_name:
            ev.function_id = self.kernel_function_id(ev.function_name)
        elif (kind is _UPROBE or kind is _USDT) and ev.function_name:
            try:
                ev.function_id = self._event_function(ev)
            except Exception:  # a bug here must cost one ID, not the event
                log.exception("canonicalizing the function of a %s event failed", kind)
                self.counters["events_internal_error"] += 1
        if ev.kernel_stack:
            self._kernel_stack(ev.kernel_stack)
        if ev.user_stack:
            self._user_stack(ev)

    # :meth:`canonicalize` without a batch of its own, for a caller inside :meth:`batch` already (the
    # pipeline holds one per batch of events): the same, without entering and leaving it per event.
    canonicalize_in_batch = _canonicalize

    def _user_stack(self, ev: RuntimeCallEvent) -> None:
        """Each user frame as :meth:`_user_frame` fills it. A frame of an event that may not read this
        node's files, whose module has no file identity yet and is known to have no file (the
        locator's ``find_cached`` would answer from its table of unavailable modules: LRU.get inlined),
        is filled here as unresolved, its reason counted once for a run of equal ones. Anything else
        goes through :meth:`_user_frame`, after the run so far is counted: the same counts, in order."""
        ids = self._process_ids(ev)
        local = self.locator.local(ev)  # once per event, not per frame
        unavailable = None if local else self.locator._unavailable.data  # find_cached, inlined
        counters = self.counters
        reason = ""
        run = 0
        for f in ev.user_stack:
            try:
                module = f.module
                if unavailable is not None and module:
                    got = ids.get(module)
                    if got is not None and not got[1]:  # no identity: only the unavailable table answers
                        bid = got[0]
                        key = (module, bid)
                        why = unavailable.get(key)
                        if why is not None:
                            unavailable.move_to_end(key)
                            if why != reason:
                                if run:
                                    counters[reason] += run
                                reason, run = why, 0
                            run += 1
                            # framefill.unresolved, inlined (in its order: a frame that raises is left
                            # as it leaves it)
                            f.build_id = bid
                            symbol = f.symbol
                            if symbol:
                                f.symbol = demangle(symbol)
                            f.symbol_offset = 0
                            f.inlined = ()
                            if not bid:
                                f.function_id = ""
                            elif ":" in bid or f.offset < 0:  # unfit: unresolved_function_id says why
                                f.function_id = unresolved_function_id(bid, f.offset)
                            else:
                                f.function_id = f"{bid}:+{hex(f.offset)}"
                            f.source = _HINT if symbol else _NONE
                            continue
                if run:
                    counters[reason] += run
                    run = 0
                self._user_frame(ev, ids, f, local)
            except Exception:
                if run:
                    counters[reason] += run
                    run = 0
                log.exception("canonicalizing frame %s+%#x failed", f.module, f.offset)
                counters["internal_error"] += 1
                unresolved(f, f.build_id, _HINT if f.symbol else _NONE)
        if run:
            counters[reason] += run

    def remember_build_id(self, exec_id: str, module: str, build_id: str) -> None:
        """Record the build-id a process_loader event reported for (process, path)."""
        ids = self._ids.get(exec_id)
        if ids is None:
            ids = {}
            self._ids.put(exec_id, ids)
        ids[sys.intern(module)] = (build_id, "")  # one string per path (see BinaryLocator.build_id)

    # -- user frames ----------------------------------------------------------------

    def _process_ids(self, ev: RuntimeCallEvent) -> Ids:
        key = ev.process.exec_id or f"pid:{ev.process.pid}"
        known = self._ids.data  # LRU.get, inlined: once per event
        ids = known.get(key)
        if ids is None:
            ids = {}
            self._ids.put(key, ids)
        else:
            known.move_to_end(key)
        return ids

    def _user_frame(self, ev: RuntimeCallEvent, ids: Ids, f: StackFrame, local: bool) -> None:
        module = f.module
        if not module:
            self.counters[Outcome.NOT_FILE_BACKED] += 1
            unresolved(f, "", _HINT if f.symbol else _NONE)
            return
        got = ids.get(module)  # locator.build_id's first step, inlined: the warm path
        bid, ident = got if got is not None else self.locator.build_id(ev, ids, module)
        counters = self.counters
        if ident:
            key = (ident, f.offset)
            frames = self._frames.data  # LRU.get, inlined
            hit = frames.get(key)
            if hit is not None:
                frames.move_to_end(key)
                f.build_id = bid
                f.symbol, f.symbol_offset, f.function_id, f.source, counter, inlined = hit
                counters[counter] += 1
                counters["cache_hits"] += 1
                if inlined:
                    f.inlined = inlined
                    counters["inlined_frames"] += len(inlined)
                return
        binary, reason = self.locator.find_cached(ev, module, bid, ident, local)
        if binary is None:
            counters[reason] += 1
            unresolved(f, bid, _HINT if f.symbol else _NONE)
            return
        if bid != binary.build_id or ident != binary.identity:
            bid = binary.build_id
            ids[module] = (bid, binary.identity)
        quick = binary.quick  # a loaded table names most offsets (canonical/quicklookup.py)
        found = quick.find(f.offset) if quick is not None else None
        if found is None:
            found = self._lookup(binary, f, bid)
            if found is None:
                return
            if quick is not None and quick.stale:  # a lazy source was loaded: let it answer here too
                quick.refresh()
        symbol = found[0]
        if f.symbol and hint_disagrees(f.symbol, symbol):
            counters["hint_disagreements"] += 1
            log.debug("frame %s+%#x: hint %r, resolved %r", module, f.offset, f.symbol, symbol)
        names = self._inlined(binary, f.offset, found[1])
        if names is not None:  # None: the inline source is still being read; asked again later
            self._frames.put((binary.identity, f.offset), (*found, names))
        f.build_id = bid
        f.symbol, f.symbol_offset, f.function_id, f.source, counter = found
        counters[counter] += 1
        if names:
            f.inlined = names
            counters["inlined_frames"] += len(names)

    def _inlined(self, binary: Binary, file_offset: int, symbol_offset: int) -> tuple[str, ...] | None:
        """The functions inlined at a return address (canonical/inlines.py), asked at the call's
        last byte; None while the inline source is being read (counted ``inline_parse_pending``)."""
        if symbol_offset <= 0:  # a return address at a function's entry: the call was in another
            return ()
        vaddr = binary.layout.vaddr_of(file_offset)
        if vaddr is None:
            return ()
        try:
            inlined = binary.inlined_at(vaddr - 1)
        except ParsePending:
            self.counters["inline_parse_pending"] += 1
            return None
        except Exception:  # a bug in a decoder must cost the inlined frames, not the frame
            log.exception("inlined functions at %s+%#x", binary.path, file_offset)
            self.counters["inline_internal_error"] += 1
            return ()
        return inlined

    def _lookup(self, binary: Binary, f: StackFrame, bid: str) -> WarmAnswer | None:
        """The frame through the Binary itself (lazy sources, failures); None when it stays unresolved
        (counted, and the frame filled as such)."""
        try:
            vaddr, found = binary.lookup_file_offset(f.offset)
        except ParsePending:  # a lazy source (DWARF, .gopclntab) is still being read: not cached
            self.counters[Outcome.PARSE_PENDING] += 1
            unresolved(f, bid, _HINT if f.symbol else _NONE)
            return None
        if found is None:
            why = Outcome.OFFSET_OUTSIDE_FILE if vaddr is None else binary.failure_reason or Outcome.NO_SYMBOL
            self.counters[why] += 1
            if why is Outcome.NO_SYMBOL and f.symbol:
                # This file, read whole, names nothing here: the event's name came from another file
                # (Tetragon opens the path in its own mount namespace). Unnamed, never misnamed.
                self.counters["hint_dropped"] += 1
                f.symbol = ""
            unresolved(f, bid, _HINT if f.symbol else _NONE)
            return None
        return resolved_answer(bid, found)
