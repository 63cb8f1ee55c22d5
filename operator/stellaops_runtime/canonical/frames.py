"""FrameCanonicalizer: gives every frame of an event (and the probed function) its canonical ID.

The agent calls :meth:`FrameCanonicalizer.canonicalize` on its one pipeline
worker thread (file reads block; never on the event loop) for every event
before the hot-symbol bridge. It fills each StackFrame's ``build_id``,
``symbol`` (canonical demangled name), ``symbol_offset``, ``function_id`` and
``source``, and for uprobe/USDT events the event's ``function_id``.

Tetragon user frames carry a FILE offset inside ``module`` (not an offset from
the symbol) and a ``symbol`` that is only a hint: Tetragon looked it up by
path in its own filesystem, which for a container process may be another
file or none. So frames are keyed on (module, file offset) and:

1. the build-id comes from the ``process_loader`` event of that process and
   path (remembered per exec_id until the process's EXIT), else from the file
   itself, resolved inside ``/proc/<pid>/root`` (canonical/rootopen.py) while
   the process lives;
2. the file's content identity (build-id + SHA-256 of its bytes) is learnt
   once per (process, module), from the process's own file or the host-root
   file that has the loader's build-id; a warm frame is one dict lookup on
   (identity, file offset), so a file that only *claims* another file's
   build-id never gets that file's names;
3. a cold one is resolved by the Symbolizer against, in order: a Binary
   already indexed for that identity; the process's own file; the
   configured host root, used only when the file there has exactly the
   build-id the loader reported (anything else is counted as
   ``build_id_mismatch``);
4. when nothing resolves, the frame keeps module + file offset, its build-id
   when known (function ID ``<build-id>:+0x<file offset>``), Tetragon's hint
   as ``symbol`` with source ``hint`` if there was one, else source ``none``;
   the reason is counted. Nothing raises.

Kernel frames (kallsyms symbol + offset) get module ``[kernel]`` (or
``[<module>]``), the kernel's build-id and source ``kallsyms`` when the symbol
exists on this kernel, else they keep the symbol as a hint.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from stellaops_runtime.canonical.addrindex import LRU
from stellaops_runtime.canonical.binary import Binary, Hit
from stellaops_runtime.canonical.demangle import demangle
from stellaops_runtime.canonical.elflayout import ElfError
from stellaops_runtime.canonical.function_id import format_function_id, unresolved_function_id
from stellaops_runtime.canonical.procmaps import (
    DELETED_SUFFIX,
    ProcessError,
    map_files_path,
    process_alive,
    process_root,
    read_maps,
)
from stellaops_runtime.canonical.resolution import Outcome, Source
from stellaops_runtime.canonical.rootopen import NotRegularFile
from stellaops_runtime.canonical.symbolizer import Symbolizer
from stellaops_runtime.contracts.events import EventKind, RuntimeCallEvent, StackFrame

log = logging.getLogger(__name__)

# (symbol, symbol offset, function ID, source) of a resolved frame
_Resolved = tuple[str, int, str, str]
# module -> (build-id, content identity): "" when not known (yet)
_Ids = dict[str, tuple[str, str]]

_RESOLVED_KEY = {str(src): f"resolved_{src}" for src in Source}

# Failure outcomes in the order one is preferred as "the" reason of a frame.
_REASON_RANK: dict[str, int] = {
    Outcome.BUILD_ID_MISMATCH: 0,
    Outcome.TRUNCATED_ELF: 1,
    Outcome.NOT_ELF: 1,
    Outcome.BAD_ELF: 1,
    Outcome.NOT_REGULAR: 1,
    Outcome.BUDGET_EXCEEDED: 1,
    Outcome.MALFORMED: 1,
    Outcome.DELETED_FILE: 2,
    Outcome.PROCESS_EXITED: 3,
    Outcome.UNREADABLE_FILE: 4,
    Outcome.NO_FILE: 9,
}


class FrameCanonicalizer:
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
        """
        self.symbolizer = symbolizer or Symbolizer(
            max_binaries=max_binaries,
            proc_root=proc_root or "/proc",
            kallsyms_path=kallsyms_path,
        )
        self.proc_root = proc_root
        self.host_root = host_root
        self.node_name = node_name
        self._frames: LRU[tuple[str, int], _Resolved] = LRU(max_frames)
        self._functions: LRU[tuple[str, str, str], str] = LRU(max_frames)  # (identity, module, name)
        self._kernel: LRU[tuple[str, int], _KernelHit] = LRU(max_frames)
        # exec_id -> {module path: build-id ("" when it could not be read)}
        self._ids: LRU[str, _Ids] = LRU(max_processes)
        # (module, build-id) -> why no file could be found, for lookups that do not depend on a
        # live process (events from other nodes, or no process root): the answer only changes
        # when the host root does, so it is kept (bounded) instead of re-reading the file per frame.
        self._unavailable: LRU[tuple[str, str], str] = LRU(max_binaries * 64)
        self.counters: Counter[str] = Counter()

    # -- public ------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        """Counters: ``resolved_<source>`` and one per failure outcome (user frames), ``kernel_<outcome>``,
        ``events_function_<outcome>``, ``cache_hits``, ``hint_disagreements``, cache sizes, and the
        Symbolizer's own counters prefixed ``symbolizer_``."""
        out = {str(k): v for k, v in self.counters.items()}
        out["cache_frames"] = len(self._frames)
        out["cache_processes"] = len(self._ids)
        for k, v in self.symbolizer.stats().items():
            out[f"symbolizer_{k}"] = v
        return out

    def canonicalize(self, ev: RuntimeCallEvent) -> None:
        """Fill the canonical fields of ``ev``'s frames (and its function ID); never raises."""
        kind = ev.kind
        if kind is EventKind.LOADER:
            if ev.module and ev.build_id:
                self.remember_build_id(ev.process.exec_id or f"pid:{ev.process.pid}", ev.module, ev.build_id)
            return
        if kind is EventKind.EXIT:
            self._ids.pop(ev.process.exec_id or f"pid:{ev.process.pid}")
            return
        if (kind is EventKind.KPROBE or kind is EventKind.SYSCALL) and ev.function_name:
            ev.function_id = self.kernel_function_id(ev.function_name)
        elif (kind is EventKind.UPROBE or kind is EventKind.USDT) and ev.function_name:
            try:
                ev.function_id = self._event_function(ev)
            except Exception:  # a bug here must cost one ID, not the event
                log.exception("canonicalizing the function of a %s event failed", kind)
                self.counters["events_internal_error"] += 1
        for f in ev.kernel_stack:
            try:
                self._kernel_frame(f)
            except Exception:
                log.exception("canonicalizing kernel frame %s+%#x failed", f.symbol, f.offset)
                self.counters["internal_error"] += 1
        if ev.user_stack:
            ids = self._process_ids(ev)
            for f in ev.user_stack:
                try:
                    self._user_frame(ev, ids, f)
                except Exception:
                    log.exception("canonicalizing frame %s+%#x failed", f.module, f.offset)
                    self.counters["internal_error"] += 1
                    _unresolved(f, f.build_id, Source.HINT if f.symbol else Source.NONE)

    def kernel_function_id(self, name: str) -> str:
        """``<kernel build-id>:<name>+0x0`` for a kernel function this kernel has, else ""."""
        key = (name, 0)
        hit = self._kernel.get(key)
        if hit is None:
            try:
                res = self.symbolizer.resolve_kernel(name, 0)
            except Exception:
                log.exception("resolving kernel function %s failed", name)
                self.counters["events_internal_error"] += 1
                return ""
            hit = _KernelHit(
                res.module, res.build_id, res.symbol, res.offset, res.function_id, str(res.error)
            )
            self._kernel.put(key, hit)
        if hit.error:
            self.counters[f"events_function_kernel_{hit.error}"] += 1
            return ""
        self.counters["events_function_resolved_kallsyms"] += 1
        return hit.function_id

    def remember_build_id(self, exec_id: str, module: str, build_id: str) -> None:
        """Record the build-id a process_loader event reported for (process, path)."""
        ids = self._ids.get(exec_id)
        if ids is None:
            ids = {}
            self._ids.put(exec_id, ids)
        ids[module] = (build_id, "")

    # -- user frames ----------------------------------------------------------------

    def _process_ids(self, ev: RuntimeCallEvent) -> _Ids:
        key = ev.process.exec_id or f"pid:{ev.process.pid}"
        ids = self._ids.get(key)
        if ids is None:
            ids = {}
            self._ids.put(key, ids)
        return ids

    def _local(self, ev: RuntimeCallEvent) -> bool:
        """May this event's process be looked up in this node's /proc?"""
        if self.proc_root is None or ev.process.pid <= 0:
            return False
        return not (self.node_name and ev.node_name and ev.node_name != self.node_name)

    def _build_id(self, ev: RuntimeCallEvent, ids: _Ids, module: str) -> tuple[str, str]:
        """(build-id, identity) of ``module`` in ``ev``'s process: loader's, else the file's own."""
        got = ids.get(module)
        if got is not None:
            return got
        got = ("", "")
        if self._local(ev):
            try:
                root, path = self._process_path(ev.process.pid, module)
                fid = self.symbolizer.identify(path, root=root)
                got = (fid.build_id, fid.identity)
            except (OSError, ElfError, ProcessError):
                pass
        ids[module] = got
        return got

    def _process_path(self, pid: int, module: str) -> tuple[str, str]:
        """(root, path) through which ``module`` of process ``pid`` is read."""
        assert self.proc_root is not None
        if module.endswith(DELETED_SUFFIX):
            path = module[: -len(DELETED_SUFFIX)]
            for m in read_maps(pid, proc_root=self.proc_root):
                if m.deleted and m.path == path:
                    return "/", map_files_path(pid, m, proc_root=self.proc_root)
            raise ProcessError(Outcome.DELETED_FILE, f"{module}: no deleted mapping of it in process {pid}")
        return process_root(pid, proc_root=self.proc_root), module

    def _user_frame(self, ev: RuntimeCallEvent, ids: _Ids, f: StackFrame) -> None:
        module = f.module
        if not module:
            self.counters[Outcome.NOT_FILE_BACKED] += 1
            _unresolved(f, "", Source.HINT if f.symbol else Source.NONE)
            return
        bid, ident = self._build_id(ev, ids, module)
        if ident:
            hit = self._frames.get((ident, f.offset))
            if hit is not None:
                f.build_id = bid
                f.symbol, f.symbol_offset, f.function_id, f.source = hit
                self.counters[_RESOLVED_KEY[hit[3]]] += 1
                self.counters["cache_hits"] += 1
                return
        binary, reason = self._find_binary_cached(ev, module, bid, ident)
        if binary is None:
            self.counters[reason] += 1
            _unresolved(f, bid, Source.HINT if f.symbol else Source.NONE)
            return
        bid = binary.build_id
        ids[module] = (bid, binary.identity)
        vaddr, found = binary.lookup_file_offset(f.offset)
        if found is None:
            why = Outcome.OFFSET_OUTSIDE_FILE if vaddr is None else binary.failure_reason or Outcome.NO_SYMBOL
            self.counters[why] += 1
            _unresolved(f, bid, Source.HINT if f.symbol else Source.NONE)
            return
        resolved = _resolved(bid, found)
        if f.symbol and _hint_disagrees(f.symbol, found.symbol):
            self.counters["hint_disagreements"] += 1
            log.debug("frame %s+%#x: hint %r, resolved %r", module, f.offset, f.symbol, found.symbol)
        self._frames.put((binary.identity, f.offset), resolved)
        f.build_id = bid
        f.symbol, f.symbol_offset, f.function_id, f.source = resolved
        self.counters[f"resolved_{found.source}"] += 1

    def _find_binary_cached(
        self, ev: RuntimeCallEvent, module: str, bid: str, ident: str = ""
    ) -> tuple[Binary | None, str]:
        """_find_binary, remembering failures that no live process could change."""
        cached = self.symbolizer.cached_binary(ident)
        if cached is not None:
            return cached, ""
        if self._local(ev):
            return self._find_binary(ev, module, bid)
        key = (module, bid)
        reason = self._unavailable.get(key)
        if reason is not None:
            return None, reason
        binary, reason = self._find_binary(ev, module, bid)
        if binary is None:
            self._unavailable.put(key, reason)
        return binary, reason

    def _find_binary(self, ev: RuntimeCallEvent, module: str, bid: str) -> tuple[Binary | None, str]:
        """The indexed file for (module, build-id), or None and the reason it is unavailable.

        Only a file this process maps, or a host-root file with the loader's build-id, is
        used, each through its own content identity: never another container's file.
        """
        sym = self.symbolizer
        reason: str = Outcome.NO_FILE
        if self._local(ev):
            try:
                root, path = self._process_path(ev.process.pid, module)
                b = sym.binary(path, root=root)
                if not bid or b.build_id == bid:
                    return b, ""
                reason = Outcome.BUILD_ID_MISMATCH
            except ProcessError as e:
                # The process sent us events, so "no such process" means it has exited since.
                gone = e.reason == Outcome.NO_SUCH_PROCESS
                reason = _better(reason, Outcome.PROCESS_EXITED if gone else e.reason)
            except ElfError as e:
                reason = _better(reason, e.reason)
            except NotRegularFile:
                reason = _better(reason, Outcome.NOT_REGULAR)
            except OSError:
                alive = process_alive(ev.process.pid, proc_root=self.proc_root or "/proc")
                reason = _better(reason, Outcome.UNREADABLE_FILE if alive else Outcome.PROCESS_EXITED)
        if self.host_root is not None and bid and not module.endswith(DELETED_SUFFIX):
            try:
                if sym.identify(module, root=self.host_root).build_id == bid:
                    return sym.binary(module, root=self.host_root), ""
                reason = _better(reason, Outcome.BUILD_ID_MISMATCH)
            except ElfError as e:
                reason = _better(reason, e.reason)
            except NotRegularFile:
                reason = _better(reason, Outcome.NOT_REGULAR)
            except OSError:
                reason = _better(reason, Outcome.UNREADABLE_FILE)
        return None, reason

    # -- the probed function of uprobe / USDT events ------------------------------------

    def _event_function(self, ev: RuntimeCallEvent) -> str:
        module, name = ev.module, ev.function_name
        if not module:
            self.counters["events_function_no_module"] += 1
            return ""
        ids = self._process_ids(ev)
        bid, ident = self._build_id(ev, ids, module)
        key = (ident or f"unverified:{bid}", module, name)
        if bid:
            cached = self._functions.get(key)
            if cached is not None:
                self.counters["events_function_cached"] += 1
                return cached
        binary, reason = self._find_binary_cached(ev, module, bid, ident)
        if binary is None:
            if ev.kind is EventKind.UPROBE and bid:
                # The probe was attached to this very symbol name: the ID holds without the file.
                self.counters[f"events_function_unverified_{reason}"] += 1
                fid = format_function_id(bid, demangle(name), 0)
                if not self._local(ev):
                    self._functions.put(key, fid)
                return fid
            self.counters[f"events_function_{reason}"] += 1
            return ""
        hit: Hit | None
        if ev.kind is EventKind.USDT:
            provider, _, probe = name.partition(":")
            pc = binary.sdt_probe(provider, probe)
            hit = binary.lookup(pc) if pc is not None else None
        else:
            hit = binary.find_function(name)
        if hit is None:
            if ev.kind is EventKind.UPROBE:
                self.counters["events_function_not_in_binary"] += 1
                fid = format_function_id(binary.build_id, demangle(name), 0)
            else:
                self.counters["events_function_no_probe"] += 1
                return ""
        else:
            self.counters[f"events_function_resolved_{hit.source}"] += 1
            fid = format_function_id(binary.build_id, hit.symbol, 0)
        ids[module] = (binary.build_id, binary.identity)
        self._functions.put((binary.identity, module, name), fid)
        return fid

    # -- kernel frames ---------------------------------------------------------------

    def _kernel_frame(self, f: StackFrame) -> None:
        key = (f.symbol, f.offset)
        hit = self._kernel.get(key)
        if hit is None:
            res = self.symbolizer.resolve_kernel(f.symbol, f.offset)
            hit = _KernelHit(
                res.module, res.build_id, res.symbol, res.offset, res.function_id, str(res.error)
            )
            self._kernel.put(key, hit)
        f.module = hit.module
        if hit.error:
            self.counters[f"kernel_{hit.error}"] += 1
            f.source = Source.HINT if f.symbol else Source.NONE
            f.symbol_offset = f.offset
            return
        f.build_id = hit.build_id
        f.symbol = hit.symbol
        f.symbol_offset = hit.offset
        f.function_id = hit.function_id
        f.source = Source.KALLSYMS
        self.counters["resolved_kallsyms"] += 1


@dataclass(frozen=True, slots=True)
class _KernelHit:
    module: str
    build_id: str
    symbol: str
    offset: int
    function_id: str
    error: str


def _better(current: str, new: str) -> str:
    return new if _REASON_RANK.get(new, 5) < _REASON_RANK.get(current, 5) else current


def _resolved(build_id: str, hit: Hit) -> _Resolved:
    return (
        hit.symbol,
        hit.symbol_offset,
        format_function_id(build_id, hit.symbol, hit.symbol_offset),
        hit.source,
    )


def _unresolved(f: StackFrame, build_id: str, source: str) -> None:
    """A frame nothing resolved: module + file offset kept, hint (if any) kept as the symbol."""
    f.build_id = build_id
    if f.symbol:
        f.symbol = demangle(f.symbol)
    f.symbol_offset = 0
    f.function_id = unresolved_function_id(build_id, f.offset) if build_id else ""
    f.source = source


def _hint_disagrees(hint: str, resolved: str) -> bool:
    return hint != resolved and demangle(hint) != resolved
